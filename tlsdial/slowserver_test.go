package tlsdial_test

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/leaktest"
	"github.com/fitshake/fitshake/internal/testcert"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slowConfig returns the configuration of a TLS server that holds every
// ClientHello for delay before answering, and the CA of its certificate.
func slowConfig(tb testing.TB, delay time.Duration) (*tls.Config, *testcert.CA) {
	tb.Helper()
	ca, err := testcert.NewCA()
	require.NoError(tb, err)
	cert, err := ca.Issue([]string{serverName}, 0)
	require.NoError(tb, err)
	server := &tls.Config{Certificates: []tls.Certificate{cert}}
	server.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		time.Sleep(delay)
		return nil, nil
	}
	return server, ca
}

// countingSlowServer runs a TLS server that holds every ClientHello for
// delay and counts the connections it accepts.
func countingSlowServer(t testing.TB, delay time.Duration) (string, *tls.Config, *atomic.Int32) {
	t.Helper()
	scfg, ca := slowConfig(t, delay)
	ccfg := &tls.Config{RootCAs: ca.Pool, ServerName: serverName}
	conns := new(atomic.Int32)
	ln := tls.NewListener(testcert.Listen(t), scfg)
	testcert.Serve(t, ln, func(c net.Conn, _ func(net.Conn)) {
		conns.Add(1)
		c.SetDeadline(time.Now().Add(15 * time.Second))
		c.(*tls.Conn).Handshake()
		c.Read(make([]byte, 1))
	})
	return ln.Addr().String(), ccfg, conns
}

// A server that answers hellos after 0.8 s gets at most one extra
// connection from a fresh process's first dial, and none from the dials
// after it: the silence is learned.
func TestSlowServerFirstDialCostsOneConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a slow server")
	}
	for _, k := range []struct {
		name string
		dial func(*tls.Config) dialFunc
	}{
		{"Dialer", func(c *tls.Config) dialFunc { return fitshakeDial(c, false) }},
		{"TCPDialer", func(c *tls.Config) dialFunc { return tcpDialerDial(c, false) }},
	} {
		t.Run(k.name, func(t *testing.T) {
			leaktest.Check(t)
			addr, cfg, conns := countingSlowServer(t, 800*time.Millisecond)
			dial := k.dial(cfg) // one dialer, one cache: a fresh process
			for i := range 3 {
				before := conns.Load()
				c, err := dial(context.Background(), addr)
				require.NoError(t, err)
				c.Close()
				opened := conns.Load() - before
				if i == 0 {
					assert.LessOrEqual(t, opened, int32(2), "the first dial: at most one extra connection")
				} else {
					assert.Equal(t, int32(1), opened, "dial %d: the server's silence is known", i+1)
				}
			}
		})
	}
}

// 200 concurrent first dials to a server answering after 0.4 s open at
// most 1.2 connections per dial: the destination's hedge budget. Under the
// race detector the 200 handshakes starve the CPU: the server answers
// after 1–2 s, dials that start after the first ones ended race afresh
// (their group is new), and the bound is looser. CI runs it without the
// race detector too (.ci/run).
func TestSlowServerHerdIsBudgeted(t *testing.T) {
	if testing.Short() {
		t.Skip("200 handshakes")
	}
	leaktest.Check(t)
	const n = 200
	addr, cfg, conns := countingSlowServer(t, 400*time.Millisecond)
	dial := fitshakeDial(cfg, false)
	var wg sync.WaitGroup
	var failed atomic.Int32
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := dial(ctx, addr)
			if err != nil {
				failed.Add(1)
				t.Log(err)
				return
			}
			c.Close()
		}()
	}
	close(start)
	wg.Wait()
	assert.Zero(t, failed.Load())
	perDial := float64(conns.Load()) / n
	t.Logf("%d connections for %d dials: %.2f per dial", conns.Load(), n, perDial)
	bound := 1.2
	if raceEnabled {
		bound = 2.0
	}
	assert.LessOrEqual(t, perDial, bound)
}
