package fitshakeotel

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
)

// An Option configures the instruments NewClientTrace or NewServerTrace
// makes.
type Option interface {
	apply(*config)
}

type config struct {
	mp            metric.MeterProvider
	serverAddress bool
	listenAddr    string // the server side's server.address and server.port
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithMeterProvider makes the instruments with mp. Without it, or with a
// nil mp, they come from the global provider (otel.GetMeterProvider) at
// the time NewClientTrace (or NewServerTrace) is called.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) { c.mp = mp })
}

// WithoutServerAddress leaves the server.address attribute out of every
// measurement (server.port stays), for a client that dials so many hosts
// that one series per host would be too many.
func WithoutServerAddress() Option {
	return optionFunc(func(c *config) { c.serverAddress = false })
}

// WithServerAddr gives NewServerTrace the address the watched listeners
// serve, as "host:port" ("example.com:443") or ":port": its host becomes
// server.address and its port server.port on every server measurement. An
// IP address of the listener's own is fine; an unspecified one
// ("0.0.0.0:443", "[::]:443", ":443") gives server.port alone, as does
// WithoutServerAddress; port 0 (the kernel picks one) gives no
// server.port. Without it the server instruments have neither.
// NewClientTrace ignores it: a dial's address is its own.
func WithServerAddr(addr string) Option {
	return optionFunc(func(c *config) { c.listenAddr = addr })
}

// meter is the Meter of every instrument of the package, client and
// server side.
func (c config) meter() metric.Meter {
	return c.mp.Meter(ScopeName, metric.WithSchemaURL(semconv.SchemaURL))
}

func newConfig(opts []Option) config {
	c := config{serverAddress: true}
	for _, o := range opts {
		o.apply(&c)
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	return c
}
