//go:build go1.27

package tlsdial_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"testing"

	"github.com/fitshake/fitshake/internal/leaktest"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// From Go 1.27, net/http's Transport speaks HTTP/2 over a DialTLSContext
// connection that has ConnectionState, as *tlsdial.Conn does (Go 1.26:
// only over a *tls.Conn), and fills Response.TLS from it. It enables
// HTTP/2 for a custom dialer only with ForceAttemptHTTP2 (or Protocols),
// and the Dialer's Config must offer h2: net/http sets no ALPN on a
// connection it does not dial.
func TestNetHTTPOverDialerGo127(t *testing.T) {
	leaktest.Check(t)
	s := startHTTPS(t, false, "h2", "http/1.1")
	cfg := s.config.Clone()
	cfg.NextProtos = []string{"h2", "http/1.1"}
	d := &tlsdial.Dialer{Config: cfg}
	for _, tt := range []struct {
		name      string
		force     bool
		wantProto string // "": the request fails
	}{
		{"ForceAttemptHTTP2", true, "HTTP/2.0"},
		{"default", false, ""}, // HTTP/1.1 spoken on an h2 connection
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr := &http.Transport{DialTLSContext: d.DialContext, ForceAttemptHTTP2: tt.force}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get(s.url())
			if tt.wantProto == "" {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			assert.Equal(t, tt.wantProto, resp.Proto)
			assert.Equal(t, "HTTP/2.0 GET ", string(body))
			require.NotNil(t, resp.TLS)
			assert.Equal(t, "h2", resp.TLS.NegotiatedProtocol)
			assert.Equal(t, uint16(tls.VersionTLS13), resp.TLS.Version)
		})
	}
}
