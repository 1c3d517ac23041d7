package tlsdialtest

import (
	"bytes"
	"crypto/tls"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/fitshake/fitshake/internal/testcert"
)

// NewServer starts an HTTPS server for handler that speaks HTTP/2 and
// HTTP/1.1, logs through [ErrorLog] and is closed when the test ends. Its
// certificate is httptest's (127.0.0.1, ::1 and example.com); NewClient
// trusts it.
func NewServer(t testing.TB, handler http.Handler) *httptest.Server {
	t.Helper()
	return newServer(t, handler, nil, "")
}

// newServer starts the server on ln (nil: httptest's, on loopback) with a
// certificate for host (empty: httptest's own).
func newServer(t testing.TB, handler http.Handler, ln net.Listener, host string) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(handler)
	if ln != nil {
		srv.Listener.Close()
		srv.Listener = ln
	}
	if host != "" {
		ca, err := testcert.NewCA()
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.Issue([]string{host}, 0)
		if err != nil {
			t.Fatal(err)
		}
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = ErrorLog(t)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// ErrorLog returns a logger for an [http.Server]'s ErrorLog that passes
// lines to t.Log, except those of handshakes the client abandoned: "http:
// TLS handshake error" ending in EOF, a reset or a timeout, which every
// fallback causes on the server (the stalled attempt is closed). Lines
// that arrive after the test has ended are dropped.
func ErrorLog(t testing.TB) *log.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	return log.New(w, "", 0)
}

// abandoned are the endings of a handshake error when the client went away.
var abandoned = []string{
	": EOF",
	"connection reset by peer",
	"broken pipe",
	"i/o timeout",
	"use of closed network connection",
}

// isAbandonedHandshake reports whether line is a TLS handshake error of a
// client that went away.
func isAbandonedHandshake(line string) bool {
	line = strings.TrimRight(line, "\n")
	if !strings.HasPrefix(line, "http: TLS handshake error from ") {
		return false
	}
	for _, s := range abandoned {
		if strings.HasSuffix(line, s) {
			return true
		}
	}
	return false
}

type testWriter struct {
	t       testing.TB
	mu      sync.Mutex
	stopped bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// t.Log panics once the test has ended.
	if !w.stopped && !isAbandonedHandshake(string(b)) {
		w.t.Log("server: " + string(bytes.TrimRight(b, "\n")))
	}
	return len(b), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
}
