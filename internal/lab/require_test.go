//go:build linux

package lab_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRequireShort runs this test binary again with -test.short and
// CI=true, only lab tests, and checks that they skip without building a
// lab: -short means "no lab", even in CI. It builds no lab itself, so it
// runs under -short too.
func TestRequireShort(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.short", "-test.v", "-test.run=^(TestLab|TestLabReset)$")
	cmd.Env = append(os.Environ(), "CI=true", "FITLAB_HELPER=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, name := range []string{"TestLab", "TestLabReset"} {
		assert.Regexp(t, `--- SKIP: `+name+` \(`, string(out))
	}
	assert.Contains(t, string(out), "do not run under go test -short")
	assert.NotContains(t, string(out), " up: namespaces", "a lab was built:\n%s", out)
	t.Logf("child skipped in %v", time.Since(t0).Round(time.Millisecond))
}

func init() {
	lab.RegisterClient("go-version", func(context.Context, json.RawMessage) (any, error) {
		return runtime.Version(), nil
	})
}

// TestReexecSameToolchain checks that the binary the lab re-executes for
// its clients and servers is this test binary, built by the same Go: the
// lab's crypto/tls and net/http are the toolchain's under test (CI runs the
// suite under two). It builds no lab, so it runs under -short too.
func TestReexecSameToolchain(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	raw, err := lab.RunHost(ctx, "go-version", nil)
	require.NoError(t, err)
	var v string
	require.NoError(t, json.Unmarshal(raw, &v))
	assert.Equal(t, runtime.Version(), v)
}
