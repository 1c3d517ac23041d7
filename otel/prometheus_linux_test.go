//go:build linux

package fitshakeotel_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/fitshake/fitshake/internal/leaktest"
	fitshakeotel "github.com/fitshake/fitshake/otel"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// The client instruments through OTel's Prometheus exporter, as a
// /metrics endpoint serves them: counters end in _total, durations in
// _seconds, attributes are labels with underscores.
func TestClientTracePrometheusText(t *testing.T) {
	leaktest.Check(t)
	target, cfg := tlsServer(t)
	p, err := pmtutest.Start(pmtutest.Config{Target: target, MTU: 1400})
	if err != nil {
		t.Skipf("black-hole simulator unavailable here: %v", err)
	}
	t.Cleanup(func() { p.Close() })

	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	require.NoError(t, err)
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	trace, err := fitshakeotel.NewClientTrace(fitshakeotel.WithMeterProvider(mp))
	require.NoError(t, err)

	_, err = dialers[0].dial(t, p.Addr(), cfg, trace)
	require.NoError(t, err)

	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	text := rec.Body.String()
	_, port := hostPort(t, p.Addr())
	for _, want := range []string{
		`fitshake_client_dials_total{server_address="127.0.0.1",server_port="` + port + `",tls_protocol_name="tls",tls_protocol_version="1.3"} 1`,
		`fitshake_client_recovered_dials_total{fitshake_mss="1360",fitshake_path_class="silent server",fitshake_rung="pq",server_address="127.0.0.1",server_port="` + port + `"} 1`,
		`fitshake_client_attempts_total{fitshake_attempt_outcome="stall",fitshake_mss="0",fitshake_rung="pq",server_address="127.0.0.1",server_port="` + port + `"} 1`,
		`fitshake_client_attempts_total{fitshake_attempt_outcome="ok",fitshake_mss="1360",fitshake_rung="pq",server_address="127.0.0.1",server_port="` + port + `"} 1`,
		`fitshake_client_stalls_total{fitshake_mss="0",fitshake_path_class="silent server",server_address="127.0.0.1",server_port="` + port + `"} 1`,
		`fitshake_client_dial_duration_seconds_count{server_address="127.0.0.1",server_port="` + port + `",tls_protocol_name="tls",tls_protocol_version="1.3"} 1`,
		`fitshake_client_dial_duration_seconds_bucket{server_address="127.0.0.1",server_port="` + port + `",tls_protocol_name="tls",tls_protocol_version="1.3",le="0.25"} 0`,
		`fitshake_client_recovery_duration_seconds_count{fitshake_path_class="silent server",server_address="127.0.0.1",server_port="` + port + `"} 1`,
		`# TYPE fitshake_client_dials_total counter`,
		`# TYPE fitshake_client_dial_duration_seconds histogram`,
	} {
		assert.Contains(t, text, want+"\n")
	}
	assert.NotRegexp(t, regexp.MustCompile(`hellos_rejected`), text, "nothing recorded, no series")
	if t.Failed() || testing.Verbose() {
		t.Log(text)
	}
}
