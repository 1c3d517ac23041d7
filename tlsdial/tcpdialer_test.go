package tlsdial_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/leaktest"
	"github.com/fitshake/fitshake/internal/testcert"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
)

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
	leaktest.Check(t)
	addr, cfg := h2ServerBehindBlackHole(t)

	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}
	tr := &http.Transport{
		DialContext:         td.DialContext,
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 10 * time.Second,
		TLSClientConfig:     cfg,
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
	leaktest.Check(t)
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
	leaktest.Check(t)
	// A plain TCP echo server behind the black hole: a large first write is
	// not a ClientHello and must not be replayed.
	ln := testcert.Listen(t)
	testcert.Serve(t, ln, func(c net.Conn, _ func(net.Conn)) { copyConn(c, c) })
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
	leaktest.Check(t)
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
	assert.Less(t, time.Since(t0), time.Second, "the stack's deadline, not the stall window")
	r := raw.(*tlsdial.TCPConn).Report()
	require.Len(t, r.Attempts, 1, "nothing redialed within the deadline: %s", r)
	assert.Equal(t, tlsdial.OutcomeRunning, r.Attempts[0].Outcome, "still waiting when the stack gave up")
}

func TestTCPDialerCancelMidStall(t *testing.T) {
	leaktest.Check(t)
	srv := startServer(t, 0)
	addr := blackHole(t, srv.addr, 1400, pmtutest.Both)
	rec := &recorder{}
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}, StallWindow: 10 * time.Second, Trace: rec.trace()}
	raw, err := td.DialContext(context.Background(), "tcp", addr)
	require.NoError(t, err)
	tc := tls.Client(raw, srv.config())
	defer tc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	t0 := time.Now()
	err = tc.HandshakeContext(ctx) // crypto/tls closes the conn when ctx ends
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(t0), 2*time.Second)
	require.Eventually(t, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.done) == 1
	}, 2*time.Second, 5*time.Millisecond, "Done fires when the stack closes the connection")
	r := raw.(*tlsdial.TCPConn).Report()
	rec.checkTrace(t, r)
	assert.Equal(t, tlsdial.OutcomeCanceled, r.Attempts[0].Outcome)
	checkNoGroups(t)
}

// A connection dialed and closed unused ends its dial: Done fires, and
// nothing is left for later dials to wait on.
func TestTCPConnClosedUnused(t *testing.T) {
	leaktest.Check(t)
	srv := startServer(t, 0)
	rec := &recorder{}
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}, Trace: rec.trace()}
	c, err := td.DialContext(context.Background(), "tcp", srv.addr)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.ErrorIs(t, c.Close(), net.ErrClosed)
	r := c.(*tlsdial.TCPConn).Report()
	rec.checkTrace(t, r)
	assert.Equal(t, tlsdial.OutcomeCanceled, r.Attempts[0].Outcome)
	_, err = c.Write([]byte("x"))
	assert.ErrorIs(t, err, net.ErrClosed)
	_, err = c.Read(make([]byte, 1))
	assert.ErrorIs(t, err, net.ErrClosed)

	t0 := time.Now()
	c2, err := td.DialContext(context.Background(), "tcp", srv.addr)
	require.NoError(t, err)
	c2.Close()
	assert.Less(t, time.Since(t0), 100*time.Millisecond, "the next dial waits for nothing")
}

// Report means something while the dial runs: the attempts so far, the
// ones still running marked so.
func TestTCPConnReportWhileRunning(t *testing.T) {
	leaktest.Check(t)
	srv := startServer(t, 0)
	addr := blackHole(t, srv.addr, 1280, pmtutest.Both)
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}
	raw, err := td.DialContext(context.Background(), "tcp", addr)
	require.NoError(t, err)
	defer raw.Close()
	c := raw.(*tlsdial.TCPConn)
	tc := tls.Client(raw, srv.config())
	done := make(chan error, 1)
	go func() { done <- tc.Handshake() }()
	require.Eventually(t, func() bool { return len(c.Report().Attempts) == 2 }, 2*time.Second, time.Millisecond)
	r := c.Report()
	assert.Equal(t, tlsdial.OutcomeRunning, r.Attempts[0].Outcome, "%s", r)
	assert.Equal(t, tlsdial.OutcomeRunning, r.Attempts[1].Outcome, "%s", r)
	assert.Equal(t, 1400, r.Attempts[1].MTU)
	assert.Greater(t, r.Attempts[0].HelloSize, 1400, "the hello's size, once written")
	assert.Zero(t, r.MSS, "nothing completed yet")
	require.NoError(t, <-done)
	r = c.Report()
	require.Len(t, r.Attempts, 3, "%s", r)
	assert.Equal(t, 1240, r.MSS)
}

