package fitshakeotel

import (
	"cmp"
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"

	"github.com/fitshake/fitshake/tlswatch"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
)

// HandshakeClassKey is the attribute of the server instruments that holds
// a tlswatch.Class: "healthy", "blackhole-upstream", … (see the package
// documentation).
const HandshakeClassKey = attribute.Key("fitshake.handshake.class")

// serverClasses are the classes whose attribute sets are made once, in
// NewServerTrace; a class not among them (none today) gets its set made
// at each measurement.
var serverClasses = []tlswatch.Class{
	tlswatch.Healthy, tlswatch.Idle, tlswatch.BlackHoleUpstream, tlswatch.BlackHoleDownstream,
	tlswatch.BlackHole, tlswatch.Reset, tlswatch.TLSError, tlswatch.HelloPartial,
}

// server holds the server-side instruments and the attribute sets they
// use, made once: hooks run on the watched connections' goroutines.
type server struct {
	attrs   []attribute.KeyValue        // server.address, server.port
	byClass map[tlswatch.Class]measures // read-only after newServer

	handshakes   metric.Int64Counter
	duration     metric.Float64Histogram
	recovered    metric.Int64Counter
	failing      metric.Int64UpDownCounter
	clamped      metric.Int64Gauge
	clampChanges metric.Int64Counter

	plain metric.MeasurementOption // attrs alone

	// mu serializes clamp's recordings; seen holds every clamp recorded,
	// so that a clamp no prefix has any more is recorded as 0 (a few
	// values: the rungs of the Policy's ladder).
	mu   sync.Mutex
	seen []int
}

// measures are the measurement options of one class.
type measures struct {
	count    metric.MeasurementOption // handshakes
	duration metric.MeasurementOption // handshake.duration
}

// NewServerTrace returns a tlswatch.Trace that records the verdicts of the
// watcher it is set on (tlswatch.Watcher.Trace) in the instruments the
// package documentation lists: every Trace hook is set. A watcher that has
// a Trace of its own takes both with tlswatch.MultiTrace. One Trace serves
// one Watcher (the failing prefixes are counted up and down from its
// calls); [WithServerAddr] names the address its listeners serve. The
// error is that of making an instrument.
func NewServerTrace(opts ...Option) (*tlswatch.Trace, error) {
	s, err := newServer(newConfig(opts))
	if err != nil {
		return nil, err
	}
	return &tlswatch.Trace{Handshake: s.handshake, Prefix: s.prefix, Clamp: s.clamp}, nil
}

func newServer(cfg config) (*server, error) {
	m := cfg.meter()
	s := &server{attrs: cfg.listenerAttrs()}
	var errs [6]error
	s.handshakes, errs[0] = m.Int64Counter("fitshake.server.handshakes",
		metric.WithUnit("{handshake}"), metric.WithDescription("Watched connections by verdict: completed, failed (by class), or idle."))
	s.duration, errs[1] = m.Float64Histogram("fitshake.server.handshake.duration",
		metric.WithUnit("s"), metric.WithDescription("Time from accept to the verdict of each handshake that was tried, completed or failed."),
		metric.WithExplicitBucketBoundaries(DurationBuckets...))
	s.recovered, errs[2] = m.Int64Counter("fitshake.server.recovered_handshakes",
		metric.WithUnit("{handshake}"), metric.WithDescription("Completed handshakes from a client address whose earlier one failed, with a smaller MSS in its SYN this time."))
	s.failing, errs[3] = m.Int64UpDownCounter("fitshake.server.failing_prefixes",
		metric.WithUnit("{prefix}"), metric.WithDescription("Client prefixes failing now: most of their handshakes in the window failed."))
	s.clamped, errs[4] = m.Int64Gauge("fitshake.server.clamped_prefixes",
		metric.WithUnit("{prefix}"), metric.WithDescription("Client prefixes the self-fix clamps now."))
	s.clampChanges, errs[5] = m.Int64Counter("fitshake.server.clamp.changes",
		metric.WithUnit("{change}"), metric.WithDescription("Changes of the set of prefixes the self-fix clamps, as told to the listener machinery."))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	s.plain = with(s.attrs)
	s.byClass = make(map[tlswatch.Class]measures, len(serverClasses))
	for _, c := range serverClasses {
		s.byClass[c] = s.measuresOf(c)
	}
	return s, nil
}

