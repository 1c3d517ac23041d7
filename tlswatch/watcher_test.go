package tlswatch

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/testcert"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serve runs a TLS server on a watched loopback listener until the test
// ends; every connection is handshaken, then gets "ok" and is closed.
func serve(t testing.TB, w *Watcher, cfg *tls.Config) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	testcert.Serve(t, tls.NewListener(w.Wrap(ln), cfg), func(c net.Conn, _ func(net.Conn)) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if c.(*tls.Conn).Handshake() == nil {
			c.Write([]byte("ok"))
		}
	})
	return ln.Addr().String()
}

// verdicts collects the Handshake hook's calls.
type verdicts struct {
	mu  sync.Mutex
	got []HandshakeInfo
	ch  chan struct{}
}

func newVerdicts() *verdicts { return &verdicts{ch: make(chan struct{}, 1000)} }

func (v *verdicts) hook(h HandshakeInfo) {
	v.mu.Lock()
	v.got = append(v.got, h)
	v.mu.Unlock()
	v.ch <- struct{}{}
}

func (v *verdicts) wait(t testing.TB, n int) []HandshakeInfo {
	t.Helper()
	for range n {
		select {
		case <-v.ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d verdicts", len(v.got))
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]HandshakeInfo(nil), v.got...)
}

// TestWatchLoopback drives real handshakes and failures through a watched
// tls.NewListener: each connection gets exactly one verdict, the right one.
func TestWatchLoopback(t *testing.T) {
	srvCfg, cliCfg, err := testcert.Configs([]string{"watch.test"}, 0)
	require.NoError(t, err)
	srvCfg.CurvePreferences = []tls.CurveID{tls.CurveP256} // a hello with an X25519 share gets a HelloRetryRequest
	v := newVerdicts()
	w := &Watcher{Trace: &Trace{Handshake: v.hook}, Logger: slog.New(slog.DiscardHandler)}
	addr := serve(t, w, srvCfg)

	hs := func(cfg *tls.Config) error {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = io.ReadAll(c)
		return err
	}
	tls12 := cliCfg.Clone()
	tls12.MaxVersion = tls.VersionTLS12
	hrr := cliCfg.Clone()
	hrr.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
	untrusting := cliCfg.Clone()
	untrusting.RootCAs = nil

	for _, tc := range []struct {
		name string
		run  func() error
		want Class
	}{
		{"TLS 1.3", func() error { return hs(cliCfg) }, Healthy},
		{"TLS 1.2", func() error { return hs(tls12) }, Healthy},
		{"HelloRetryRequest", func() error { return hs(hrr) }, Healthy},
		{"certificate refused", func() error { return hs(untrusting) }, TLSError},
		{"not TLS", func() error {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return err
			}
			defer c.Close()
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			io.ReadAll(c)
			return nil
		}, TLSError},
		{"idle", func() error {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return err
			}
			return c.Close()
		}, Idle},
		{"hello partial, then closed", func() error {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return err
			}
			c.Write([]byte{recHandshake, 3, 1, 2, 0, 1, 0})
			time.Sleep(20 * time.Millisecond)
			return c.Close()
		}, Reset},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if tc.want == Healthy {
				require.NoError(t, err)
			}
			got := v.wait(t, 1)
			h := got[len(got)-1]
			assert.Equal(t, tc.want, h.Class, "%s", h.Evidence.Sentence(h.Class))
			assert.Equal(t, netip.MustParsePrefix("127.0.0.0/24"), h.Prefix)
			if tc.want == Healthy {
				assert.Positive(t, h.Duration)
				assert.Equal(t, StageDone, h.Evidence.Stage)
				if runtime.GOOS == "linux" {
					assert.True(t, h.Evidence.TCPInfo)
					assert.Positive(t, h.Evidence.SYNMSS)
				}
			}
		})
	}
	assert.Equal(t, 0, w.Pending(), "nothing left to poll")
	st := w.Status()
	require.Len(t, st.Prefixes, 1)
	assert.Equal(t, 7, st.Prefixes[0].Handshakes)
	assert.Equal(t, 3, st.Prefixes[0].Completed)
	assert.Equal(t, 3, st.Prefixes[0].Failed)
	assert.Equal(t, 1, st.Prefixes[0].Idle)
}

