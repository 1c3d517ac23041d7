package fitshakeotel

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"strings"

	"github.com/fitshake/fitshake/tlsdial"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
)

// ScopeName is the instrumentation scope of the instruments: the import
// path of this package.
const ScopeName = "github.com/fitshake/fitshake/otel"

// Attribute keys of fitshake's own (see the package documentation).
const (
	AttemptOutcomeKey = attribute.Key("fitshake.attempt.outcome")
	PathClassKey      = attribute.Key("fitshake.path.class")
	MSSKey            = attribute.Key("fitshake.mss")
	RungKey           = attribute.Key("fitshake.rung")
)

// DurationBuckets are the explicit bucket boundaries, in seconds, of the
// duration histograms: milliseconds for healthy handshakes, then the
// stall window (250 ms), the hedges after 1, 3 and 6 windows, and the
// 10 s give-up.
var DurationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// client holds the client-side instruments.
type client struct {
	serverAddress bool

	dials          metric.Int64Counter
	dialDuration   metric.Float64Histogram
	recovered      metric.Int64Counter
	recoveryDur    metric.Float64Histogram
	attempts       metric.Int64Counter
	stalls         metric.Int64Counter
	hellosRejected metric.Int64Counter
}

// NewClientTrace returns a Trace that records each dial of the dialers it
// is set on (tlsdial.Dialer.Trace, tlsdial.TCPDialer.Trace, the Dialer of
// a tlsdial.Transport, or a context with tlsdial.WithTrace) in the
// instruments the package documentation lists. It only sets the Trace's
// Done hook. One Trace may serve any number of dialers and concurrent
// dials. The error is that of making an instrument.
func NewClientTrace(opts ...Option) (*tlsdial.Trace, error) {
	c, err := newClient(newConfig(opts))
	if err != nil {
		return nil, err
	}
	return &tlsdial.Trace{Done: c.done}, nil
}

func newClient(cfg config) (*client, error) {
	m := cfg.meter()
	c := &client{serverAddress: cfg.serverAddress}
	var errs [7]error
	c.dials, errs[0] = m.Int64Counter("fitshake.client.dials",
		metric.WithUnit("{dial}"), metric.WithDescription("Dials made, completed or not."))
	c.dialDuration, errs[1] = m.Float64Histogram("fitshake.client.dial.duration",
		metric.WithUnit("s"), metric.WithDescription("Wall time of each dial, every attempt included."),
		metric.WithExplicitBucketBoundaries(DurationBuckets...))
	c.recovered, errs[2] = m.Int64Counter("fitshake.client.recovered_dials",
		metric.WithUnit("{dial}"), metric.WithDescription("Dials that completed after an attempt stalled or was reset."))
	c.recoveryDur, errs[3] = m.Float64Histogram("fitshake.client.recovery.duration",
		metric.WithUnit("s"), metric.WithDescription("Wall time of each recovered dial."),
		metric.WithExplicitBucketBoundaries(DurationBuckets...))
	c.attempts, errs[4] = m.Int64Counter("fitshake.client.attempts",
		metric.WithUnit("{attempt}"), metric.WithDescription("TCP connections opened by dials, by how they ended."))
	c.stalls, errs[5] = m.Int64Counter("fitshake.client.stalls",
		metric.WithUnit("{attempt}"), metric.WithDescription("Attempts whose ClientHello got no reply, by what TCP_INFO showed."))
	c.hellosRejected, errs[6] = m.Int64Counter("fitshake.client.hellos_rejected",
		metric.WithUnit("{attempt}"), metric.WithDescription("Attempts whose ClientHello a box on the path refused."))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return c, nil
}

// done records one dial: the Trace's Done hook.
func (c *client) done(i tlsdial.DoneInfo) {
	ctx := context.Background() // the hook carries none
	server := c.serverAttrs(i.Addr)
	r := i.Report

	dial := server[:len(server):len(server)]
	if i.Err != nil {
		dial = append(dial, semconv.ErrorTypeKey.String(errorType(i.Err)))
	}
	if cs := i.ConnectionState; cs != nil {
		dial = append(dial, semconv.TLSProtocolNameTLS, semconv.TLSProtocolVersion(tlsVersion(cs.Version)))
	}
	set := metric.WithAttributeSet(attribute.NewSet(dial...))
	c.dials.Add(ctx, 1, set)
	c.dialDuration.Record(ctx, r.Duration.Seconds(), set)

	if i.Recovered() {
		class := PathClassKey.String(r.Diagnosis.Class.String())
		c.recovered.Add(ctx, 1, with(server, class, MSSKey.Int(r.MSS), rung(r.Rung)))
		c.recoveryDur.Record(ctx, r.Duration.Seconds(), with(server, class))
	}

	for _, a := range r.Attempts {
		c.attempts.Add(ctx, 1, with(server, AttemptOutcomeKey.String(a.Outcome.String()), MSSKey.Int(a.MSS), rung(a.Rung)))
		class := PathClassKey.String(a.Diagnosis.Class.String())
		if a.Outcome == tlsdial.OutcomeStall {
			c.stalls.Add(ctx, 1, with(server, class, MSSKey.Int(a.MSS)))
		}
		if a.Diagnosis.Class.HelloRejected() {
			c.hellosRejected.Add(ctx, 1, with(server, class, rung(a.Rung)))
		}
	}
}

// serverAttrs are server.address and server.port of addr ("host:port"),
// as far as the options keep them and addr has them.
func (c *client) serverAttrs(addr string) []attribute.KeyValue {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, ""
	}
	kv := make([]attribute.KeyValue, 0, 6)
	if c.serverAddress && host != "" {
		kv = append(kv, semconv.ServerAddress(host))
	}
	if p, err := strconv.Atoi(port); err == nil {
		kv = append(kv, semconv.ServerPort(p))
	}
	return kv
}

// with is the measurement option of the attributes base and more; the
// empty ones (an absent rung) are left out.
func with(base []attribute.KeyValue, more ...attribute.KeyValue) metric.MeasurementOption {
	kv := base[:len(base):len(base)]
	for _, m := range more {
		if m.Valid() {
			kv = append(kv, m)
		}
	}
	return metric.WithAttributeSet(attribute.NewSet(kv...))
}

// rung is the rung attribute, or an invalid (left out) one for "".
func rung(name string) attribute.KeyValue {
	if name == "" {
		return attribute.KeyValue{}
	}
	return RungKey.String(name)
}

// tlsVersion is the numeric part of a TLS version's name, as
// tls.protocol.version wants it: "1.3".
func tlsVersion(v uint16) string {
	return strings.TrimPrefix(tls.VersionName(v), "TLS ")
}
