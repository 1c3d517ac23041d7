package tlsdial

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/net/http2"
	"golang.org/x/net/idna"
)

// Transport is an http.RoundTripper whose HTTPS connections are dialed by
// a Dialer, so that requests survive path-MTU black holes. It speaks
// HTTP/2 or HTTP/1.1 on each connection, as the server chose by ALPN, and
// keeps connections open for reuse (HTTP/1.1: at most two idle per host,
// as in http.DefaultTransport). The zero value is ready to use, with the
// zero Dialer. It is safe for concurrent use. It reads its fields, and
// its Dialer's, at the first request: later changes are ignored.
//
// net/http's Transport cannot do this alone: from DialTLSContext it speaks
// HTTP/2 only on a *tls.Conn (Go 1.26 speaks HTTP/1.1 to an HTTP/2 server
// on any other connection, which fails), and x/net/http2's Transport
// speaks only HTTP/2. Transport remembers per host:port which protocol the
// server chose, sends HTTP/2 requests through an x/net/http2 Transport and
// the others through a net/http Transport, and hands the connection it
// dialed to find out to the one that uses it. Every connection offers "h2"
// and "http/1.1", whatever Dialer.Config.NextProtos says. When a new
// connection comes back with the other protocol (the server was upgraded
// or downgraded), Transport remembers that, gives the connection to the
// other side and sends the request again, if its body can be resent (no
// body, or GetBody set, as http.NewRequest does). HTTP/1.1 is never spoken
// on a connection that negotiated HTTP/2.
//
// To see each dial's Report, set Dialer.Trace, or attach a Trace to the
// request's context with WithTrace.
//
// Transport does not use HTTP proxies: there is no Proxy field, and the
// HTTP_PROXY and HTTPS_PROXY environment variables are ignored. http://
// requests use HTTP/1.1 over plain TCP connections from Dialer.NetDialer,
// without black-hole recovery (there is no ClientHello to watch). It does
// not speak unencrypted HTTP/2 or HTTP/3, and its connections do not
// resume TLS sessions (see Dialer.Config); net/http's Transport over a
// TCPDialer does both.
type Transport struct {
	// Dialer dials the HTTPS connections. Nil means the zero Dialer. Its
	// Config is cloned, never modified; its NetDialer, if set, also dials
	// http:// connections.
	Dialer *Dialer

	// TLSHandshakeTimeout bounds each HTTPS dial: the TCP connect, the
	// handshake and every redial fitshake makes after a stall. Zero means
	// 10 s, as in http.DefaultTransport; negative means no bound other
	// than the request's context. A dial that meets a black hole needs
	// at least one stall window (250 ms or more) before its redial.
	//
	// A request's context ends the dial that learns a server's protocol.
	// Later dials belong to the connection pools and, as in net/http, may
	// continue after their request is cancelled so that another request
	// can use the connection; this timeout bounds them, and
	// CloseIdleConnections cancels those no request waits for.
	TLSHandshakeTimeout time.Duration

	// IdleConnTimeout is how long a connection may stay idle before it is
	// closed. Zero means 90 s, as in http.DefaultTransport; negative means
	// no limit.
	IdleConnTimeout time.Duration

	once sync.Once
	d    *Dialer // a copy of Dialer, with the Transport's Config
	h1   *http.Transport
	h2   *http2.Transport

	mu       sync.Mutex
	protos   map[string]string     // host:port → what its last new connection negotiated
	learning map[string]*learnCall // host:port → the first dial in progress
	stash    map[stashKey][]*stashed
}

const (
	protoH2 = "h2"
	protoH1 = "http/1.1" // also for connections without ALPN

	// The defaults of http.DefaultTransport, which users compare with.
	defaultTLSHandshakeTimeout = 10 * time.Second
	defaultIdleConnTimeout     = 90 * time.Second

	// maxProtocolRetries bounds the resends of one request whose new
	// connection came back with the other protocol. One is a server that
	// changed; more in a row is a load balancer alternating between
	// backends, where failing beats looping.
	maxProtocolRetries = 2

	// maxRemembered bounds the protocols remembered. Forgetting one costs
	// little: the connection dialed to learn it again is used.
	maxRemembered = 1024

	// stashTTL is how long a dialed connection waits for the transport it
	// was handed to. That transport normally takes it at once; the bound
	// closes a connection nobody came for (its request was cancelled, or
	// another connection was free by then).
	stashTTL = 5 * time.Second
)

