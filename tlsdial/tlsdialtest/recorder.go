package tlsdialtest

import (
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"

	"github.com/fitshake/fitshake/tlsdial"
)

// Recorder is an [http.RoundTripper] that remembers, for each response, the
// [tlsdial.Report] of the connection that carried it: a [*tlsdial.Conn]
// (from a [tlsdial.Transport] or a [tlsdial.Dialer] as DialTLSContext), or
// a [*tlsdial.TCPConn] under crypto/tls (a [tlsdial.TCPDialer] as
// DialContext). It learns the connection from [httptrace.ClientTrace]'s
// GotConn, added to each request's context beside any trace already there.
//
// The zero value is ready to use. It is safe for concurrent use. It keeps
// what it recorded for as long as it lives: it is for tests.
type Recorder struct {
	// Transport sends the requests. Nil means http.DefaultTransport.
	Transport http.RoundTripper

	mu      sync.Mutex
	reports map[*http.Response]tlsdial.Report
}

// RoundTrip implements [http.RoundTripper]: it sends req with Transport
// and records the Report of the connection the response came on.
func (r *Recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var conn atomic.Value // net.Conn: GotConn may come from another goroutine
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if i.Conn != nil {
			conn.Store(connBox{i.Conn})
		}
	}}
	traced := req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, err := r.transport().RoundTrip(traced)
	if resp == nil {
		return resp, err
	}
	if resp.Request == traced {
		resp.Request = req
	}
	if c, ok := conn.Load().(connBox); ok {
		if rep, ok := ConnReport(c.Conn); ok {
			r.put(resp, rep)
		}
	}
	return resp, err
}

type connBox struct{ net.Conn }

func (r *Recorder) transport() http.RoundTripper {
	if r.Transport == nil {
		return http.DefaultTransport
	}
	return r.Transport
}

func (r *Recorder) put(resp *http.Response, rep tlsdial.Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reports == nil {
		r.reports = make(map[*http.Response]tlsdial.Report)
	}
	r.reports[resp] = rep
}

// Report returns the Report of the connection that carried resp, and
// false if resp did not come through r or not on a fitshake connection (a
// plain http:// one, say). For a connection used again, it is the Report
// of the dial that made it.
func (r *Recorder) Report(resp *http.Response) (tlsdial.Report, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep, ok := r.reports[resp]
	return rep, ok
}

// ConnReport returns the Report of a fitshake connection: c or a
// connection it wraps (through NetConn methods, as [crypto/tls.Conn] has)
// has a Report method, as [*tlsdial.Conn] and [*tlsdial.TCPConn] do. It
// returns false if none has.
func ConnReport(c net.Conn) (tlsdial.Report, bool) {
	for c != nil {
		if rc, ok := c.(interface{ Report() tlsdial.Report }); ok {
			return rc.Report(), true
		}
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = nc.NetConn()
	}
	return tlsdial.Report{}, false
}