// Read, Write, Close, Report and the deadlines, called concurrently while
// the connection redials: the race detector and the leak check judge.
func TestTCPConnConcurrentUseDuringRedial(t *testing.T) {
	leaktest.Check(t)
	srv := startServer(t, 0)
	addr := blackHole(t, srv.addr, 1280, pmtutest.Both)
	for i := range 20 {
		td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}
		raw, err := td.DialContext(context.Background(), "tcp", addr)
		require.NoError(t, err)
		c := raw.(*tlsdial.TCPConn)
		tc := tls.Client(raw, srv.config())
		var wg sync.WaitGroup
		run := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
		run(func() { tc.Handshake() })
		run(func() {
			for range 50 {
				c.Report()
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				c.LocalAddr()
				c.NetConn()
				time.Sleep(time.Millisecond)
			}
		})
		closeAfter := time.Duration(i) * 30 * time.Millisecond // some before, some after the redials
		run(func() { time.Sleep(closeAfter); tc.Close() })
		wg.Wait()
		_, err = c.Read(make([]byte, 1))
		assert.Error(t, err)
		_, err = c.Write([]byte("x"))
		assert.Error(t, err)
	}
	checkNoGroups(t)
}

// When the stack writes again before any reply, the hello can no longer be
// replayed: one attempt is kept and the data goes there.
func TestTCPConnSecondWriteKeepsOneAttempt(t *testing.T) {
	leaktest.Check(t)
	ln := testcert.Listen(t)
	got := make(chan []byte, 4)
	testcert.Serve(t, ln, func(c net.Conn, _ func(net.Conn)) {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		b, _ := io.ReadAll(io.LimitReader(c, int64(len(fakeHello)+5)))
		if len(b) > len(fakeHello) {
			got <- b
		}
		c.Write([]byte("ok"))
	})
	slow, err := pmtutest.Start(pmtutest.Config{Target: ln.Addr().String(), MTU: 9000, Delay: 300 * time.Millisecond})
	require.NoError(t, err)
	defer slow.Close()
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}, StallWindow: 50 * time.Millisecond}
	c, err := td.DialContext(context.Background(), "tcp", slow.Addr())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write(fakeHello)
	require.NoError(t, err)
	time.Sleep(80 * time.Millisecond) // silent past the window: a second attempt races
	_, err = c.Write([]byte("after"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(3*time.Second)))
	buf := make([]byte, 2)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "ok", string(buf))
	first := <-got
	assert.Equal(t, append(append([]byte{}, fakeHello...), "after"...), first, "hello and data on the kept attempt")
	r := c.(*tlsdial.TCPConn).Report()
	require.Len(t, r.Attempts, 2, "%s", r)
	assert.Equal(t, tlsdial.OutcomeOK, r.Attempts[0].Outcome)
	assert.Equal(t, tlsdial.OutcomeSuperseded, r.Attempts[1].Outcome)
}

// fakeHello is a well-formed TLS record holding one (meaningless)
// ClientHello message: what a TCPConn watches, to a server that is no
// TLS server.
var fakeHello = clientHelloRecord(600)

// clientHelloRecord returns a TLS record holding one ClientHello message
// with a body of n zero bytes.
func clientHelloRecord(n int) []byte {
	hs := append([]byte{1, 0, byte(n >> 8), byte(n)}, make([]byte, n)...)
	return append([]byte{22, 3, 1, byte(len(hs) >> 8), byte(len(hs))}, hs...)
}

// A server that speaks first: nothing to watch, a plain connection.
func TestTCPConnServerSpeaksFirst(t *testing.T) {
	leaktest.Check(t)
	ln := testcert.Listen(t)
	testcert.Serve(t, ln, func(c net.Conn, _ func(net.Conn)) { c.Write([]byte("220 hello\r\n")) })
	c, err := (&tlsdial.TCPDialer{Cache: &pmtu.Cache{}}).DialContext(context.Background(), "tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	b, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Equal(t, "220 hello\r\n", string(b))
	r := c.(*tlsdial.TCPConn).Report()
	require.Len(t, r.Attempts, 1)
	assert.Equal(t, tlsdial.OutcomeOK, r.Attempts[0].Outcome)
}

// After the server's first byte a TCPConn is a pass-through: Read and
// Write allocate nothing of their own, whether the first attempt got the
// reply (read by Read itself) or a raced one did (its first bytes handed
// on by Read). The "ClientHello" is a well-formed record a plain
// echo-after-greeting server answers, so that raw bytes can flow once the
// dial is settled. The raced attempt goes through the in-process
// black-hole proxy, which reads TCP_INFO per segment and allocates doing
// so; AllocsPerRun counts every goroutine's allocations, so there the
// bound is a plain net.TCPConn clamped the same way through the same proxy.
func TestTCPConnAllocatesNothingOnceSettled(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates; CI runs this test without it")
	}
	ln := testcert.Listen(t)
	testcert.Serve(t, ln, func(c net.Conn, _ func(net.Conn)) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, len(bigHello))); err != nil {
			return
		}
		c.Write([]byte("ok"))
		copyConn(c, c)
	})
	for _, path := range []string{"first attempt", "raced attempt"} {
		t.Run(path, func(t *testing.T) {
			addr, base := ln.Addr().String(), 0.0
			if path == "raced attempt" {
				addr = blackHole(t, addr, 1400, pmtutest.Upstream) // silent until a clamp races
			}
			c, err := (&tlsdial.TCPDialer{Cache: &pmtu.Cache{}}).DialContext(context.Background(), "tcp", addr)
			require.NoError(t, err)
			defer c.Close()
			greet(t, c)
			r := c.(*tlsdial.TCPConn).Report()
			require.Equal(t, map[string]int{"first attempt": 1, "raced attempt": 2}[path], len(r.Attempts), "%s", r)
			if path == "raced attempt" {
				mss, err := pmtu.EffectiveMSS(c)
				require.NoError(t, err)
				d, err := pmtu.DialerWithMSS(&net.Dialer{}, mss)
				require.NoError(t, err)
				plain, err := d.Dial("tcp", addr)
				require.NoError(t, err)
				defer plain.Close()
				greet(t, plain)
				base = echoAllocs(t, plain)
			}
			assert.LessOrEqual(t, echoAllocs(t, c), base, "per Write+Read after the first byte")
		})
	}
}

