package tlsdial_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/testcert"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const serverName = "server.fitshake.test"

type testServer struct {
	ca   *testcert.CA
	addr string
}

// startServer runs a Go TLS server that completes handshakes and echoes.
// extraNames pads its certificate to make its first flight large.
func startServer(t testing.TB, extraNames int) *testServer {
	t.Helper()
	ca, err := testcert.NewCA()
	require.NoError(t, err)
	cert, err := ca.Issue([]string{serverName, "127.0.0.1"}, extraNames)
	require.NoError(t, err)
	ln := tls.NewListener(testcert.Listen(t), &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
	})
	testcert.Serve(t, ln, func(c net.Conn, _ func(net.Conn)) { copyConn(c, c) })
	return &testServer{ca: ca, addr: ln.Addr().String()}
}

func (s *testServer) config() *tls.Config {
	return &tls.Config{RootCAs: s.ca.Pool, ServerName: serverName, NextProtos: []string{"h2", "http/1.1"}}
}

// blackHole puts a simulated path MTU in front of addr.
func blackHole(t *testing.T, addr string, mtu int, dir pmtutest.Direction) string {
	t.Helper()
	p, err := pmtutest.Start(pmtutest.Config{Target: addr, MTU: mtu, Direction: dir})
	if err != nil {
		t.Skipf("black-hole simulator unavailable here: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p.Addr()
}

// options are the dialer settings the shared tests vary.
type options struct {
	cache          *pmtu.Cache
	trace          *tlsdial.Trace
	timerOnly      bool
	allowClassical bool
	maxAttempts    int
	stallWindow    time.Duration
}

// kind is one of the two dialers, driven the same way: dial returns the
// connection after a complete TLS handshake (crypto/tls over TCPDialer's
// connection for the TCPDialer), the dial's Report, and its error.
type kind struct {
	name string
	dial func(ctx context.Context, addr string, cfg *tls.Config, o options) (net.Conn, tlsdial.Report, error)
}

var kinds = []kind{
	{"Dialer", func(ctx context.Context, addr string, cfg *tls.Config, o options) (net.Conn, tlsdial.Report, error) {
		d := &tlsdial.Dialer{Config: cfg, Cache: o.cache, Trace: o.trace, TimerOnly: o.timerOnly,
			AllowClassical: o.allowClassical, MaxAttempts: o.maxAttempts, StallWindow: o.stallWindow}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			var de *tlsdial.DialError
			errors.As(err, &de)
			if de == nil {
				return nil, tlsdial.Report{}, err
			}
			return nil, de.Report, err
		}
		return c, c.(*tlsdial.Conn).Report(), nil
	}},
	{"TCPDialer", func(ctx context.Context, addr string, cfg *tls.Config, o options) (net.Conn, tlsdial.Report, error) {
		td := &tlsdial.TCPDialer{Cache: o.cache, Trace: o.trace, TimerOnly: o.timerOnly,
			MaxAttempts: o.maxAttempts, StallWindow: o.stallWindow}
		raw, err := td.DialContext(ctx, "tcp", addr)
		if err != nil {
			var de *tlsdial.DialError
			errors.As(err, &de)
			return nil, de.Report, err
		}
		tc := tls.Client(raw, cfg)
		err = tc.HandshakeContext(ctx)
		r := raw.(*tlsdial.TCPConn).Report()
		if err != nil {
			tc.Close()
			return nil, r, err
		}
		return tc, r, nil
	}},
}

// recorder is a Trace that keeps every event.
type recorder struct {
	mu     sync.Mutex
	starts []tlsdial.AttemptStartInfo
	stalls []tlsdial.StallInfo
	dones  []tlsdial.AttemptDoneInfo
	done   []tlsdial.DoneInfo
}

func (r *recorder) trace() *tlsdial.Trace {
	return &tlsdial.Trace{
		AttemptStart: func(i tlsdial.AttemptStartInfo) { r.mu.Lock(); r.starts = append(r.starts, i); r.mu.Unlock() },
		Stall:        func(i tlsdial.StallInfo) { r.mu.Lock(); r.stalls = append(r.stalls, i); r.mu.Unlock() },
		AttemptDone:  func(i tlsdial.AttemptDoneInfo) { r.mu.Lock(); r.dones = append(r.dones, i); r.mu.Unlock() },
		Done:         func(i tlsdial.DoneInfo) { r.mu.Lock(); r.done = append(r.done, i); r.mu.Unlock() },
	}
}

// checkTrace holds the events of one dial against its report: one start
// and one end per attempt with matching IDs, a Stall per stalled attempt,
// one Done, last.
func (r *recorder) checkTrace(t *testing.T, rep tlsdial.Report) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Len(t, r.starts, len(rep.Attempts), "%s", rep)
	require.Len(t, r.dones, len(rep.Attempts), "%s", rep)
	require.Len(t, r.done, 1)
	assert.Equal(t, len(rep.Attempts), len(r.done[0].Report.Attempts))
	stalls := 0
	for i, a := range rep.Attempts {
		assert.Equal(t, i+1, a.ID, "attempts are listed in start order")
		assert.Equal(t, a.ID, r.starts[i].ID, "the i-th start is attempt i+1")
		if a.Outcome == tlsdial.OutcomeStall {
			stalls++
		}
	}
	ended := map[int]bool{}
	for _, d := range r.dones {
		assert.False(t, ended[d.Attempt.ID], "attempt %d ended twice", d.Attempt.ID)
		ended[d.Attempt.ID] = true
		assert.Equal(t, rep.Attempts[d.Attempt.ID-1].Outcome, d.Attempt.Outcome)
	}
	assert.Len(t, r.stalls, stalls, "a Stall event per stalled attempt")
	assert.Equal(t, stalls, rep.Stalls())
}

// resetProxy forwards to target like a router that resets, instead of
// dropping, any packet over maxPacket bytes: it reads the client's first
// flight and, if its largest segment (from the accepted socket's MSS, which
// reflects the client's clamp on Linux) makes a bigger packet, resets both
// sides. It also resets any first flight over helloLimit bytes (0: none),
// as a box that rejects large hellos whatever their segmentation.
func resetProxy(t *testing.T, target string, maxPacket, helloLimit int) (addr string, conns *atomic.Int32) {
	t.Helper()
	ln := testcert.Listen(t)
	conns = new(atomic.Int32)
	testcert.Serve(t, ln, func(c net.Conn, track func(net.Conn)) {
		conns.Add(1)
		resetOrForward(c, target, maxPacket, helloLimit, track)
	})
	return ln.Addr().String(), conns
}

func resetOrForward(c net.Conn, target string, maxPacket, helloLimit int, track func(net.Conn)) {
	seg := 1448
	if mss, err := pmtu.EffectiveMSS(c); err == nil && mss < seg {
		seg = mss
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16<<10)
	n, err := c.Read(buf)
	if err != nil {
		return
	}
	if min(n, seg)+52 > maxPacket || (helloLimit > 0 && n > helloLimit) {
		c.(*net.TCPConn).SetLinger(0) // an RST
		return
	}
	s, err := net.Dial("tcp4", target)
	if err != nil {
		return
	}
	track(s)
	defer s.Close()
	c.SetReadDeadline(time.Time{})
	s.Write(buf[:n])
	done := make(chan struct{})
	go func() { defer close(done); copyConn(c, s); c.Close() }()
	copyConn(s, c)
	s.Close()
	<-done
}

// checkNoGroups fails if a dial left its destination group behind.
func checkNoGroups(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for tlsdial.GroupCount() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	assert.Zero(t, tlsdial.GroupCount(), "every dial left its destination's group")
}
