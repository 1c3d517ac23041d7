package probe_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fitshake/fitshake/probe"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// openFDs counts this process's open file descriptors (Linux).
func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestRunLeavesNothing probes a healthy loopback server, then a cancelled
// run: goroutines and file descriptors come back to where they were.
func TestRunLeavesNothing(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "https://")
	time.Sleep(50 * time.Millisecond) // the server's accept loop starts
	g0, f0 := runtime.NumGoroutine(), openFDs(t)

	res, err := probe.Run(context.Background(), addr, probe.Options{Network: "tcp4"})
	require.NoError(t, err)
	assert.True(t, res.Healthy, "%s", res)
	assert.Positive(t, res.Conns)
	t.Logf("%d connections, %.2f s", res.Conns, res.Seconds)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = probe.Run(ctx, addr, probe.Options{Network: "tcp4"})
	assert.ErrorIs(t, err, context.Canceled)

	srv.CloseClientConnections()
	assert.Eventually(t, func() bool { return len(probeGoroutines()) == 0 && openFDs(t) <= f0 },
		5*time.Second, 10*time.Millisecond)
	assert.Empty(t, probeGoroutines(), "goroutines of the probe left running")
	assert.LessOrEqual(t, openFDs(t), f0, "file descriptors")
	assert.LessOrEqual(t, runtime.NumGoroutine(), g0+1, "(+1: the runtime's finalizer goroutine may be running)")
}

// probeGoroutines returns the stacks of goroutines running code of package
// probe or of a connection it made, other than this test's.
func probeGoroutines() []string {
	buf := make([]byte, 1<<20)
	var out []string
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "probe_test.") {
			continue
		}
		if strings.Contains(g, "fitshake/probe.") || strings.Contains(g, "fitshake/tlsdial.") {
			out = append(out, g)
		}
	}
	return out
}

func TestRunBadInput(t *testing.T) {
	for _, tt := range []struct{ addr, network string }{
		{"no-port", ""}, {"127.0.0.1:443", "udp"},
	} {
		_, err := probe.Run(context.Background(), tt.addr, probe.Options{Network: tt.network})
		assert.Error(t, err, "%+v", tt)
	}
}
