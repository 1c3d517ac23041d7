package fitshakeotel_test

import (
	"context"
	"testing"

	fitshakeotel "github.com/fitshake/fitshake/otel"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// newTrace returns a client Trace recording into a meter provider of its
// own, and the reader that collects it.
func newTrace(t *testing.T, opts ...fitshakeotel.Option) (*tlsdial.Trace, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	tr, err := fitshakeotel.NewClientTrace(append([]fitshakeotel.Option{fitshakeotel.WithMeterProvider(mp)}, opts...)...)
	require.NoError(t, err)
	return tr, reader
}

// collected is what a reader holds, by instrument name.
type collected map[string]metricdata.Metrics

func collect(t *testing.T, r *sdkmetric.ManualReader) collected {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	c := collected{}
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, fitshakeotel.ScopeName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			c[m.Name] = m
		}
	}
	return c
}

// key writes an attribute set as "k=v,k=v", sorted by key.
func key(s attribute.Set) string { return s.Encoded(attribute.DefaultEncoder()) }

// counts returns the points of a monotonic counter, by attribute set; nil
// if the instrument recorded nothing.
func (c collected) counts(t *testing.T, name string) map[string]int64 {
	t.Helper()
	m, ok := c[name]
	if !ok {
		return nil
	}
	sum, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is an int64 sum: %T", name, m.Data)
	require.True(t, sum.IsMonotonic, name)
	out := map[string]int64{}
	for _, p := range sum.DataPoints {
		out[key(p.Attributes)] = p.Value
	}
	return out
}

// histograms returns the points of a histogram, by attribute set.
func (c collected) histograms(t *testing.T, name string) map[string]metricdata.HistogramDataPoint[float64] {
	t.Helper()
	m, ok := c[name]
	if !ok {
		return nil
	}
	require.Equal(t, "s", m.Unit, name)
	h, ok := m.Data.(metricdata.Histogram[float64])
	require.True(t, ok, "%s is a float64 histogram: %T", name, m.Data)
	out := map[string]metricdata.HistogramDataPoint[float64]{}
	for _, p := range h.DataPoints {
		require.Equal(t, fitshakeotel.DurationBuckets, p.Bounds, name)
		out[key(p.Attributes)] = p
	}
	return out
}

// gauges returns the points of an int64 gauge or up-down counter (a
// non-monotonic sum), by attribute set; nil if it recorded nothing.
func (c collected) gauges(t *testing.T, name string) map[string]int64 {
	t.Helper()
	m, ok := c[name]
	if !ok {
		return nil
	}
	out := map[string]int64{}
	switch d := m.Data.(type) {
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			out[key(p.Attributes)] = p.Value
		}
	case metricdata.Sum[int64]:
		require.False(t, d.IsMonotonic, "%s goes up and down", name)
		for _, p := range d.DataPoints {
			out[key(p.Attributes)] = p.Value
		}
	default:
		t.Fatalf("%s is an int64 gauge or up-down counter: %T", name, m.Data)
	}
	return out
}