// init builds the two transports on first use.
func (t *Transport) init() {
	t.once.Do(func() {
		t.d = t.dialerWithConfig()
		t.h1 = &http.Transport{
			DialContext:           t.plainDialer(),
			DialTLSContext:        t.dialH1,
			TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{}, // never HTTP/2
			MaxIdleConns:          100,
			IdleConnTimeout:       t.idleConnTimeout(),
			ExpectContinueTimeout: time.Second,
		}
		// x/net/http2.Transport is deprecated for net/http's, but net/http
		// speaks HTTP/2 on a connection that is not a *tls.Conn only from
		// Go 1.27 on.
		t.h2 = &http2.Transport{
			DialTLSContext:  t.dialH2,
			IdleConnTimeout: t.idleConnTimeout(),
		}
	})
}

// dialerWithConfig returns a copy of the Dialer whose Config offers h2 and
// http/1.1, leaving the caller's untouched.
func (t *Transport) dialerWithConfig() *Dialer {
	var d Dialer
	if t.Dialer != nil {
		d = *t.Dialer
	}
	cfg := &tls.Config{}
	if d.Config != nil {
		cfg = d.Config.Clone()
	}
	cfg.NextProtos = []string{protoH2, protoH1}
	d.Config = cfg
	return &d
}

// plainDialer dials http:// connections: with Dialer.NetDialer, or as
// http.DefaultTransport does.
func (t *Transport) plainDialer() func(context.Context, string, string) (net.Conn, error) {
	if t.d.NetDialer != nil {
		return t.d.NetDialer.DialContext
	}
	return (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
}

func (t *Transport) handshakeTimeout() time.Duration {
	if t.TLSHandshakeTimeout == 0 {
		return defaultTLSHandshakeTimeout
	}
	return max(t.TLSHandshakeTimeout, 0)
}

func (t *Transport) idleConnTimeout() time.Duration {
	if t.IdleConnTimeout == 0 {
		return defaultIdleConnTimeout
	}
	return max(t.IdleConnTimeout, 0) // 0 is "no limit" to both transports
}

// RoundTrip implements http.RoundTripper: it sends req over HTTP/2 or
// HTTP/1.1, as the server negotiated, on a pooled or new connection.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.init()
	if req.URL == nil || req.URL.Scheme != "https" || req.URL.Host == "" {
		// http://, and requests net/http rejects with its own error.
		return t.h1.RoundTrip(req)
	}
	return t.roundTripTLS(req, canonicalAddr(req.URL))
}

// handoff is a connection put in the stash for a transport to take.
type handoff struct {
	k stashKey
	c net.Conn
}

// roundTripTLS routes req to addr's protocol, learning it first if need
// be, and resends it when a new connection came back with the other one.
func (t *Transport) roundTripTLS(req *http.Request, addr string) (*http.Response, error) {
	orig := req
	var handed []handoff // stashed for this request: closed if still there after its send
	defer func() { t.discard(handed...) }()
	for try := 0; ; try++ {
		proto, learned, err := t.route(req.Context(), addr)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		handed = append(handed, learned)
		resp, err := t.via(proto, req)
		t.discard(handed...)
		handed = handed[:0]
		var pc *protocolChangedError
		if err == nil || try == maxProtocolRetries || !errors.As(err, &pc) {
			if resp != nil {
				resp.Request = orig
			}
			return resp, err
		}
		handed = append(handed, pc.conn)
		closeBody(req) // the transport may not have
		if req, err = rewound(req); err != nil {
			return nil, fmt.Errorf("%w; %w", pc, err)
		}
	}
}

// via sends req through the transport for proto.
func (t *Transport) via(proto string, req *http.Request) (*http.Response, error) {
	if proto == protoH2 {
		return t.h2.RoundTrip(req)
	}
	return t.roundTripH1(req)
}

type connectionStater interface {
	ConnectionState() tls.ConnectionState
}

// roundTripH1 sends req through the HTTP/1.1 transport and fills
// Response.TLS, which net/http (before Go 1.27) leaves nil for connections
// that are not *tls.Conn.
func (t *Transport) roundTripH1(req *http.Request) (*http.Response, error) {
	var state atomic.Pointer[tls.ConnectionState]
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if cs, ok := i.Conn.(connectionStater); ok {
			s := cs.ConnectionState()
			state.Store(&s)
		}
	}}
	resp, err := t.h1.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	if resp != nil && resp.TLS == nil {
		resp.TLS = state.Load()
	}
	return resp, err
}

