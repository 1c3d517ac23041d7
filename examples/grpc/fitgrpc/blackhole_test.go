package fitgrpc_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/testcert"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// startServer serves the health service over TLS on loopback behind a
// 1400-byte black hole in direction dir; it returns the proxy's address,
// the proxy, the server's own address, and a client config that trusts it.
func startServer(t *testing.T, dir pmtutest.Direction) (*pmtutest.Proxy, string, *tls.Config) {
	t.Helper()
	// 20 more names: a certificate flight that does not fit one packet.
	scfg, ccfg, err := testcert.Configs([]string{"grpc.fitshake.test"}, 20)
	require.NoError(t, err)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serveHealth(ctx, ln, scfg, 50*time.Millisecond) }()
	p, err := pmtutest.Start(pmtutest.Config{Target: ln.Addr().String(), MTU: 1400, Direction: dir})
	if errors.Is(err, pmtu.ErrUnsupported) {
		cancel()
		t.Skip(err)
	}
	require.NoError(t, err)
	t.Cleanup(func() {
		p.Close()
		cancel()
		assert.NoError(t, <-served)
	})
	return p, ln.Addr().String(), ccfg
}

// leakCheck fails t if, once the test's connections are closed, more
// goroutines or file descriptors remain than before it began.
func leakCheck(t *testing.T) {
	g0, f0 := runtime.NumGoroutine(), openFDs()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			g, f := runtime.NumGoroutine(), openFDs()
			if g <= g0 && f <= f0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("leak: goroutines %d → %d, fds %d → %d", g0, g, f0, f)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func openFDs() int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(es)
}

// TestBlackhole runs unary and streaming calls through a 1400-byte black
// hole, in each direction, over both dialers: one dial each, recovered
// with MSS 1360 on its second attempt.
func TestBlackhole(t *testing.T) {
	for _, via := range []string{viaTCPDialer, viaDialer} {
		for _, dir := range []pmtutest.Direction{pmtutest.Upstream, pmtutest.Downstream, pmtutest.Both} {
			t.Run(via+"/"+dir.String(), func(t *testing.T) {
				leakCheck(t)
				p, _, cfg := startServer(t, dir)
				conn, log, err := newClient(p.Addr(), via, cfg, &pings{}, nil)
				require.NoError(t, err)
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				start := time.Now()
				require.NoError(t, exercise(ctx, conn, 3))
				t.Logf("unary + 3 streamed changes in %v", time.Since(start))
				require.NoError(t, conn.Close())

				reports, errs := log.snapshot()
				require.Len(t, reports, 1, "one dial for the whole session")
				require.NoError(t, errs[0])
				r := reports[0]
				assert.Equal(t, 1360, r.MSS)
				assert.Len(t, r.Attempts, 2)
				assert.Equal(t, 2, p.Stats().Conns, "connections through the black hole")
				assert.Positive(t, p.Stats().UpDropped+p.Stats().DownDropped)
			})
		}
	}
}

// TestBlackholeStock shows what the dialers fix: grpc's own dialer
// reaches the server directly, and through the same black hole its calls
// fail at their deadline.
func TestBlackholeStock(t *testing.T) {
	leakCheck(t)
	p, direct, cfg := startServer(t, pmtutest.Both)

	conn, _, err := newClient(direct, viaStock, cfg, &pings{}, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	require.NoError(t, exercise(ctx, conn, 1), "stock grpc without the black hole")
	cancel()
	require.NoError(t, conn.Close())

	conn, _, err = newClient(p.Addr(), viaStock, cfg, &pings{}, nil)
	require.NoError(t, err)
	defer conn.Close()
	const bound = 2 * time.Second
	ctx, cancel = context.WithTimeout(context.Background(), bound)
	defer cancel()
	start := time.Now()
	err = exercise(ctx, conn, 1)
	took := time.Since(start)
	require.Error(t, err)
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)
	assert.Less(t, took, bound+2*time.Second)
	assert.NotEqual(t, connectivity.Ready, conn.GetState())
	assert.Positive(t, p.Stats().UpDropped+p.Stats().DownDropped)
}

// TestKeepalive keeps a connection that came through the black hole idle
// past grpc's keepalive time: its pings go out, their acknowledgements
// come back on the winning (clamped) connection, and the next calls use
// the same connection. grpc's shortest keepalive time is 10 s.
func TestKeepalive(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: waits 12 s for a keepalive ping")
	}
	for _, via := range []string{viaTCPDialer, viaDialer} {
		t.Run(via, func(t *testing.T) {
			t.Parallel()
			p, _, cfg := startServer(t, pmtutest.Both)
			var pg pings
			kp := &keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 2 * time.Second, PermitWithoutStream: true}
			conn, log, err := newClient(p.Addr(), via, cfg, &pg, kp)
			require.NoError(t, err)
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			require.NoError(t, exercise(ctx, conn, 1))
			time.Sleep(kp.Time + kp.Timeout + 500*time.Millisecond)
			require.NoError(t, exercise(ctx, conn, 1))

			assert.GreaterOrEqual(t, pg.sent.Load(), int64(1), "keepalive pings sent")
			assert.GreaterOrEqual(t, pg.acked.Load(), int64(1), "keepalive pings acknowledged")
			reports, _ := log.snapshot()
			assert.Len(t, reports, 1, "no redial: the connection survived its keepalives")
			assert.Equal(t, 2, p.Stats().Conns)
			t.Logf("pings sent %d, acked %d; MSS %d", pg.sent.Load(), pg.acked.Load(), reports[0].MSS)
		})
	}
}
