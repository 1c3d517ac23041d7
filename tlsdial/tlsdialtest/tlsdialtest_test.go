package tlsdialtest_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fitshake/fitshake/internal/leaktest"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/fitshake/fitshake/tlsdial/tlsdialtest"
)

func hello(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "hello over %s", r.Proto) }

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

// Two clients in one test each fall back on their own: the second does not
// start from what the first learned, and its Stall hook fires.
func TestNewClientFallsBack(t *testing.T) {
	leaktest.Check(t)
	srv := tlsdialtest.NewServer(t, http.HandlerFunc(hello))
	hole := pmtutest.NewProxy(t, srv.Listener.Addr().String(), 1400)
	url := "https://" + hole.Addr() + "/"

	for i := range 2 {
		c := tlsdialtest.NewClient(t, srv)
		var stalls atomic.Int32
		c.Dialer.Trace = &tlsdial.Trace{Stall: func(tlsdial.StallInfo) { stalls.Add(1) }}

		resp, body := get(t, c.Client, url)
		assert.Equal(t, "hello over HTTP/2.0", body, "client %d", i)
		r := c.Report(resp)
		assert.False(t, r.FromCache, "client %d started from what another learned", i)
		assert.Positive(t, r.Stalls(), "client %d: %v", i, r)
		assert.Equal(t, 1360, r.MSS, "client %d: %v", i, r)
		assert.Positive(t, stalls.Load(), "client %d: Stall hook", i)
		assert.Equal(t, 1, c.Cache.Len(), "client %d learned the clamp", i)

		// The next request reuses the connection: same dial, same Report.
		resp2, _ := get(t, c.Client, url)
		assert.Equal(t, r.Attempts, c.Report(resp2).Attempts, "client %d", i)
	}
	assert.Equal(t, 0, pmtu.DefaultCache.Len(), "DefaultCache untouched")
}

// A Recorder over net/http's Transport with a TCPDialer (crypto/tls's own
// hello), over HTTP/2 and HTTP/1.1.
func TestRecorderTCPDialer(t *testing.T) {
	leaktest.Check(t)
	srv := tlsdialtest.NewServer(t, http.HandlerFunc(hello))
	hole := pmtutest.NewProxy(t, srv.Listener.Addr().String(), 1400)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())

	for _, tt := range []struct {
		name, wantProto string
		h2              bool
	}{{"h2", "HTTP/2.0", true}, {"http1.1", "HTTP/1.1", false}} {
		t.Run(tt.name, func(t *testing.T) {
			tr := &http.Transport{
				DialContext:       (&tlsdial.TCPDialer{Cache: new(pmtu.Cache)}).DialContext,
				TLSClientConfig:   &tls.Config{RootCAs: roots},
				ForceAttemptHTTP2: tt.h2,
			}
			t.Cleanup(tr.CloseIdleConnections)
			rec := &tlsdialtest.Recorder{Transport: tr}
			resp, body := get(t, &http.Client{Transport: rec}, "https://"+hole.Addr()+"/")
			assert.Equal(t, "hello over "+tt.wantProto, body)
			r, ok := rec.Report(resp)
			require.True(t, ok)
			assert.Positive(t, r.Stalls(), "%v", r)
			assert.Equal(t, 1360, r.MSS, "%v", r)
		})
	}
}

// Requests a Recorder cannot report on: plain HTTP, and responses it did
// not carry.
func TestRecorderNoReport(t *testing.T) {
	leaktest.Check(t)
	srv := httptest.NewServer(http.HandlerFunc(hello))
	t.Cleanup(srv.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	rec := &tlsdialtest.Recorder{Transport: tr}
	req, err := http.NewRequest("GET", srv.URL, nil)
	require.NoError(t, err)
	resp, err := rec.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Same(t, req, resp.Request, "Response.Request is the caller's")
	_, ok := rec.Report(resp)
	assert.False(t, ok, "plain HTTP has no Report")
	_, ok = rec.Report(&http.Response{})
	assert.False(t, ok)
}

// logTB records what a test would log.
type logTB struct {
	testing.TB
	mu   sync.Mutex
	logs []string
}

func (l *logTB) Log(args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.logs = append(l.logs, fmt.Sprint(args...))
}

func (l *logTB) lines() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.logs, "\n")
}

// Every fallback makes the server log a handshake error: the stalled
// attempt is closed. NewServer's log drops those lines and keeps others.
func TestNewServerQuiet(t *testing.T) {
	for _, quiet := range []bool{false, true} {
		t.Run(fmt.Sprint("quiet=", quiet), func(t *testing.T) {
			leaktest.Check(t)
			tb := &logTB{TB: t}
			var srv *httptest.Server
			if quiet {
				srv = tlsdialtest.NewServer(tb, http.HandlerFunc(hello))
			} else {
				srv = httptest.NewUnstartedServer(http.HandlerFunc(hello))
				srv.EnableHTTP2 = true
				w := &logTB{TB: t}
				tb = w
				srv.Config.ErrorLog = logger(w)
				srv.StartTLS()
			}
			hole := pmtutest.NewProxy(t, srv.Listener.Addr().String(), 1400)
			c := tlsdialtest.NewClient(t, srv)
			_, body := get(t, c.Client, "https://"+hole.Addr()+"/")
			assert.Equal(t, "hello over HTTP/2.0", body)
			srv.Close() // the abandoned handshake has ended and been logged
			if quiet {
				assert.Empty(t, tb.lines())
			} else {
				assert.Contains(t, tb.lines(), "http: TLS handshake error from ")
			}
		})
	}
}

// ErrorLog passes what is not an abandoned handshake.
func TestErrorLogPasses(t *testing.T) {
	tb := &logTB{TB: t}
	l := tlsdialtest.ErrorLog(tb)
	l.Print("http: TLS handshake error from 127.0.0.1:1234: EOF")
	l.Print("http: TLS handshake error from 127.0.0.1:1234: read tcp 127.0.0.1:1->127.0.0.1:1234: read: connection reset by peer")
	l.Print("http: TLS handshake error from 127.0.0.1:1234: remote error: tls: bad certificate")
	l.Print("http: panic serving 127.0.0.1:1234: boom")
	assert.Equal(t, "server: http: TLS handshake error from 127.0.0.1:1234: remote error: tls: bad certificate\n"+
		"server: http: panic serving 127.0.0.1:1234: boom", tb.lines())
}