// learnCall is the first dial to a host:port whose protocol is unknown;
// other requests to it wait for it rather than dial as well.
type learnCall struct {
	ctx  context.Context // the learner's request's
	done chan struct{}
	err  error // set before done closes
}

// route returns addr's protocol. When it is unknown, route dials to learn
// it and returns that connection too, stashed for the transport that will
// use it, or waits for a dial already learning it.
func (t *Transport) route(ctx context.Context, addr string) (proto string, learned handoff, err error) {
	for {
		t.mu.Lock()
		if p, ok := t.protos[addr]; ok {
			t.mu.Unlock()
			return p, handoff{}, nil
		}
		call, waiting := t.learning[addr]
		if !waiting {
			call = &learnCall{ctx: ctx, done: make(chan struct{})}
			if t.learning == nil {
				t.learning = make(map[string]*learnCall)
			}
			t.learning[addr] = call
		}
		t.mu.Unlock()
		if !waiting {
			return t.learn(ctx, addr, call)
		}
		select {
		case <-call.done:
		case <-ctx.Done():
			return "", handoff{}, fmt.Errorf("tlsdial: waiting for the first dial to %s: %w", addr, ctx.Err())
		}
		if call.err != nil && call.ctx.Err() == nil {
			return "", handoff{}, call.err // the server's answer, not the learner's cancellation
		}
	}
}

// learn makes the first dial to addr for call and stashes the connection.
func (t *Transport) learn(ctx context.Context, addr string, call *learnCall) (string, handoff, error) {
	c, proto, err := t.dial(ctx, addr)
	var h handoff
	if err == nil {
		h = handoff{stashKey{proto, addr}, c}
		t.put(h) // before remember: whoever routes by it finds the connection
		t.remember(addr, proto)
	}
	t.mu.Lock()
	delete(t.learning, addr)
	t.mu.Unlock()
	call.err = err
	close(call.done)
	return proto, h, err
}

// dialH1 is the HTTP/1.1 transport's DialTLSContext.
func (t *Transport) dialH1(ctx context.Context, _, addr string) (net.Conn, error) {
	return t.dialFor(ctx, protoH1, addr)
}

// dialH2 is the HTTP/2 transport's DialTLSContext.
func (t *Transport) dialH2(ctx context.Context, _, addr string, _ *tls.Config) (net.Conn, error) {
	return t.dialFor(ctx, protoH2, addr)
}

// dialFor returns a connection to addr that negotiated want: a stashed
// one, or a new one. A new one that negotiated the other protocol is
// stashed for the other transport, and a *protocolChangedError returned.
func (t *Transport) dialFor(ctx context.Context, want, addr string) (net.Conn, error) {
	if c := t.take(stashKey{want, addr}); c != nil {
		return c, nil
	}
	c, got, err := t.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	if got == want {
		t.remember(addr, got)
		return c, nil
	}
	h := handoff{stashKey{got, addr}, c}
	t.put(h)
	t.remember(addr, got)
	return nil, &protocolChangedError{addr: addr, want: want, conn: h}
}

// dial makes a connection to addr within the handshake timeout and
// returns it with the protocol the server chose.
func (t *Transport) dial(ctx context.Context, addr string) (net.Conn, string, error) {
	dctx := ctx
	timeout := t.handshakeTimeout()
	if timeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	c, err := t.d.DialContext(dctx, "tcp", addr)
	if err != nil {
		if ctx.Err() == nil && dctx.Err() != nil {
			return nil, "", &handshakeTimeoutError{timeout, err}
		}
		return nil, "", err
	}
	return c, negotiated(c), nil
}

// negotiated returns the protocol c negotiated: protoH2, or protoH1 for
// anything else, no ALPN included.
func negotiated(c net.Conn) string {
	if cs, ok := c.(connectionStater); ok && cs.ConnectionState().NegotiatedProtocol == protoH2 {
		return protoH2
	}
	return protoH1
}

// remember records that addr's newest connection negotiated proto.
func (t *Transport) remember(addr, proto string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.protos == nil {
		t.protos = make(map[string]string)
	}
	if _, ok := t.protos[addr]; !ok && len(t.protos) >= maxRemembered {
		for k := range t.protos {
			delete(t.protos, k) // any one: it is relearned at no cost
			break
		}
	}
	t.protos[addr] = proto
}