// measuresOf makes the measurement options of class c.
func (s *server) measuresOf(c tlswatch.Class) measures {
	done := semconv.TLSEstablished(c == tlswatch.Healthy)
	var errType attribute.KeyValue // left out unless failed
	if c.Failed() {
		errType = semconv.ErrorTypeKey.String(string(c))
	}
	return measures{
		count:    with(s.attrs, done, HandshakeClassKey.String(string(c)), errType),
		duration: with(s.attrs, done, errType),
	}
}

// handshake records one verdict: the Trace's Handshake hook.
func (s *server) handshake(h tlswatch.HandshakeInfo) {
	ctx := context.Background() // the hook carries none
	m, ok := s.byClass[h.Class]
	if !ok {
		m = s.measuresOf(h.Class)
	}
	s.handshakes.Add(ctx, 1, m.count)
	switch {
	case h.Class == tlswatch.Healthy:
		s.duration.Record(ctx, h.Duration.Seconds(), m.duration)
		if h.Recovered {
			s.recovered.Add(ctx, 1, s.plain)
		}
	case h.Class.Failed():
		s.duration.Record(ctx, h.Evidence.Elapsed.Seconds(), m.duration)
	}
}

// prefix counts a prefix that starts failing, or recovers: the Trace's
// Prefix hook.
func (s *server) prefix(p tlswatch.PrefixInfo) {
	d := int64(-1)
	if p.Failing {
		d = 1
	}
	s.failing.Add(context.Background(), d, s.plain)
}

// clamp records a change of the clamped set: the Trace's Clamp hook. The
// gauge has a series per clamp (fitshake.mss), each the number of
// prefixes clamped to it.
func (s *server) clamp(c tlswatch.ClampInfo) {
	ctx := context.Background()
	n := make(map[int]int64)
	for _, p := range c.Prefixes {
		n[cmp.Or(c.Clamps[p], c.MSS)]++
	}
	s.mu.Lock()
	for mss := range n {
		if !slices.Contains(s.seen, mss) {
			s.seen = append(s.seen, mss)
		}
	}
	for _, mss := range s.seen {
		s.clamped.Record(ctx, n[mss], with(s.attrs, MSSKey.Int(mss)))
	}
	s.mu.Unlock()
	if c.Err == nil {
		s.clampChanges.Add(ctx, 1, s.plain)
		return
	}
	s.clampChanges.Add(ctx, 1, with(s.attrs, semconv.ErrorTypeKey.String(clampErrorType(c.Err))))
}

// clampErrorType is the error.type of a self-fix that failed.
func clampErrorType(err error) string {
	if errors.Is(err, tlswatch.ErrSelfFixUnsupported) {
		return "unsupported"
	}
	return semconv.ErrorTypeOther.Value.AsString()
}

// listenerAttrs are server.address and server.port of the listener
// address WithServerAddr gave, as far as the options keep them: no host
// for an unspecified one (":443", "[::]:443"), no port for port 0.
func (c config) listenerAttrs() []attribute.KeyValue {
	if c.listenAddr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(c.listenAddr)
	if err != nil {
		host, port = c.listenAddr, ""
	}
	kv := make([]attribute.KeyValue, 0, 2)
	if a, err := netip.ParseAddr(host); c.serverAddress && host != "" && (err != nil || !a.IsUnspecified()) {
		kv = append(kv, semconv.ServerAddress(host))
	}
	if p, err := strconv.Atoi(port); err == nil && p > 0 { // 0: the kernel's pick, unknown here
		kv = append(kv, semconv.ServerPort(p))
	}
	return kv
}
