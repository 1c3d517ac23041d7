//go:build !linux

package tlsdialtest

import (
	"errors"
	"net"
	"runtime"
	"testing"
)

func newKernelPath(t *testing.T, _ int) *KernelPath {
	t.Helper()
	t.Skipf("tlsdialtest: a kernel path needs Linux network namespaces, not %s", runtime.GOOS)
	return nil
}

func (p *KernelPath) listen(string) (net.Listener, error) {
	return nil, errors.New("tlsdialtest: no kernel path on " + runtime.GOOS)
}
