package fitshakeotel_test

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	fitshakeotel "github.com/fitshake/fitshake/otel"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/fitshake/fitshake/tlswatch"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// What the metrics Trace costs a dial: its Done hook, run once per dial
// in the dial's goroutine, with the SDK behind it.
func BenchmarkClientTraceDone(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer mp.Shutdown(context.Background())
	trace, err := fitshakeotel.NewClientTrace(fitshakeotel.WithMeterProvider(mp))
	if err != nil {
		b.Fatal(err)
	}
	healthy := tlsdial.DoneInfo{Addr: "example.com:443", Report: tlsdial.Report{
		Attempts: []tlsdial.Attempt{{ID: 1, Rung: "pq", Outcome: tlsdial.OutcomeOK}},
		Rung:     "pq", Duration: 3 * time.Millisecond,
	}}
	silent := pmtu.Diagnosis{Class: pmtu.ClassSilent}
	recovered := tlsdial.DoneInfo{Addr: "example.com:443", Report: tlsdial.Report{
		Attempts: []tlsdial.Attempt{
			{ID: 1, Rung: "pq", Outcome: tlsdial.OutcomeStall, Diagnosis: silent},
			{ID: 2, MSS: 1360, Rung: "pq", Outcome: tlsdial.OutcomeOK},
		},
		MSS: 1360, Rung: "pq", Diagnosis: silent, Duration: 300 * time.Millisecond,
	}}
	for _, bc := range []struct {
		name string
		info tlsdial.DoneInfo
	}{{"healthy", healthy}, {"recovered", recovered}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				trace.Done(bc.info)
			}
		})
	}
}

// A healthy loopback dial (TCP connect and a post-quantum TLS 1.3
// handshake on both sides), to set the hook's cost against in the same
// run: go test -run '^$' -bench . ./otel/
func BenchmarkDialerHealthy(b *testing.B) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.ServerName = "example.com"
	d := &tlsdial.Dialer{Config: cfg, Cache: &pmtu.Cache{}}
	addr := srv.Listener.Addr().String()
	for b.Loop() {
		c, err := d.DialContext(context.Background(), "tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// What the server metrics Trace costs a watched connection: its
// Handshake hook, run once per verdict on the connection's goroutine, with
// the SDK behind it. Set it against a loopback handshake
// (BenchmarkDialerHealthy) in the same run.
func BenchmarkServerTraceHandshake(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer mp.Shutdown(context.Background())
	trace, err := fitshakeotel.NewServerTrace(fitshakeotel.WithMeterProvider(mp), fitshakeotel.WithServerAddr(":443"))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		info tlswatch.HandshakeInfo
	}{
		{"healthy", tlswatch.HandshakeInfo{Class: tlswatch.Healthy, Duration: 2 * time.Millisecond}},
		{"blackhole", tlswatch.HandshakeInfo{Class: tlswatch.BlackHoleUpstream, Evidence: tlswatch.Evidence{Elapsed: 5 * time.Second}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				trace.Handshake(bc.info)
			}
		})
	}
}
