package tlsdial_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func echo(t *testing.T, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	msg := []byte("ping through the black hole")
	_, err := c.Write(msg)
	require.NoError(t, err)
	got := make([]byte, len(msg))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	assert.Equal(t, msg, got)
}

// The simulator acknowledges the client's data itself, so TCP_INFO shows a
// silent server rather than a black hole: with TCP_INFO the dialer races a
// clamped attempt (which wins); with TimerOnly it declares a stall at the
// window and redials. Both must recover. The kernel lab (internal/lab)
// covers the TCP_INFO signatures themselves.
func TestDialerRecovers(t *testing.T) {
	tests := []struct {
		name       string
		extraNames int
		dir        pmtutest.Direction
	}{
		{"upstream: ClientHello too big", 0, pmtutest.Upstream},
		{"downstream: certificate flight too big", 150, pmtutest.Downstream},
		{"both directions", 150, pmtutest.Both},
	}
	for _, timerOnly := range []bool{false, true} {
		for _, tt := range tests {
			name := tt.name + "/tcpinfo"
			if timerOnly {
				name = tt.name + "/timer"
			}
			t.Run(name, func(t *testing.T) {
				checkLeaks(t)
				srv := startServer(t, tt.extraNames)
				addr := blackHole(t, srv.addr, 1400, tt.dir)
				var stalls atomic.Int32
				d := &tlsdial.Dialer{
					Config:    srv.config(),
					Cache:     &pmtu.Cache{},
					TimerOnly: timerOnly,
					Trace:     &tlsdial.Trace{Stall: func(tlsdial.StallInfo) { stalls.Add(1) }},
				}
				c, err := d.DialContext(context.Background(), "tcp", addr)
				require.NoError(t, err)
				defer c.Close()
				conn := c.(*tlsdial.Conn)
				echo(t, conn)

				r := conn.Report()
				require.Len(t, r.Attempts, 2, "%s", r)
				first, last := r.Attempts[0], r.Attempts[1]
				assert.Zero(t, first.MSS)
				if timerOnly {
					assert.Equal(t, tlsdial.OutcomeStall, first.Outcome)
					assert.ErrorIs(t, first.Err, tlsdial.ErrStalled)
					assert.EqualValues(t, 1, stalls.Load())
					assert.False(t, last.Hedge)
				} else {
					assert.Equal(t, tlsdial.OutcomeSuperseded, first.Outcome, "%s", r)
					assert.Equal(t, pmtu.ClassSilent, first.Diagnosis.Class, "the proxy acked the hello")
					assert.True(t, last.Hedge, "raced in parallel")
					assert.Zero(t, stalls.Load())
				}
				assert.Equal(t, tlsdial.OutcomeOK, last.Outcome)
				assert.Equal(t, 1360, r.MSS)
				assert.Equal(t, 1400, r.MTU)
				assert.Equal(t, first.HelloSize, r.HelloSize, "the clamp alone fixed it: same hello size")
				assert.Greater(t, r.HelloSize, 1000, "the full post-quantum hello")
				assert.Equal(t, "pq", r.Rung)
				assert.False(t, r.SecurityReduced)
				assert.False(t, r.FromCache)
				assert.Equal(t, "h2", conn.ConnectionState().NegotiatedProtocol)
				assert.Equal(t, tls.X25519MLKEM768, conn.ConnectionState().CurveID)
				assert.Equal(t, 1348, mustMSS(t, conn.NetConn()), "the kernel clamp is in force")

				// The next dial starts from memory.
				c2, err := d.DialContext(context.Background(), "tcp", addr)
				require.NoError(t, err)
				defer c2.Close()
				r2 := c2.(*tlsdial.Conn).Report()
				assert.True(t, r2.FromCache)
				require.Len(t, r2.Attempts, 1, "%s", r2)
				assert.Equal(t, 1360, r2.MSS)
			})
		}
	}
}

