package fitshakeotel_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/leaktest"
	"github.com/fitshake/fitshake/internal/testcert"
	fitshakeotel "github.com/fitshake/fitshake/otel"
	"github.com/fitshake/fitshake/tlswatch"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// newServerTrace returns a server Trace recording into a meter provider of
// its own, and the reader that collects it.
func newServerTrace(t *testing.T, opts ...fitshakeotel.Option) (*tlswatch.Trace, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	tr, err := fitshakeotel.NewServerTrace(append([]fitshakeotel.Option{fitshakeotel.WithMeterProvider(mp)}, opts...)...)
	require.NoError(t, err)
	return tr, reader
}

// seen is a user's own Trace: it keeps what the watcher told it, and
// signals each verdict.
type seen struct {
	mu       sync.Mutex
	verdicts []tlswatch.HandshakeInfo
	prefixes []tlswatch.PrefixInfo
	ch       chan struct{}
}

func (s *seen) trace() *tlswatch.Trace {
	return &tlswatch.Trace{
		Handshake: func(h tlswatch.HandshakeInfo) {
			s.mu.Lock()
			s.verdicts = append(s.verdicts, h)
			s.mu.Unlock()
			s.ch <- struct{}{}
		},
		Prefix: func(p tlswatch.PrefixInfo) {
			s.mu.Lock()
			s.prefixes = append(s.prefixes, p)
			s.mu.Unlock()
		},
	}
}

// wait waits for the next verdict and returns it.
func (s *seen) wait(t *testing.T) tlswatch.HandshakeInfo {
	t.Helper()
	select {
	case <-s.ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no verdict")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.verdicts[len(s.verdicts)-1]
}

func (s *seen) prefixInfos() []tlswatch.PrefixInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]tlswatch.PrefixInfo(nil), s.prefixes...)
}