// TestStallAfter: a hello that never comes is judged StallAfter after
// accept, its connection left open; the TLS stack's later end of it is not
// counted again.
func TestStallAfter(t *testing.T) {
	srvCfg, _, err := testcert.Configs([]string{"watch.test"}, 0)
	require.NoError(t, err)
	v := newVerdicts()
	w := &Watcher{StallAfter: 50 * time.Millisecond, Trace: &Trace{Handshake: v.hook}, Logger: slog.New(slog.DiscardHandler)}
	addr := serve(t, w, srvCfg)
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	t0 := time.Now()
	got := v.wait(t, 1)
	assert.GreaterOrEqual(t, time.Since(t0), 40*time.Millisecond)
	assert.Equal(t, Idle, got[0].Class)
	assert.Equal(t, EndNone, got[0].Evidence.End, "judged while open")
	c.Close()
	select {
	case <-v.ch:
		t.Fatal("judged twice")
	case <-time.After(100 * time.Millisecond):
	}
	assert.Equal(t, 0, w.Pending())
}

// TestNoLeaks: after many watched connections, their goroutines and file
// descriptors are gone and the watcher polls nothing.
func TestNoLeaks(t *testing.T) {
	srvCfg, cliCfg, err := testcert.Configs([]string{"watch.test"}, 0)
	require.NoError(t, err)
	g0, fd0 := runtime.NumGoroutine(), fds(t)
	sub := t.Run("connections", func(t *testing.T) {
		w := &Watcher{Logger: slog.New(slog.DiscardHandler)}
		addr := serve(t, w, srvCfg)
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i%5 == 0 { // idle ones too
					if c, err := net.Dial("tcp", addr); err == nil {
						c.Close()
					}
					return
				}
				c, err := tls.Dial("tcp", addr, cliCfg)
				if assert.NoError(t, err) {
					io.ReadAll(c)
					c.Close()
				}
			}()
		}
		wg.Wait()
		require.Eventually(t, func() bool { return w.Pending() == 0 }, 5*time.Second, 10*time.Millisecond)
	})
	require.True(t, sub)
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= g0+1 }, 5*time.Second, 10*time.Millisecond,
		"goroutines: %d before, %d after", g0, runtime.NumGoroutine())
	if fd0 >= 0 {
		require.Eventually(t, func() bool { return fds(t) <= fd0 }, 5*time.Second, 10*time.Millisecond,
			"file descriptors: %d before, %d after", fd0, fds(t))
	}
}