// The stash holds connections dialed for one transport and handed to
// another (the learning dial's, and those that came back with the other
// protocol), until that transport's dial takes them.

type stashKey struct{ proto, addr string }

type stashed struct {
	c     net.Conn
	timer *time.Timer // closes c if nobody takes it
}

// put stashes h.c for the transport of h.k.proto.
func (t *Transport) put(h handoff) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stash == nil {
		t.stash = make(map[stashKey][]*stashed)
	}
	e := &stashed{c: h.c, timer: time.AfterFunc(stashTTL, func() { t.discard(h) })}
	t.stash[h.k] = append(t.stash[h.k], e)
}

// take removes and returns the newest connection stashed under k, or nil.
func (t *Transport) take(k stashKey) net.Conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	list := t.stash[k]
	if len(list) == 0 {
		return nil
	}
	e := list[len(list)-1]
	t.unstashLocked(k, len(list)-1)
	return e.c
}

// discard closes the connections of hs that are still stashed. Zero
// handoffs are skipped.
func (t *Transport) discard(hs ...handoff) {
	for _, h := range hs {
		if h.c != nil && t.unstash(h) {
			h.c.Close()
		}
	}
}

// unstash removes h from the stash and reports whether it was there.
func (t *Transport) unstash(h handoff) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := slices.IndexFunc(t.stash[h.k], func(e *stashed) bool { return e.c == h.c })
	if i >= 0 {
		t.unstashLocked(h.k, i)
	}
	return i >= 0
}

// unstashLocked removes entry i of k and stops its timer.
func (t *Transport) unstashLocked(k stashKey, i int) {
	t.stash[k][i].timer.Stop()
	t.stash[k] = slices.Delete(t.stash[k], i, i+1)
	if len(t.stash[k]) == 0 {
		delete(t.stash, k)
	}
}

// CloseIdleConnections closes the connections that are not carrying a
// request: idle HTTP/1.1 and HTTP/2 connections, and any connection
// dialed but not yet handed to its transport. It does not interrupt
// requests in flight.
func (t *Transport) CloseIdleConnections() {
	t.init()
	t.h1.CloseIdleConnections()
	t.h2.CloseIdleConnections()
	t.mu.Lock()
	stash := t.stash
	t.stash = nil
	for _, list := range stash {
		for _, e := range list {
			e.timer.Stop()
		}
	}
	t.mu.Unlock()
	for _, list := range stash {
		for _, e := range list {
			e.c.Close()
		}
	}
}

// protocolChangedError is returned to a transport whose new connection
// negotiated the other protocol; Transport then resends the request.
type protocolChangedError struct {
	addr string
	want string  // what the transport dialing speaks
	conn handoff // the connection, stashed for the other transport
}

func (e *protocolChangedError) Error() string {
	return fmt.Sprintf("tlsdial: %s negotiated %s on a new connection, not %s", e.addr, e.conn.k.proto, e.want)
}

// handshakeTimeoutError is a dial ended by TLSHandshakeTimeout. It is a
// net.Error with Timeout true, as net/http's own, so that url.Error's
// Timeout sees it.
type handshakeTimeoutError struct {
	timeout time.Duration
	err     error // the *DialError
}

var _ net.Error = (*handshakeTimeoutError)(nil)

func (e *handshakeTimeoutError) Error() string {
	return fmt.Sprintf("tlsdial: TLS handshake timeout (%s): %v", e.timeout, e.err)
}

func (e *handshakeTimeoutError) Unwrap() error   { return e.err }
func (e *handshakeTimeoutError) Timeout() bool   { return true }
func (e *handshakeTimeoutError) Temporary() bool { return true }

// rewound returns req ready to be sent again, with a fresh body.
func rewound(req *http.Request) (*http.Request, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return req, nil
	}
	if req.GetBody == nil {
		return nil, errors.New("tlsdial: the request body cannot be resent (no GetBody)")
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, fmt.Errorf("tlsdial: resending the request body: %w", err)
	}
	r := req.WithContext(req.Context()) // a shallow copy
	r.Body = body
	return r, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// canonicalAddr returns u's host:port as both transports key their
// connections: default port 443, non-ASCII names in IDNA form.
func canonicalAddr(u *url.URL) string {
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "443"
	}
	if !isASCII(host) {
		if a, err := idna.Lookup.ToASCII(host); err == nil && a != "" {
			host = a
		}
	}
	return net.JoinHostPort(host, port)
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
