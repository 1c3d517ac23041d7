package tlsdialtest

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlsdial"
)

// Client is an [http.Client] for tests of fallback. Its HTTPS requests go
// through a [tlsdial.Transport] whose Dialer has a Cache of its own, and it
// records the Report of the connection that carried each response.
type Client struct {
	*http.Client

	// Dialer dials the HTTPS connections; its Cache is Cache. Its fields
	// may be changed (a Trace, a StallWindow) until the first request:
	// the transport reads them then.
	Dialer *tlsdial.Dialer

	// Cache is what the client learns, and only it: new for each Client.
	Cache *pmtu.Cache

	t   testing.TB
	rec *Recorder
}

// NewClient returns a Client that trusts the certificate of srv (nil: the
// system's roots) and starts with nothing learned. Its idle connections
// are closed when the test ends.
func NewClient(t testing.TB, srv *httptest.Server) *Client {
	t.Helper()
	cfg := &tls.Config{}
	if srv != nil && srv.Certificate() != nil {
		cfg.RootCAs = x509.NewCertPool()
		cfg.RootCAs.AddCert(srv.Certificate())
	}
	tr := NewTransport(t, cfg)
	rec := &Recorder{Transport: tr}
	return &Client{
		Client: &http.Client{Transport: rec},
		Dialer: tr.Dialer,
		Cache:  tr.Dialer.Cache,
		t:      t,
		rec:    rec,
	}
}

// NewTransport returns a [tlsdial.Transport] whose Dialer uses config (nil:
// the zero configuration) and a new, empty Cache. Its idle connections are
// closed when the test ends.
func NewTransport(t testing.TB, config *tls.Config) *tlsdial.Transport {
	tr := &tlsdial.Transport{Dialer: &tlsdial.Dialer{Config: config, Cache: new(pmtu.Cache)}}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// Report returns the Report of the connection that carried resp, a
// response of c. It reports an error to the test and returns the zero
// Report if there is none (resp is not c's, or came over plain HTTP).
func (c *Client) Report(resp *http.Response) tlsdial.Report {
	c.t.Helper()
	rep, ok := c.rec.Report(resp)
	if !ok {
		c.t.Errorf("tlsdialtest: no fitshake connection of this Client carried the response %p", resp)
	}
	return rep
}