// fds counts the process's open file descriptors; -1 where unknown.
func fds(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func tcpAddr(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

var (
	upstreamObs = observation{stage: StageNothing, infoOK: true, info: pmtuInfo(1448, 0, 1)}
	healthyObs  = observation{stage: StageDone, read: 600, helloLen: 517, wrote: 1900, infoOK: true, info: pmtuInfo(1448, 1901, 0)}
	clampedObs  = observation{stage: StageDone, read: 600, helloLen: 517, wrote: 1900, infoOK: true, info: pmtuInfo(1348, 1901, 0)}
)

// TestPrefixLogAndTrace: a prefix starts failing after FailingAfter
// failures (one slog line, one Trace.Prefix call, with no lock held: the
// hook reads Status), recovers when its failures leave the window, and a
// client that comes back with a smaller MSS counts as recovered.
func TestPrefixLogAndTrace(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	var logs bytes.Buffer
	var changes []PrefixInfo
	w := &Watcher{Window: time.Minute, now: clk.Now, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	w.Trace = &Trace{Prefix: func(p PrefixInfo) {
		w.Status() // deadlocks if a lock were held
		changes = append(changes, p)
	}}
	w.init()
	for i := range 3 {
		w.record(tcpAddr("192.0.2.7:1000"), upstreamObs)
		assert.Len(t, changes, i/2, "failing from the third failure")
		clk.Add(time.Second)
	}
	require.Len(t, changes, 1)
	assert.True(t, changes[0].Failing)
	assert.Equal(t, BlackHoleUpstream, changes[0].Class)
	assert.Equal(t, netip.MustParsePrefix("192.0.2.0/24"), changes[0].Prefix)
	assert.Contains(t, logs.String(), `msg="tlswatch: prefix failing" prefix=192.0.2.0/24 class=blackhole-upstream handshakes=3 completed=0 failed=3`)

	w.record(tcpAddr("192.0.2.7:1001"), clampedObs) // the same client, MSS 1360 now
	st := w.Status()
	require.Len(t, st.Prefixes, 1)
	ps := st.Prefixes[0]
	assert.Equal(t, 1, ps.Recovered)
	assert.Equal(t, 1360, ps.RecoveredMSS)
	assert.Contains(t, strings.Join(ps.Fixes, "\n"), "maxseg size set 1360", "the clamp that worked")
	assert.Contains(t, strings.Join(ps.Fixes, "\n"), "ip route add 192.0.2.0/24 via <gateway> advmss 1360")

	clk.Add(time.Minute) // the failures leave the window
	w.record(tcpAddr("192.0.2.8:1000"), healthyObs)
	require.Len(t, changes, 2)
	assert.False(t, changes[1].Failing)
	assert.Contains(t, logs.String(), `msg="tlswatch: prefix recovered" prefix=192.0.2.0/24`)
	assert.Equal(t, Healthy, w.Status().Prefixes[0].Class)
}

// A failing prefix forgotten to make room for a new one (its window
// empty, and no Status call to notice it) is reported recovered first, so
// that a count of failing prefixes kept from the Prefix hook comes back
// down.
func TestEvictedFailingPrefixRecovers(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	failing := 0
	w := &Watcher{Window: time.Minute, MaxPrefixes: 1, now: clk.Now, Logger: slog.New(slog.DiscardHandler),
		Trace: &Trace{Prefix: func(p PrefixInfo) {
			failing += map[bool]int{true: 1, false: -1}[p.Failing]
		}}}
	w.init()
	for range 3 {
		w.record(tcpAddr("192.0.2.7:1000"), upstreamObs)
	}
	require.Equal(t, 1, failing)
	clk.Add(2 * time.Minute)
	w.record(tcpAddr("198.51.100.7:1000"), healthyObs) // takes the one place
	assert.Equal(t, 0, failing)
	st := w.Status()
	require.Len(t, st.Prefixes, 1)
	assert.Equal(t, "198.51.100.0/24", st.Prefixes[0].Prefix)
}

// TestStatusJSON checks the JSON contract of the status page.
func TestStatusJSON(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	w := &Watcher{now: clk.Now, Logger: slog.New(slog.DiscardHandler), Clamp: &clampLog{}, Policy: Policy{After: 2}}
	w.init()
	for range 3 {
		w.record(tcpAddr("[2001:db8:1:2::7]:1000"), upstreamObs)
	}
	w.record(tcpAddr("198.51.100.9:1000"), healthyObs)

	for _, url := range []string{"/status.json", "/?format=json"} {
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, httptest.NewRequest("GET", url, nil))
		assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
		var got struct {
			Prefixes []map[string]json.RawMessage `json:"prefixes"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got), rec.Body.String())
		require.Len(t, got.Prefixes, 2)
		for _, p := range got.Prefixes {
			for _, k := range []string{"prefix", "handshakes", "completed", "failed", "class", "clamped", "mss", "fixes"} {
				assert.Contains(t, p, k)
			}
		}
		first := got.Prefixes[0] // most failures first
		assert.JSONEq(t, `"2001:db8:1::/48"`, string(first["prefix"]))
		assert.JSONEq(t, `3`, string(first["failed"]))
		assert.JSONEq(t, `"blackhole-upstream"`, string(first["class"]))
		assert.JSONEq(t, `true`, string(first["clamped"]))
		assert.JSONEq(t, `1340`, string(first["mss"]), "the ladder's first rung, 1400, on IPv6")
		assert.JSONEq(t, `"healthy"`, string(got.Prefixes[1]["class"]))
		assert.JSONEq(t, `[]`, string(got.Prefixes[1]["fixes"]))
	}

	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	html := rec.Body.String()
	assert.Contains(t, rec.Header().Get("Content-Type"), "text/html")
	assert.Contains(t, html, "<code>2001:db8:1::/48</code>")
	assert.Contains(t, html, "0.0%")
	assert.Contains(t, html, "ip6tables -t mangle")
	assert.NotContains(t, html, "<script")
	assert.NotContains(t, html, "http://", "no external assets")
}

// clampLog is a Clamper that keeps every set it is told.
type clampLog struct {
	mu   sync.Mutex
	sets [][]netip.Prefix
	err  error
}

func (c *clampLog) SetClamped(p []netip.Prefix) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sets = append(c.sets, p)
	return c.err
}

func (c *clampLog) last() []netip.Prefix {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sets) == 0 {
		return nil
	}
	return c.sets[len(c.sets)-1]
}

// TestClamp: the watcher tells its Clamp when a prefix is clamped (After
// black-hole failures) and when the clamp expires, by its own timer.
func TestClamp(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	cl := &clampLog{}
	var (
		mu    sync.Mutex
		infos []ClampInfo
	)
	clampInfos := func() []ClampInfo {
		mu.Lock()
		defer mu.Unlock()
		return append([]ClampInfo(nil), infos...)
	}
	w := &Watcher{now: clk.Now, Logger: slog.New(slog.DiscardHandler), Clamp: cl,
		Policy: Policy{After: 2, TTL: 30 * time.Millisecond},
		Trace: &Trace{Clamp: func(ci ClampInfo) {
			mu.Lock()
			infos = append(infos, ci)
			mu.Unlock()
		}}}
	w.init()
	w.record(tcpAddr("192.0.2.7:1"), upstreamObs)
	w.record(tcpAddr("198.51.100.7:1"), upstreamObs) // another prefix
	assert.Empty(t, cl.sets, "one failure each is no evidence")
	w.record(tcpAddr("192.0.2.9:1"), upstreamObs)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, cl.last())
	assert.Equal(t, w.Clamped(), cl.last())
	require.Len(t, clampInfos(), 1)
	assert.Equal(t, 1220, clampInfos()[0].MSS)

	clk.Add(30 * time.Millisecond) // the TTL passes; the timer (real time) fires
	require.Eventually(t, func() bool { return len(w.Clamped()) == 0 && len(cl.last()) == 0 }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return len(clampInfos()) == 2 }, 5*time.Second, 5*time.Millisecond)
	assert.Len(t, cl.sets, 2)

	cl.err = errors.New("no")
	w.record(tcpAddr("192.0.2.7:1"), upstreamObs)
	w.record(tcpAddr("192.0.2.7:1"), upstreamObs)
	require.Len(t, clampInfos(), 3)
	assert.EqualError(t, clampInfos()[2].Err, "no")
}

// TestBoundedMemory: 100 000 distinct client addresses, each in its own
// /24, cost the table at most MaxPrefixes entries; the rest are counted
// together.
func TestBoundedMemory(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	w := &Watcher{now: clk.Now, Logger: slog.New(slog.DiscardHandler), Clamp: &clampLog{}}
	w.init()
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	const n = 100_000
	for i := range n {
		a := netip.AddrFrom4([4]byte{byte(1 + i>>16), byte(i >> 8), byte(i), 7})
		o := healthyObs
		if i%3 == 0 {
			o = upstreamObs
		}
		w.record(net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 443)), o)
		if i%1000 == 0 {
			clk.Add(time.Millisecond)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	w.mu.Lock()
	tracked := len(w.stats.m)
	evidence := len(w.clamps.evidence)
	w.mu.Unlock()
	assert.Equal(t, 1024, tracked)
	assert.LessOrEqual(t, evidence, 1024)
	st := w.Status()
	assert.Len(t, st.Prefixes, 1024)
	assert.Equal(t, n-1024, st.Other.Handshakes)
	grown := int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
	t.Logf("heap grew %d KB for %d addresses", grown/1024, n)
	assert.Less(t, grown, int64(4<<20), "a few KB per tracked prefix at most")
}

// TestPolicyOracle checks the clamp policy, with fake time, against an
// oracle that recomputes from the whole history each time: a prefix is
// clamped from the moment After black-hole failures fall within Window
// (counting only those since its last clamp ended) until TTL later.
func TestPolicyOracle(t *testing.T) {
	type ev struct {
		at  time.Time
		pfx netip.Prefix
		c   Class
	}
	pfxs := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::/48")}
	cls := []Class{BlackHoleUpstream, BlackHoleDownstream, Healthy, Reset, Idle}
	oracle := func(p Policy, hist []ev, pfx netip.Prefix, now time.Time) bool {
		var start, until time.Time // the latest clamp
		var since time.Time        // evidence counts from here
		for i, e := range hist {
			if e.at.After(now) {
				break
			}
			if !until.IsZero() && !e.at.Before(until) {
				since, start, until = until, time.Time{}, time.Time{}
			}
			if e.pfx != pfx || !e.c.BlackHoleClass() || !until.IsZero() {
				continue
			}
			n := 0
			for _, f := range hist[:i+1] {
				if f.pfx == pfx && f.c.BlackHoleClass() && f.at.After(e.at.Add(-p.window())) && !f.at.Before(since) {
					n++
				}
			}
			if n >= p.after() {
				start, until = e.at, e.at.Add(p.ttl())
			}
		}
		return !until.IsZero() && now.Before(until) && !start.After(now)
	}
	rng := newRand(1)
	for round := range 100 {
		p := Policy{After: 1 + rng.intn(4), Window: time.Duration(1+rng.intn(60)) * time.Second, TTL: time.Duration(1+rng.intn(120)) * time.Second}
		var s clamps
		s.p = p
		now := time.Unix(1e9, 0)
		var hist []ev
		for range 200 {
			now = now.Add(time.Duration(rng.intn(5000)) * time.Millisecond)
			e := ev{now, pfxs[rng.intn(len(pfxs))], cls[rng.intn(len(cls))]}
			hist = append(hist, e)
			before := s.clamped()
			changed := s.observe(e.pfx, e.c, 0, now)
			after := s.clamped()
			if !changed { // a clamp that expires and starts again at once changes nothing seen
				require.True(t, equalPrefixes(before, after), "round %d: changed unreported", round)
			}
			for _, q := range pfxs {
				require.Equal(t, oracle(p, hist, q, now), s.isClamped(q), "round %d, %v at %v, policy %+v", round, q, now.Sub(time.Unix(1e9, 0)), p)
			}
		}
	}
}

func equalPrefixes(a, b []netip.Prefix) bool {
	sort.Slice(a, func(i, j int) bool { return comparePrefix(a[i], a[j]) < 0 })
	sort.Slice(b, func(i, j int) bool { return comparePrefix(b[i], b[j]) < 0 })
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// rand is a small deterministic generator (xorshift), so that a failing
// round can be replayed.
type rand struct{ s uint64 }

func newRand(seed uint64) *rand { return &rand{s: seed*2654435761 + 1} }

func (r *rand) intn(n int) int {
	r.s ^= r.s << 13
	r.s ^= r.s >> 7
	r.s ^= r.s << 17
	return int(r.s % uint64(n))
}
