package tlsdial_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
)

func TestTCPDialerReplaysClientHello(t *testing.T) {
	for _, timerOnly := range []bool{false, true} {
		for _, dir := range []pmtutest.Direction{pmtutest.Upstream, pmtutest.Downstream} {
			name := dir.String() + map[bool]string{false: "/tcpinfo", true: "/timer"}[timerOnly]
			t.Run(name, func(t *testing.T) {
				checkLeaks(t)
				srv := startServer(t, 150)
				addr := blackHole(t, srv.addr, 1400, dir)
				td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}, TimerOnly: timerOnly}
				raw, err := td.DialContext(context.Background(), "tcp", addr)
				require.NoError(t, err)
				tc := tls.Client(raw, srv.config())
				defer tc.Close()
				require.NoError(t, tc.SetDeadline(time.Now().Add(10*time.Second)))
				require.NoError(t, tc.Handshake())
				echo(t, tc)

				r := raw.(*tlsdial.TCPConn).Report()
				require.Len(t, r.Attempts, 2, "%s", r)
				if timerOnly {
					assert.Equal(t, tlsdial.OutcomeStall, r.Attempts[0].Outcome)
				} else {
					// The simulator acks the hello: a silent server, so a
					// clamped replay races the first connection and wins.
					assert.Equal(t, tlsdial.OutcomeSuperseded, r.Attempts[0].Outcome)
					assert.True(t, r.Attempts[1].Hedge)
				}
				assert.Equal(t, tlsdial.OutcomeOK, r.Attempts[1].Outcome)
				assert.Equal(t, 1360, r.MSS)
				assert.Equal(t, r.Attempts[0].HelloSize, r.HelloSize, "the same bytes, replayed")
				assert.Greater(t, r.HelloSize, 1400, "crypto/tls's own post-quantum hello")
				assert.Equal(t, tls.X25519MLKEM768, tc.ConnectionState().CurveID)
				assert.Equal(t, 1348, mustMSS(t, raw.(*tlsdial.TCPConn).NetConn()))
			})
		}
	}
}

// h2ServerBehindBlackHole starts an HTTP/2 test server answering with the
// request's protocol, behind a 1400-byte black hole, and returns the
// address to dial and a client config trusting it.
func h2ServerBehindBlackHole(t *testing.T) (string, *tls.Config) {
	t.Helper()
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	cfg := ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	return blackHole(t, ts.Listener.Addr().String(), 1400, pmtutest.Both), cfg
}

func TestTCPDialerHTTP2AndTrace(t *testing.T) {
	checkLeaks(t)
	addr, cfg := h2ServerBehindBlackHole(t)

	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}
	tr := &http.Transport{
		DialContext:       td.DialContext,
		ForceAttemptHTTP2: true,
		TLSClientConfig:   cfg,
	}
	defer tr.CloseIdleConnections()
	var done atomic.Pointer[tlsdial.Report]
	ctx := tlsdial.WithTrace(context.Background(), &tlsdial.Trace{
		Done: func(i tlsdial.DoneInfo) { r := i.Report; done.Store(&r) },
	})
	req, err := http.NewRequestWithContext(ctx, "GET", "https://"+addr+"/", nil)
	require.NoError(t, err)
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 2, resp.ProtoMajor)
	assert.Equal(t, "HTTP/2.0", string(body))
	r := done.Load()
	require.NotNil(t, r, "the context's trace saw the report")
	assert.Equal(t, 1360, r.MSS)
	assert.Len(t, r.Attempts, 2)
}

func TestDialerHTTP2(t *testing.T) {
	checkLeaks(t)
	addr, cfg := h2ServerBehindBlackHole(t)

	cfg.NextProtos = []string{"h2"}
	d := &tlsdial.Dialer{Config: cfg, Cache: &pmtu.Cache{}}
	tr := &http2.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + addr + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "HTTP/2.0", string(body))
}

func TestTCPDialerNeverReplaysOtherData(t *testing.T) {
	checkLeaks(t)
	// A plain TCP echo server behind the black hole: a large first write is
	// not a ClientHello and must not be replayed.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); copyConn(c, c) }()
		}
	}()
	p, err := pmtutest.Start(pmtutest.Config{Target: ln.Addr().String(), MTU: 1400})
	if err != nil {
		t.Skipf("simulator unavailable: %v", err)
	}
	defer p.Close()
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}, StallWindow: 50 * time.Millisecond}
	c, err := td.DialContext(context.Background(), "tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	big := make([]byte, 3000)
	big[0] = 22 // looks like a TLS record, but is not a complete ClientHello
	_, err = c.Write(big)
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, err = c.Read(make([]byte, 10))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the caller's deadline, not a redial")
	assert.Equal(t, 1, p.Stats().Conns, "no second connection")
	r := c.(*tlsdial.TCPConn).Report()
	require.Len(t, r.Attempts, 1)
}

func TestTCPDialerHonoursStackDeadline(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, 0)
	addr := blackHole(t, srv.addr, 1400, pmtutest.Both)
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}, StallWindow: 5 * time.Second}
	raw, err := td.DialContext(context.Background(), "tcp", addr)
	require.NoError(t, err)
	tc := tls.Client(raw, srv.config())
	defer tc.Close()
	require.NoError(t, tc.SetDeadline(time.Now().Add(200*time.Millisecond)))
	t0 := time.Now()
	err = tc.Handshake()
	require.Error(t, err)
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout())
	assert.Less(t, time.Since(t0), 3*time.Second)
	assert.Len(t, raw.(*tlsdial.TCPConn).Report().Attempts, 0, "still the first attempt: nothing redialed")
}

func TestTCPDialerCancelMidStall(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, 0)
	addr := blackHole(t, srv.addr, 1400, pmtutest.Both)
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}, StallWindow: 10 * time.Second}
	raw, err := td.DialContext(context.Background(), "tcp", addr)
	require.NoError(t, err)
	tc := tls.Client(raw, srv.config())
	defer tc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	t0 := time.Now()
	err = tc.HandshakeContext(ctx)
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(t0), 5*time.Second)
}

func TestTCPDialerConcurrentDiscoverOnce(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, 0)
	addr := blackHole(t, srv.addr, 1400, pmtutest.Both)
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}
	const n = 6
	errs := make(chan error, n)
	attempts := make(chan int, n)
	for range n {
		go func() {
			raw, err := td.DialContext(context.Background(), "tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			tc := tls.Client(raw, srv.config())
			defer tc.Close()
			tc.SetDeadline(time.Now().Add(10 * time.Second))
			err = tc.Handshake()
			attempts <- len(raw.(*tlsdial.TCPConn).Report().Attempts)
			errs <- err
		}()
	}
	total := 0
	for range n {
		require.NoError(t, <-errs)
		total += <-attempts
	}
	assert.Equal(t, n+1, total, "one connection discovers (two attempts), the others wait for it")
}

func TestTCPDialerUnusedLeaderReleasesFollowers(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, 0)
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}
	leader, err := td.DialContext(context.Background(), "tcp", srv.addr)
	require.NoError(t, err)
	got := make(chan error, 1)
	go func() {
		c, err := td.DialContext(context.Background(), "tcp", srv.addr)
		if err == nil {
			c.Close()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("follower did not wait for the discovery in progress: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	require.NoError(t, leader.Close())
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-time.After(2 * time.Second):
		t.Fatal("closing the leader did not release the follower")
	}
}
