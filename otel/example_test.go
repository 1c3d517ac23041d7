//go:build linux

package fitshakeotel_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"

	fitshakeotel "github.com/fitshake/fitshake/otel"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/fitshake/fitshake/tlsdial"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// A Dialer through a 1400-byte black hole, with the metrics Trace beside
// one of its own. A manual reader stands for the exporter of a real
// program (OTLP, or Prometheus with go.opentelemetry.io/otel/exporters/prometheus).
func ExampleNewClientTrace() {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	p, err := pmtutest.Start(pmtutest.Config{Target: srv.Listener.Addr().String(), MTU: 1400})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(ctx)

	metrics, err := fitshakeotel.NewClientTrace(fitshakeotel.WithMeterProvider(mp))
	if err != nil {
		log.Fatal(err)
	}
	mine := &tlsdial.Trace{Done: func(i tlsdial.DoneInfo) { fmt.Println("recovered:", i.Recovered()) }}
	cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.ServerName = "example.com" // httptest's certificate
	d := &tlsdial.Dialer{Config: cfg, Trace: tlsdial.MultiTrace(mine, metrics), Cache: &pmtu.Cache{}}
	c, err := d.DialContext(ctx, "tcp", p.Addr())
	if err != nil {
		log.Fatal(err)
	}
	c.Close()

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		log.Fatal(err)
	}
	var lines []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue // the duration histograms
			}
			for _, dp := range sum.DataPoints {
				// Leave out server.address and server.port (the proxy's port changes).
				attrs, _ := dp.Attributes.Filter(func(kv attribute.KeyValue) bool { return kv.Key != "server.address" && kv.Key != "server.port" })
				lines = append(lines, fmt.Sprintf("%s{%s} %d", m.Name, attrs.Encoded(attribute.DefaultEncoder()), dp.Value))
			}
		}
	}
	slices.Sort(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// recovered: true
	// fitshake.client.attempts{fitshake.attempt.outcome=ok,fitshake.mss=1360,fitshake.rung=pq} 1
	// fitshake.client.attempts{fitshake.attempt.outcome=stall,fitshake.mss=0,fitshake.rung=pq} 1
	// fitshake.client.dials{tls.protocol.name=tls,tls.protocol.version=1.3} 1
	// fitshake.client.recovered_dials{fitshake.mss=1360,fitshake.path.class=silent server,fitshake.rung=pq} 1
	// fitshake.client.stalls{fitshake.mss=0,fitshake.path.class=silent server} 1
}