// greet sends bigHello on c and reads the server's two-byte answer.
func greet(t *testing.T, c net.Conn) {
	t.Helper()
	_, err := c.Write(bigHello)
	require.NoError(t, err)
	_, err = io.ReadFull(c, make([]byte, 2))
	require.NoError(t, err)
}

// echoAllocs returns the allocations per Write and Read of ten bytes
// echoed back on c.
func echoAllocs(t *testing.T, c net.Conn) float64 {
	t.Helper()
	msg := []byte("0123456789")
	buf := make([]byte, len(msg))
	allocs := testing.AllocsPerRun(200, func() {
		c.Write(msg)
		io.ReadFull(c, buf)
	})
	require.Equal(t, msg, buf)
	t.Logf("%T: %v allocations per Write+Read", c, allocs)
	return allocs
}

// bigHello is a 1500-byte fake ClientHello record: two segments, the
// first over a 1400-byte path.
var bigHello = clientHelloRecord(1491)

// Hooks run with no lock held: they may call back into the connection,
// Report on every event, even Close from a Stall.
func TestTCPConnHooksMayCallBack(t *testing.T) {
	leaktest.Check(t)
	srv := startServer(t, 0)
	addr := blackHole(t, srv.addr, 1400, pmtutest.Both)
	var conn atomic.Pointer[tlsdial.TCPConn]
	var reports atomic.Int32
	report := func() {
		if c := conn.Load(); c != nil {
			c.Report()
			reports.Add(1)
		}
	}
	tr := &tlsdial.Trace{
		AttemptStart: func(tlsdial.AttemptStartInfo) { report() },
		Stall:        func(tlsdial.StallInfo) { report() },
		AttemptDone:  func(tlsdial.AttemptDoneInfo) { report() },
		Done:         func(tlsdial.DoneInfo) { report() },
	}
	raw, err := (&tlsdial.TCPDialer{Cache: &pmtu.Cache{}, Trace: tr}).DialContext(context.Background(), "tcp", addr)
	require.NoError(t, err)
	conn.Store(raw.(*tlsdial.TCPConn))
	tc := tls.Client(raw, srv.config())
	require.NoError(t, tc.SetDeadline(time.Now().Add(5*time.Second)))
	require.NoError(t, tc.Handshake())
	tc.Close()
	assert.GreaterOrEqual(t, reports.Load(), int32(4), "start, stall, two ends, done")

	// Close from inside the Stall hook ends the dial at once.
	conn.Store(nil)
	closing := &tlsdial.Trace{Stall: func(tlsdial.StallInfo) { conn.Load().Close() }}
	raw, err = (&tlsdial.TCPDialer{Cache: &pmtu.Cache{}, Trace: closing}).DialContext(context.Background(), "tcp", addr)
	require.NoError(t, err)
	conn.Store(raw.(*tlsdial.TCPConn))
	tc = tls.Client(raw, srv.config())
	require.NoError(t, tc.SetDeadline(time.Now().Add(5*time.Second)))
	t0 := time.Now()
	require.Error(t, tc.Handshake())
	assert.Less(t, time.Since(t0), 2*time.Second)
	r := raw.(*tlsdial.TCPConn).Report()
	for _, a := range r.Attempts {
		assert.NotEqual(t, tlsdial.OutcomeRunning, a.Outcome, "%s", r)
	}
	checkNoGroups(t)
}
