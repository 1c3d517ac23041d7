package probe_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
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

// quietTLSServer is a TLS server on loopback that does not log the
// handshakes a probe abandons.
func quietTLSServer(t *testing.T) *httptest.Server {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// TestRunCannotMeasure probes servers behind pmtutest's simulator, a
// userspace proxy on loopback: the kernel's evidence is about the proxy,
// not the path, so the Result says "cannot measure" and why after the
// connect and crypto/tls's handshake, and reports no limit.
func TestRunCannotMeasure(t *testing.T) {
	srv := quietTLSServer(t)
	for _, tt := range []struct {
		name string
		cfg  pmtutest.Config
	}{
		{"both ways at 1400", pmtutest.Config{MTU: 1400}},
		{"downstream at 576", pmtutest.Config{MTU: 576, Direction: pmtutest.Downstream}},
		{"upstream at 1280 on IPv6", pmtutest.Config{MTU: 1280, Direction: pmtutest.Upstream, Network: "tcp6"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Target = srv.Listener.Addr().String()
			p, err := pmtutest.Start(tt.cfg)
			if errors.Is(err, pmtu.ErrUnsupported) {
				t.Skip(err)
			}
			if err != nil && tt.cfg.Network == "tcp6" {
				t.Skip("no IPv6 loopback:", err)
			}
			require.NoError(t, err)
			defer p.Close()

			res, err := probe.Run(context.Background(), p.Addr(), probe.Options{Config: srv.Client().Transport.(*http.Transport).TLSClientConfig})
			require.NoError(t, err)
			var cm *probe.CannotMeasureError
			require.ErrorAs(t, res.Err(), &cm, "%s", res)
			assert.ErrorIs(t, res.Err(), probe.ErrCannotMeasure)
			assert.Equal(t, res.CannotMeasure, cm.Reason)
			assert.Contains(t, cm.Reason, "on this host")
			assert.Contains(t, cm.Reason, "no answer in time", "it says what the handshake got")
			assert.Equal(t, "cannot-measure", res.Class)
			assert.False(t, res.Healthy)
			assert.Zero(t, res.UpstreamMTU, "no limit it did not see")
			assert.Zero(t, res.DownstreamMTU, "no limit it did not see")
			assert.Equal(t, 2, res.Conns, "the connect and crypto/tls's handshake: %s", res)
			assert.Equal(t, 2, p.Stats().Conns)
			assert.Less(t, res.Seconds, 10.0, "the handshake's 2 s, not a search")
			assert.Contains(t, res.String(), "CANNOT MEASURE")
		})
	}
}
