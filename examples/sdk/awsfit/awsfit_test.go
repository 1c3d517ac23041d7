package awsfit_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/fitshake/fitshake/examples/sdk/awsfit"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// object is what the fake S3 serves at /fitshake-bucket/big.bin: larger
// than many packets.
var object = bytes.Repeat([]byte("fitshake "), 8000)

// fakeS3 answers two S3 calls, path-style: ListBuckets (GET /) and
// GetObject (GET /fitshake-bucket/big.bin). It checks that the request is
// signed (SigV4) with the test's access key.
func fakeS3(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKIDFITSHAKE/") {
		http.Error(w, "unsigned", http.StatusForbidden)
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/":
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?>
<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Owner><ID>fitshake</ID><DisplayName>fitshake</DisplayName></Owner><Buckets><Bucket><Name>fitshake-bucket</Name><CreationDate>2026-12-01T00:00:00.000Z</CreationDate></Bucket></Buckets></ListAllMyBucketsResult>`)
	case r.Method == http.MethodGet && r.URL.Path == "/fitshake-bucket/big.bin":
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(object)
	default:
		http.Error(w, "not faked: "+r.Method+" "+r.URL.String(), http.StatusNotImplemented)
	}
}

// serve starts the fake S3 over TLS (HTTP/2) behind a 1400-byte black
// hole both ways; it returns the endpoints through it and without it, and
// the roots that trust its certificate.
func serve(t *testing.T) (through, direct string, roots *x509.CertPool, p *pmtutest.Proxy) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(fakeS3))
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

// newS3 is an S3 client of endpoint with static credentials, path-style
// addressing and the given HTTP client, trusting roots, with no retries
// (so that a hang shows as one).
func newS3(t *testing.T, endpoint string, hc aws.HTTPClient) *s3.Client {
	cfg, err := config.LoadDefaultConfig(context.Background(),
		config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKIDFITSHAKE", "secret", "")),
		config.WithHTTPClient(hc),
		config.WithRetryMaxAttempts(1),
	)
	require.NoError(t, err)
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
	})
}

func trusting(roots *x509.CertPool) func(*http.Transport) {
	return func(tr *http.Transport) {
		tr.TLSClientConfig = tr.TLSClientConfig.Clone()
		tr.TLSClientConfig.RootCAs = roots
	}
}

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

// TestS3 lists buckets and reads an object through the black hole with
// awsfit's client; the SDK's default client hangs there until the call's
// deadline; both work without the black hole.
func TestS3(t *testing.T) {
	leakCheck(t)
	through, direct, roots, p := serve(t)
	var mu sync.Mutex
	var reports []tlsdial.Report
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}, Trace: &tlsdial.Trace{Done: func(i tlsdial.DoneInfo) {
		mu.Lock()
		reports = append(reports, i.Report)
		mu.Unlock()
	}}}
	fit := awsfit.HTTPClient(td).WithTransportOptions(trusting(roots))
	stock := awshttp.NewBuildableClient().WithTransportOptions(trusting(roots))
	defer fit.GetTransport().CloseIdleConnections()
	defer stock.GetTransport().CloseIdleConnections()

	const bound = 2 * time.Second
	for _, tc := range []struct {
		name     string
		endpoint string
		hc       aws.HTTPClient
		wantErr  bool
	}{
		{"direct, SDK's client", direct, stock, false},
		{"through, awsfit", through, fit, false},
		{"through, SDK's client", through, stock, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := newS3(t, tc.endpoint, tc.hc)
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			defer cancel()
			start := time.Now()
			out, err := client.ListBuckets(ctx, &s3.ListBucketsInput{})
			if tc.wantErr {
				require.Error(t, err)
				assert.ErrorIs(t, err, context.DeadlineExceeded)
				assert.Less(t, time.Since(start), bound+2*time.Second)
				return
			}
			require.NoError(t, err)
			require.Len(t, out.Buckets, 1)
			assert.Equal(t, "fitshake-bucket", aws.ToString(out.Buckets[0].Name))
			obj, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("fitshake-bucket"), Key: aws.String("big.bin")})
			require.NoError(t, err)
			body, err := io.ReadAll(obj.Body)
			obj.Body.Close()
			require.NoError(t, err)
			assert.Equal(t, object, body)
			t.Logf("ListBuckets + GetObject (%d bytes) in %v", len(body), time.Since(start))
		})
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, reports, 1, "awsfit's one dial")
	assert.Equal(t, 1360, reports[0].MSS)
	assert.Len(t, reports[0].Attempts, 2)
	assert.Positive(t, p.Stats().UpDropped+p.Stats().DownDropped)
}

// TestHTTPClientKeepsTransport: awsfit changes only the dialer of the
// SDK's transport, and not the caller's TCPDialer.
func TestHTTPClientKeepsTransport(t *testing.T) {
	td := &tlsdial.TCPDialer{}
	tr := awsfit.HTTPClient(td).GetTransport()
	def := awshttp.NewBuildableClient().GetTransport()
	assert.NotNil(t, tr.Proxy)
	assert.True(t, tr.ForceAttemptHTTP2)
	assert.Equal(t, def.TLSHandshakeTimeout, tr.TLSHandshakeTimeout)
	assert.Equal(t, def.MaxIdleConns, tr.MaxIdleConns)
	assert.Equal(t, uint16(tls.VersionTLS12), tr.TLSClientConfig.MinVersion)
	assert.Nil(t, td.NetDialer, "the caller's dialer is not modified")
}