// A real Watcher over loopback, its Trace the metrics one beside a user's
// own (MultiTrace): a completed handshake, an idle connection, a client
// that is not TLS, and three hellos that stop halfway, judged after
// StallAfter with their connections open. The failures make 127.0.0.0/24
// failing; once they leave the window it recovers.
func TestServerTraceWatcher(t *testing.T) {
	leaktest.Check(t)
	srvCfg, cliCfg, err := testcert.Configs([]string{"watch.test"}, 0)
	require.NoError(t, err)
	ln := testcert.Listen(t)
	addr := ln.Addr().String()
	metrics, reader := newServerTrace(t, fitshakeotel.WithServerAddr(addr))
	mine := &seen{ch: make(chan struct{}, 16)}
	const window = 2 * time.Second // far more than the verdicts take, even under -race on a busy machine
	w := &tlswatch.Watcher{
		StallAfter: 50 * time.Millisecond, Window: window,
		Trace:  tlswatch.MultiTrace(metrics, mine.trace()), // mine signals after the metrics recorded
		Logger: slog.New(slog.DiscardHandler),
	}
	testcert.Serve(t, tls.NewListener(w.Wrap(ln), srvCfg), func(c net.Conn, _ func(net.Conn)) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if c.(*tls.Conn).Handshake() == nil {
			c.Write([]byte("ok"))
		}
	})
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}

	tc, err := tls.Dial("tcp", addr, cliCfg)
	require.NoError(t, err)
	io.ReadAll(tc)
	tc.Close()
	healthy := mine.wait(t)
	require.Equal(t, tlswatch.Healthy, healthy.Class)

	dial().Close()
	require.Equal(t, tlswatch.Idle, mine.wait(t).Class)

	io.WriteString(dial(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	notTLS := mine.wait(t)
	require.Equal(t, tlswatch.TLSError, notTLS.Class)

	var stalled float64
	for range 3 {
		// A handshake record of 512 bytes, 7 of them sent.
		dial().Write([]byte{0x16, 3, 1, 2, 0, 1, 0})
		h := mine.wait(t)
		require.Equal(t, tlswatch.HelloPartial, h.Class, "%s", h.Evidence.Sentence(h.Class))
		require.Equal(t, tlswatch.EndNone, h.Evidence.End, "judged while open")
		stalled += h.Evidence.Elapsed.Seconds()
	}

	srv := "server.address=127.0.0.1,server.port=" + portOf(t, addr)
	c := collect(t, reader)
	assert.Equal(t, map[string]int64{
		"fitshake.handshake.class=healthy," + srv + ",tls.established=true":                                 1,
		"fitshake.handshake.class=idle," + srv + ",tls.established=false":                                   1,
		"error.type=tls-error,fitshake.handshake.class=tls-error," + srv + ",tls.established=false":         1,
		"error.type=hello-partial,fitshake.handshake.class=hello-partial," + srv + ",tls.established=false": 3,
	}, c.counts(t, "fitshake.server.handshakes"))
	dur := c.histograms(t, "fitshake.server.handshake.duration")
	assert.Len(t, dur, 3, "idle connections are not timed: %v", dur)
	ok := dur[srv+",tls.established=true"]
	assert.Equal(t, uint64(1), ok.Count)
	assert.InDelta(t, healthy.Duration.Seconds(), ok.Sum, 1e-9, "HandshakeInfo.Duration")
	partial := dur["error.type=hello-partial,"+srv+",tls.established=false"]
	assert.Equal(t, uint64(3), partial.Count)
	assert.InDelta(t, stalled, partial.Sum, 1e-9, "the Evidence's Elapsed")
	assert.InDelta(t, notTLS.Evidence.Elapsed.Seconds(), dur["error.type=tls-error,"+srv+",tls.established=false"].Sum, 1e-9)
	assert.Nil(t, c.counts(t, "fitshake.server.recovered_handshakes"))
	assert.Nil(t, c.gauges(t, "fitshake.server.clamped_prefixes"), "no self-fix")

	// The prefix failed at its third failure (FailingAfter), with 1 of 4
	// tries completed; the Prefix hook runs after that verdict's Handshake.
	require.Eventually(t, func() bool { return len(mine.prefixInfos()) == 1 }, 5*time.Second, time.Millisecond)
	pi := mine.prefixInfos()
	assert.True(t, pi[0].Failing)
	assert.Equal(t, netip.MustParsePrefix("127.0.0.0/24"), pi[0].Prefix)
	assert.Equal(t, map[string]int64{srv: 1}, collect(t, reader).gauges(t, "fitshake.server.failing_prefixes"))

	// Once the failures leave the window, Status (the status page's
	// read) notices the recovery and the Trace counts it down.
	require.Eventually(t, func() bool {
		w.Status()
		return len(mine.prefixInfos()) == 2
	}, 10*window, window/10)
	assert.False(t, mine.prefixInfos()[1].Failing)
	assert.Equal(t, map[string]int64{srv: 0}, collect(t, reader).gauges(t, "fitshake.server.failing_prefixes"))
}

func portOf(t *testing.T, addr string) string {
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	return port
}

// The self-fix's changes: the clamped set's size as a gauge with the
// clamp, each change counted, a failed one with its error.type.
func TestServerTraceClamp(t *testing.T) {
	trace, reader := newServerTrace(t, fitshakeotel.WithServerAddr(":8443"))
	two := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("fd00:198:18::/48")}
	trace.Clamp(tlswatch.ClampInfo{Prefixes: two, MSS: 1220})
	c := collect(t, reader)
	assert.Equal(t, map[string]int64{"fitshake.mss=1220,server.port=8443": 2}, c.gauges(t, "fitshake.server.clamped_prefixes"))
	assert.Equal(t, map[string]int64{"server.port=8443": 1}, c.counts(t, "fitshake.server.clamp.changes"))

	trace.Clamp(tlswatch.ClampInfo{Prefixes: two[:1], MSS: 1220, Err: fmt.Errorf("steer: %w", tlswatch.ErrSelfFixUnsupported)})
	trace.Clamp(tlswatch.ClampInfo{Prefixes: nil, MSS: 1220, Err: fmt.Errorf("setsockopt: operation not permitted")})
	c = collect(t, reader)
	assert.Equal(t, map[string]int64{"fitshake.mss=1220,server.port=8443": 0}, c.gauges(t, "fitshake.server.clamped_prefixes"))
	assert.Equal(t, map[string]int64{
		"server.port=8443":                        1,
		"error.type=unsupported,server.port=8443": 1,
		"error.type=_OTHER,server.port=8443":      1,
	}, c.counts(t, "fitshake.server.clamp.changes"))
}