func mustMSS(t *testing.T, c net.Conn) int {
	t.Helper()
	mss, err := pmtu.EffectiveMSS(c)
	require.NoError(t, err)
	return mss
}

func TestDialerHealthyPath(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, 0)
	cache := &pmtu.Cache{}
	d := &tlsdial.Dialer{Config: srv.config(), Cache: cache}
	c, err := d.DialContext(context.Background(), "tcp", srv.addr)
	require.NoError(t, err)
	defer c.Close()
	echo(t, c)
	r := c.(*tlsdial.Conn).Report()
	require.Len(t, r.Attempts, 1)
	assert.Zero(t, r.MSS)
	assert.Zero(t, cache.Len(), "a healthy path is not remembered")
}

func TestDialerZeroValue(t *testing.T) {
	// The zero Dialer verifies with the system roots: the test CA fails,
	// proving the config is used as crypto/tls would.
	srv := startServer(t, 0)
	_, err := (&tlsdial.Dialer{}).DialContext(context.Background(), "tcp", srv.addr)
	var uae x509.UnknownAuthorityError
	require.ErrorAs(t, err, &uae)
}

func TestDialerDoesNotRetryHardErrors(t *testing.T) {
	srv := startServer(t, 0)
	cases := []struct {
		name  string
		cfg   func(*tls.Config)
		check func(t *testing.T, err error)
	}{
		{"unknown authority", func(c *tls.Config) { c.RootCAs = x509.NewCertPool() }, func(t *testing.T, err error) {
			var e x509.UnknownAuthorityError
			assert.ErrorAs(t, err, &e)
		}},
		{"wrong hostname", func(c *tls.Config) { c.ServerName = "other.fitshake.test" }, func(t *testing.T, err error) {
			var e x509.HostnameError
			assert.ErrorAs(t, err, &e)
		}},
	}
	for _, path := range []string{"healthy", "black hole"} {
		for _, tc := range cases {
			t.Run(path+"/"+tc.name, func(t *testing.T) {
				checkLeaks(t)
				addr := srv.addr
				wantAttempts := 1
				if path == "black hole" {
					addr = blackHole(t, srv.addr, 1400, pmtutest.Both)
					wantAttempts = 2 // the first closed, the clamped one failed, then nothing
				}
				cfg := srv.config()
				tc.cfg(cfg)
				d := &tlsdial.Dialer{Config: cfg, Cache: &pmtu.Cache{}, AllowClassical: true}
				_, err := d.DialContext(context.Background(), "tcp", addr)
				require.Error(t, err)
				tc.check(t, err)
				var de *tlsdial.DialError
				require.ErrorAs(t, err, &de)
				require.Len(t, de.Report.Attempts, wantAttempts, "%s", de.Report)
				assert.Equal(t, tlsdial.OutcomeError, de.Report.Attempts[wantAttempts-1].Outcome)
			})
		}
	}
	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		ln.Close()
		_, err = (&tlsdial.Dialer{Cache: &pmtu.Cache{}}).DialContext(context.Background(), "tcp", addr)
		var de *tlsdial.DialError
		require.ErrorAs(t, err, &de)
		assert.Len(t, de.Report.Attempts, 1)
	})
}

func TestDialerCancelMidStall(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, 0)
	addr := blackHole(t, srv.addr, 1400, pmtutest.Both)
	d := &tlsdial.Dialer{Config: srv.config(), Cache: &pmtu.Cache{}, StallWindow: 10 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	t0 := time.Now()
	_, err := d.DialContext(ctx, "tcp", addr)
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(t0), 5*time.Second, "returned long before the stall window")
	var de *tlsdial.DialError
	require.ErrorAs(t, err, &de)
	require.Len(t, de.Report.Attempts, 1)
	assert.Equal(t, tlsdial.OutcomeCanceled, de.Report.Attempts[0].Outcome)
}

