//go:build linux

package lab_test

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

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
