// Package weather is a small API client written the way an SDK author
// would wire fitshake in: the pattern to copy, not a real service.
//
// # fitshake on by default
//
// A client built by New dials with a tlsdial.TCPDialer unless told
// otherwise ([WithoutFitshake]), for four reasons:
//
//   - The failure it fixes is silent: behind a VPN or tunnel that drops
//     large packets, HTTPS hangs until a timeout with no error that names
//     the cause. The people it hits cannot know to turn an option on.
//   - crypto/tls still does the TLS: certificates, ciphers and the
//     ClientHello are net/http's own; TCPDialer only replays the hello on
//     a connection with a smaller MSS when the server stays silent.
//   - On a healthy path it is a pass-through after the server's first
//     byte (Read and Write allocate nothing).
//   - Its cost is bounded: a server that answers the hello only after the
//     stall window (250 ms or more) gets one extra connection from a
//     process's first dial, and the hedges to one destination are budgeted.
//
// A caller's own *http.Client ([WithHTTPClient]) is used as given and never
// rewired: fitshake is then the caller's choice. Requests through an HTTP
// proxy (HTTPS_PROXY) are not protected: the first flight on a proxy
// connection is a CONNECT, not a ClientHello, and TCPDialer passes it
// through.
package weather

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/fitshake/fitshake/tlsdial"
)

// Client calls the weather API. It is safe for concurrent use.
type Client struct {
	base *url.URL
	hc   *http.Client
}

// An Option configures a Client.
type Option func(*options)

type options struct {
	hc       *http.Client
	dialer   *tlsdial.TCPDialer
	fitshake bool
	roots    *x509.CertPool
	timeout  time.Duration
}

// WithFitshake makes the client dial with td, for its Logger, Trace, Cache
// or StallWindow. Nil means the zero TCPDialer, the default.
func WithFitshake(td *tlsdial.TCPDialer) Option {
	return func(o *options) { o.dialer, o.fitshake = td, true }
}

// WithoutFitshake makes the client dial as net/http does by default, with
// a net.Dialer: a handshake that meets a path-MTU black hole hangs until
// the timeout.
func WithoutFitshake() Option {
	return func(o *options) { o.fitshake = false }
}

// WithHTTPClient makes the client send its requests with hc, as given:
// neither fitshake nor the other options change it.
func WithHTTPClient(hc *http.Client) Option {
	return func(o *options) { o.hc = hc }
}

// WithRootCAs verifies the server's certificate against roots instead of
// the system's (a private deployment). Nil means the system's.
func WithRootCAs(roots *x509.CertPool) Option {
	return func(o *options) { o.roots = roots }
}

// WithTimeout bounds each call, dial included. Zero means 30 s.
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}

// New returns a client of the API at baseURL (https://host[:port][/path]).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("weather: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("weather: base URL %q is not https://host", baseURL)
	}
	o := options{fitshake: true, timeout: 30 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	hc := o.hc
	if hc == nil {
		hc = o.httpClient()
	}
	return &Client{base: u, hc: hc}, nil
}

// httpClient builds the client's own http.Client: net/http's default
// transport (proxies from the environment, HTTP/2, its timeouts), dialing
// with fitshake unless turned off.
func (o *options) httpClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.fitshake {
		td := o.dialer
		if td == nil {
			td = &tlsdial.TCPDialer{}
		}
		tr.DialContext = td.DialContext
	}
	if o.roots != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: o.roots}
	}
	return &http.Client{Transport: tr, Timeout: o.timeout}
}

// CloseIdleConnections closes the idle connections of the client's
// http.Client.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Conditions are the weather at a place.
type Conditions struct {
	City    string    `json:"city"`
	TempC   float64   `json:"temp_c"`
	Summary string    `json:"summary"`
	Hourly  []float64 `json:"hourly"` // the next hours' temperatures, °C
}

// Current returns the conditions in city now.
func (c *Client) Current(ctx context.Context, city string) (*Conditions, error) {
	u := c.base.JoinPath("v1", "current")
	u.RawQuery = url.Values{"city": {city}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("weather: %w", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("weather: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, &StatusError{Code: resp.StatusCode, Msg: string(msg)}
	}
	var cond Conditions
	if err := json.NewDecoder(resp.Body).Decode(&cond); err != nil {
		return nil, fmt.Errorf("weather: decoding the response: %w", err)
	}
	return &cond, nil
}

// StatusError is a response other than 200 OK.
type StatusError struct {
	Code int    // the HTTP status code
	Msg  string // the start of the body
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("weather: %d %s: %s", e.Code, http.StatusText(e.Code), e.Msg)
}