func TestDialerDeadlineBoundsLadder(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, 0)
	// MTU 500: every clamp down to 576 still sends 536-byte segments, so
	// every attempt stalls; the deadline must end the dial.
	addr := blackHole(t, srv.addr, 500, pmtutest.Both)
	d := &tlsdial.Dialer{Config: srv.config(), Cache: &pmtu.Cache{}, StallWindow: 300 * time.Millisecond, TimerOnly: true}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := d.DialContext(ctx, "tcp", addr)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	var de *tlsdial.DialError
	require.ErrorAs(t, err, &de)
	assert.True(t, de.Timeout())
	assert.LessOrEqual(t, len(de.Report.Attempts), 2)
}

func TestDialerLadderExhausted(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, 0)
	addr := blackHole(t, srv.addr, 500, pmtutest.Both)
	// TimerOnly: behind the simulator TCP_INFO only ever shows a silent
	// server, which never walks the ladder down by itself.
	d := &tlsdial.Dialer{Config: srv.config(), Cache: &pmtu.Cache{}, StallWindow: 150 * time.Millisecond, TimerOnly: true}
	_, err := d.DialContext(context.Background(), "tcp", addr)
	require.ErrorIs(t, err, tlsdial.ErrStalled)
	var de *tlsdial.DialError
	require.ErrorAs(t, err, &de)
	assert.True(t, de.Timeout())
	require.Len(t, de.Report.Attempts, 4, "%s", de.Report)
	var mss []int
	for _, a := range de.Report.Attempts {
		assert.Equal(t, tlsdial.OutcomeStall, a.Outcome)
		assert.Equal(t, "pq", a.Rung, "no weaker hello without AllowClassical")
		mss = append(mss, a.MSS)
	}
	assert.Equal(t, []int{0, 1360, 1240, 536}, mss)
}

func TestDialerConcurrentDiscoverOnce(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, 0)
	addr := blackHole(t, srv.addr, 1400, pmtutest.Both)
	d := &tlsdial.Dialer{Config: srv.config(), Cache: &pmtu.Cache{}}
	const n = 8
	var wg sync.WaitGroup
	reports := make([]tlsdial.Report, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := d.DialContext(context.Background(), "tcp", addr)
			errs[i] = err
			if err == nil {
				reports[i] = c.(*tlsdial.Conn).Report()
				c.Close()
			}
		}()
	}
	wg.Wait()
	attempts, fromCache := 0, 0
	for i := range n {
		require.NoError(t, errs[i])
		attempts += len(reports[i].Attempts)
		if reports[i].FromCache {
			fromCache++
		}
		assert.Equal(t, 1360, reports[i].MSS)
	}
	assert.Equal(t, n+1, attempts, "one dial discovers (two attempts), the others wait for it and start from memory")
	assert.Equal(t, n-1, fromCache)
}

func TestDialerNeverMutatesConfig(t *testing.T) {
	srv := startServer(t, 0)
	addr := blackHole(t, srv.addr, 1400, pmtutest.Both)
	cfg := &tls.Config{RootCAs: srv.ca.Pool, NextProtos: []string{"h2"}}
	d := &tlsdial.Dialer{Config: cfg, Cache: &pmtu.Cache{}}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// No ServerName: taken from addr's host (an IP, in the certificate).
			c, err := d.DialContext(context.Background(), "tcp", addr)
			if assert.NoError(t, err) {
				c.Close()
			}
		}()
	}
	wg.Wait()
	assert.Empty(t, cfg.ServerName)
	assert.Equal(t, []string{"h2"}, cfg.NextProtos)
	assert.Nil(t, cfg.CurvePreferences)
	assert.Zero(t, cfg.MinVersion)
}