// With Listen's ladder each prefix has its own clamp (ClampInfo.Clamps):
// a series per clamp, and one no prefix has any more goes to 0.
func TestServerTraceClampLadder(t *testing.T) {
	trace, reader := newServerTrace(t)
	v4, v6 := netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("fd00:198:18::/48")
	trace.Clamp(tlswatch.ClampInfo{Prefixes: []netip.Prefix{v4, v6}, MSS: 1220,
		Clamps: map[netip.Prefix]int{v4: 1360, v6: 1340}})
	assert.Equal(t, map[string]int64{"fitshake.mss=1360": 1, "fitshake.mss=1340": 1},
		collect(t, reader).gauges(t, "fitshake.server.clamped_prefixes"))

	// The IPv6 prefix steps down the ladder; the IPv4 one expires.
	trace.Clamp(tlswatch.ClampInfo{Prefixes: []netip.Prefix{v6}, MSS: 1220, Clamps: map[netip.Prefix]int{v6: 1220}})
	assert.Equal(t, map[string]int64{"fitshake.mss=1360": 0, "fitshake.mss=1340": 0, "fitshake.mss=1220": 1},
		collect(t, reader).gauges(t, "fitshake.server.clamped_prefixes"))
}

// server.address and server.port come from WithServerAddr: a name or an
// address of the listener's own, never an unspecified one; none without
// it; WithoutServerAddress keeps the port alone. A recovered client is
// counted apart; a class tlswatch may add later is recorded as it comes.
func TestServerTraceAttributes(t *testing.T) {
	for _, tc := range []struct {
		addr string
		opts []fitshakeotel.Option
		want string
	}{
		{"", nil, ""},
		{"example.com:443", nil, "server.address=example.com,server.port=443"},
		{"198.18.1.2:8443", nil, "server.address=198.18.1.2,server.port=8443"},
		{"[fd00:198:18:1::2]:8443", nil, "server.address=fd00:198:18:1::2,server.port=8443"},
		{":8443", nil, "server.port=8443"},
		{"0.0.0.0:8443", nil, "server.port=8443"},
		{"[::]:8443", nil, "server.port=8443"},
		{"127.0.0.1:0", nil, "server.address=127.0.0.1"},
		{"example.com:443", []fitshakeotel.Option{fitshakeotel.WithoutServerAddress()}, "server.port=443"},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			trace, reader := newServerTrace(t, append(tc.opts, fitshakeotel.WithServerAddr(tc.addr))...)
			trace.Handshake(tlswatch.HandshakeInfo{Class: tlswatch.Healthy, Recovered: true, Duration: 3 * time.Millisecond})
			trace.Handshake(tlswatch.HandshakeInfo{Class: "blackhole-sideways", Evidence: tlswatch.Evidence{Elapsed: time.Second}})
			trace.Prefix(tlswatch.PrefixInfo{Failing: true})
			srv := tc.want
			if srv != "" {
				srv += ","
			}
			c := collect(t, reader)
			assert.Equal(t, map[string]int64{
				"fitshake.handshake.class=healthy," + srv + "tls.established=true":                                           1,
				"error.type=blackhole-sideways,fitshake.handshake.class=blackhole-sideways," + srv + "tls.established=false": 1,
			}, c.counts(t, "fitshake.server.handshakes"))
			assert.Equal(t, map[string]int64{tc.want: 1}, c.counts(t, "fitshake.server.recovered_handshakes"))
			assert.Equal(t, map[string]int64{tc.want: 1}, c.gauges(t, "fitshake.server.failing_prefixes"))
			d := c.histograms(t, "fitshake.server.handshake.duration")
			assert.InDelta(t, 0.003, d[srv+"tls.established=true"].Sum, 1e-12)
			assert.InDelta(t, 1.0, d["error.type=blackhole-sideways,"+srv+"tls.established=false"].Sum, 1e-12)
		})
	}
}

// MultiTrace sets only the hooks some Trace has, and calls them in order.
func TestServerTraceMultiTrace(t *testing.T) {
	assert.Nil(t, tlswatch.MultiTrace(nil, nil))
	var order []string
	a := &tlswatch.Trace{Handshake: func(tlswatch.HandshakeInfo) { order = append(order, "a") }}
	b := &tlswatch.Trace{Handshake: func(tlswatch.HandshakeInfo) { order = append(order, "b") },
		Clamp: func(tlswatch.ClampInfo) { order = append(order, "b clamp") }}
	m := tlswatch.MultiTrace(a, nil, b)
	assert.Nil(t, m.Prefix)
	m.Handshake(tlswatch.HandshakeInfo{})
	m.Clamp(tlswatch.ClampInfo{})
	assert.Equal(t, []string{"a", "b", "b clamp"}, order)
}
