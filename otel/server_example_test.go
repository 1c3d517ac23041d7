package fitshakeotel_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/fitshake/fitshake/internal/testcert"
	fitshakeotel "github.com/fitshake/fitshake/otel"
	"github.com/fitshake/fitshake/tlswatch"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// A watched HTTPS server with the metrics Trace beside one of its own. A
// manual reader stands for the exporter of a real program (OTLP, or
// Prometheus with go.opentelemetry.io/otel/exporters/prometheus, as
// examples/watchserver does).
func ExampleNewServerTrace() {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(ctx)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	metrics, err := fitshakeotel.NewServerTrace(fitshakeotel.WithMeterProvider(mp), fitshakeotel.WithServerAddr(ln.Addr().String()))
	if err != nil {
		log.Fatal(err)
	}
	verdict := make(chan tlswatch.Class, 1)
	mine := &tlswatch.Trace{Handshake: func(h tlswatch.HandshakeInfo) { verdict <- h.Class }}
	w := &tlswatch.Watcher{Trace: tlswatch.MultiTrace(metrics, mine)} // metrics first: mine signals the verdict was recorded

	srvCfg, cliCfg, err := testcert.Configs([]string{"watch.test"}, 0)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { io.WriteString(rw, "hello\n") }),
		TLSConfig:         srvCfg,
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.ServeTLS(w.Wrap(ln), "", "")
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: cliCfg}}
	resp, err := client.Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println("verdict:", <-verdict)

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		log.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range sum.DataPoints {
					// Leave out server.port: it changes.
					attrs, _ := dp.Attributes.Filter(func(kv attribute.KeyValue) bool { return kv.Key != "server.port" })
					fmt.Printf("%s{%s} %d\n", m.Name, attrs.Encoded(attribute.DefaultEncoder()), dp.Value)
				}
			}
		}
	}
	// Output:
	// verdict: healthy
	// fitshake.server.handshakes{fitshake.handshake.class=healthy,server.address=127.0.0.1,tls.established=true} 1
}