func TestDialerAllowClassical(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, 0)
	// A middlebox that drops any ClientHello over 1000 bytes, however it is
	// segmented, is beyond what a clamp fixes: only a smaller hello passes.
	addr := helloLimit(t, srv.addr, 1000)
	d := &tlsdial.Dialer{Config: srv.config(), Cache: &pmtu.Cache{}, StallWindow: 150 * time.Millisecond, TimerOnly: true}
	_, err := d.DialContext(context.Background(), "tcp", addr)
	require.ErrorIs(t, err, tlsdial.ErrStalled, "without opt-in the post-quantum share is never dropped")

	d.AllowClassical = true
	c, err := d.DialContext(context.Background(), "tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	r := c.(*tlsdial.Conn).Report()
	assert.True(t, r.SecurityReduced, "%s", r)
	assert.Equal(t, "classical", r.Rung)
	assert.Less(t, r.HelloSize, 1000)
	assert.Equal(t, 5, len(r.Attempts))
	echo(t, c)
}

// helloLimit proxies to target but swallows a client's first flight when it
// is larger than limit bytes, as a broken middlebox might.
func helloLimit(t *testing.T, target string, limit int) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	track := func(c net.Conn) { mu.Lock(); open = append(open, c); mu.Unlock() }
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				hdr := make([]byte, 5)
				if _, err := io.ReadFull(c, hdr); err != nil {
					return
				}
				recLen := int(hdr[3])<<8 | int(hdr[4])
				if 5+recLen > limit {
					c.SetReadDeadline(time.Time{})
					copyConn(io.Discard, c) // silent
					return
				}
				rec := make([]byte, recLen)
				if _, err := io.ReadFull(c, rec); err != nil {
					return
				}
				s, err := net.Dial("tcp4", target)
				if err != nil {
					return
				}
				track(s)
				defer s.Close()
				c.SetReadDeadline(time.Time{})
				s.Write(append(hdr, rec...))
				wg.Add(1)
				go func() { defer wg.Done(); copyConn(c, s); c.Close() }()
				copyConn(s, c)
				s.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func TestDialerBadInput(t *testing.T) {
	_, err := (&tlsdial.Dialer{}).DialContext(context.Background(), "udp", "127.0.0.1:443")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unsupported network")
	_, err = (&tlsdial.Dialer{}).DialContext(context.Background(), "tcp", ":443")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ServerName")
}

// copyConn copies by hand: io.Copy between TCP conns splices through
// pooled pipes that outlive the test and look like leaked descriptors.
func copyConn(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// A server that takes 0.3–2 s to answer must never cost a weaker hello,
// and a dial may open at most one extra connection for it.
func TestSlowServerNeverDowngrades(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, 0)
	const n = 20
	type result struct {
		r   tlsdial.Report
		err error
	}
	results := make(chan result, 2*n)
	for i := range n {
		delay := 300*time.Millisecond + time.Duration(i)*1700*time.Millisecond/(n-1)
		p, err := pmtutest.Start(pmtutest.Config{Target: srv.addr, MTU: 9000, Delay: delay})
		if err != nil {
			t.Skipf("simulator unavailable: %v", err)
		}
		t.Cleanup(func() { p.Close() })
		go func() {
			d := &tlsdial.Dialer{Config: srv.config(), Cache: &pmtu.Cache{}, AllowClassical: true}
			c, err := d.DialContext(context.Background(), "tcp", p.Addr())
			if err != nil {
				results <- result{err: err}
				return
			}
			results <- result{r: c.(*tlsdial.Conn).Report()}
			c.Close()
		}()
		go func() {
			td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}
			raw, err := td.DialContext(context.Background(), "tcp", p.Addr())
			if err != nil {
				results <- result{err: err}
				return
			}
			defer raw.Close()
			tc := tls.Client(raw, srv.config())
			tc.SetDeadline(time.Now().Add(10 * time.Second))
			err = tc.Handshake()
			results <- result{r: raw.(*tlsdial.TCPConn).Report(), err: err}
		}()
	}
	for range 2 * n {
		res := <-results
		require.NoError(t, res.err)
		r := res.r
		assert.False(t, r.SecurityReduced, "%s", r)
		assert.NotEqual(t, "classical", r.Rung)
		assert.LessOrEqual(t, len(r.Attempts), 2, "at most one extra connection: %s", r)
		assert.Zero(t, r.Stalls(), "a slow server is not a black hole: %s", r)
	}
}
