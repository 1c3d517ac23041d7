package weather_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/fitshake/fitshake/examples/sdk/weather"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serve starts the weather API (HTTP/2 over TLS, httptest's certificate
// for 127.0.0.1) behind a 1400-byte black hole both ways, and returns the
// base URL through it, the URL without it, and the roots that trust it.
func serve(t *testing.T) (through, direct string, roots *x509.CertPool, p *pmtutest.Proxy) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/current" {
			http.NotFound(w, r)
			return
		}
		c := weather.Conditions{City: r.URL.Query().Get("city"), TempC: 12.5, Summary: "drizzle"}
		for i := range 500 { // a response of several packets
			c.Hourly = append(c.Hourly, 10+float64(i%7)/4)
		}
		json.NewEncoder(w).Encode(c)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p, err := pmtutest.Start(pmtutest.Config{Target: srv.Listener.Addr().String(), MTU: 1400})
	if errors.Is(err, pmtu.ErrUnsupported) {
		t.Skip(err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	roots = x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	return "https://" + p.Addr(), srv.URL, roots, p
}

// leakCheck fails t if goroutines or file descriptors outlive its
// connections.
func leakCheck(t *testing.T) {
	g0, f0 := runtime.NumGoroutine(), openFDs()
	t.Cleanup(func() {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			g, f := runtime.NumGoroutine(), openFDs()
			if g <= g0 && f <= f0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("leak: goroutines %d → %d, fds %d → %d", g0, g, f0, f)
				return
			}
		}
	})
}

func openFDs() int {
	es, _ := os.ReadDir("/proc/self/fd")
	return len(es)
}

// TestFitshakeMatters: through the black hole, a client with fitshake (on
// by default) gets its answer, one without hangs until its deadline; both
// work on the path without it.
func TestFitshakeMatters(t *testing.T) {
	leakCheck(t)
	through, direct, roots, p := serve(t)
	var (
		mu      sync.Mutex
		reports []tlsdial.Report
	)
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}, Trace: &tlsdial.Trace{Done: func(i tlsdial.DoneInfo) {
		mu.Lock()
		reports = append(reports, i.Report)
		mu.Unlock()
	}}}
	const bound = 2 * time.Second
	for _, tc := range []struct {
		name    string
		base    string
		opts    []weather.Option
		wantErr bool
	}{
		{"direct, without fitshake", direct, []weather.Option{weather.WithoutFitshake()}, false},
		{"through, fitshake", through, []weather.Option{weather.WithFitshake(td)}, false},
		{"through, default", through, nil, false},
		{"through, without fitshake", through, []weather.Option{weather.WithoutFitshake()}, true},
		{"through, caller's client", through, []weather.Option{weather.WithHTTPClient(&http.Client{
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
		})}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]weather.Option{weather.WithRootCAs(roots)}, tc.opts...)
			c, err := weather.New(tc.base, opts...)
			require.NoError(t, err)
			defer c.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			defer cancel()
			start := time.Now()
			cond, err := c.Current(ctx, "Zürich")
			took := time.Since(start)
			if tc.wantErr {
				require.Error(t, err)
				assert.ErrorIs(t, err, context.DeadlineExceeded)
				assert.Less(t, took, bound+2*time.Second)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "Zürich", cond.City)
			assert.Len(t, cond.Hourly, 500)
			t.Logf("answered in %v", took)
		})
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, reports, 1, "the fitshake case's one dial")
	assert.Equal(t, 1360, reports[0].MSS)
	assert.Len(t, reports[0].Attempts, 2)
	assert.Positive(t, p.Stats().UpDropped+p.Stats().DownDropped)
}

func TestNew(t *testing.T) {
	for _, base := range []string{"http://example.com", "example.com", "https://", "://x"} {
		_, err := weather.New(base)
		assert.Error(t, err, base)
	}
	_, err := weather.New("https://api.example.com/weather")
	assert.NoError(t, err)
}

func TestStatusError(t *testing.T) {
	leakCheck(t)
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	c, err := weather.New(srv.URL+"/nowhere", weather.WithRootCAs(roots), weather.WithFitshake(&tlsdial.TCPDialer{Cache: &pmtu.Cache{}}))
	require.NoError(t, err)
	defer c.CloseIdleConnections()
	_, err = c.Current(context.Background(), "Oslo")
	var se *weather.StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, http.StatusNotFound, se.Code)
}
