package diagpage

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// Defaults of the Handler's zero fields.
const (
	// DefaultMaxConns is Handler.MaxConns's default: the page runs at most
	// four probes at once; two more leave room for a reload while the
	// last probes of a run still hold their connections.
	DefaultMaxConns = 6
	// DefaultMaxBytes is Handler.MaxBytes's default: one run of the page
	// (the page, some 30 probes of at most 1500 bytes each way, the
	// summary) exchanges about 50 KB; this allows about 20 runs a minute.
	DefaultMaxBytes = 1 << 20
	// DefaultMaxClients is Handler.MaxClients's default.
	DefaultMaxClients = 10000
	// MaxAckTimeout bounds the adaptive Handler.AckTimeout.
	MaxAckTimeout = 3 * time.Second
)

// Handler serves the diagnostic page and its probes; see the package
// documentation. Mount it on a pattern ending in "/" (its probes are
// relative to the page: "up", "down" and "verdict" beside it), on a
// plain-HTTP server that browsers reach directly. Any other path under it
// serves the page.
//
// The zero value is ready to use. It is safe for concurrent use; do not
// change its fields once it serves.
type Handler struct {
	// MaxConns is the most connections one client (an IPv4 address, an
	// IPv6 /64) may hold in the handler at once; more get 429 Too Many
	// Requests. Zero means DefaultMaxConns; it should stay at 4 or more,
	// the page's own concurrency.
	MaxConns int

	// MaxBytes is the most bytes one client may exchange with the handler
	// per minute, requests and responses counted; once over, it gets 429
	// until the minute is up. Zero means DefaultMaxBytes.
	MaxBytes int64

	// MaxClients is the most clients the handler keeps count of at once;
	// when that many have connections or bytes counted in their current
	// minute, new clients get 429. Zero means DefaultMaxClients.
	MaxClients int

	// AckTimeout is how long the server waits for the browser to
	// acknowledge a downstream probe before it judges the probe lost and
	// resets the connection. Zero means four times the connection's
	// round-trip time (from its handshake) plus 400 ms (a browser's delayed
	// ACK takes up to 200 ms), at most MaxAckTimeout. Without TCP_INFO
	// (not Linux) the browser's own timeout decides instead.
	AckTimeout time.Duration

	once sync.Once
	lim  *limiter
	now  func() time.Time // nil: time.Now; set by tests
}

// capabilities are what the platform lets the handler measure.
type capabilities struct {
	// tcpInfo: TCP_INFO on the browser's connection (bytes and segments
	// received, bytes acknowledged, send MSS).
	tcpInfo bool
}

func (h *Handler) init() {
	now := h.now
	if now == nil {
		now = time.Now
	}
	h.lim = &limiter{
		maxConns:   orDefault(h.MaxConns, DefaultMaxConns),
		maxBytes:   orDefault(h.MaxBytes, DefaultMaxBytes),
		maxClients: orDefault(h.MaxClients, DefaultMaxClients),
		now:        now,
		clients:    map[netip.Prefix]*client{},
	}
}

func orDefault[T int | int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// ServeHTTP serves the page, or one of its probes or its summary.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.once.Do(h.init)
	endpoint := path.Base(r.URL.Path)
	switch endpoint {
	case "up", "down", "verdict":
	default:
		endpoint = "page"
	}
	if r.Method != http.MethodGet && (r.Method != http.MethodHead || endpoint != "page") {
		allow := "GET"
		if endpoint == "page" {
			allow = "GET, HEAD"
		}
		w.Header().Set("Allow", allow)
		http.Error(w, "diagpage: method not allowed", http.StatusMethodNotAllowed)
		return
	}
	key := clientKey(r.RemoteAddr)
	if !h.lim.admit(key) {
		w.Header().Set("Retry-After", "60")
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "diagpage: too many probes from your address; try again in a minute", http.StatusTooManyRequests)
		return
	}
	defer h.lim.done(key)
	h.lim.charge(key, requestLen(r))
	ex := &exchange{h: h, w: w, r: r, key: key}
	switch endpoint {
	case "up":
		ex.up()
	case "down":
		ex.down()
	case "verdict":
		ex.verdict()
	default:
		ex.page()
	}
}

// exchange is one request to the handler.
type exchange struct {
	h   *Handler
	w   http.ResponseWriter
	r   *http.Request
	key netip.Prefix
}

// Sizes of the exchanges.
const (
	// maxPacket is the largest probe: Ethernet's MTU.
	maxPacket = 1500
	// minDown is the smallest downstream probe (its response head must
	// fit its first segment, on IPv6 too).
	minDown = 300
	// chunk is the most bytes written at once outside probes: a packet
	// of 532 bytes on IPv4 and 552 on IPv6 with timestamps, under the 576
	// that every IPv4 path must carry (and an IPv6 path cut as short).
	chunk = 480
	// tailLen is the length of a downstream probe's tail, the JSON that
	// tells the page the outcome, padded with spaces (one more byte in
	// some probes; see probeHead).
	tailLen = 96
	// writeBudget bounds the time to write a page or a summary.
	writeBudget = 20 * time.Second
	// probeBudget bounds a probe's connection, AckTimeout included.
	probeBudget = 10 * time.Second
)

// errNoHijack reports a ResponseWriter that cannot hand over its
// connection (HTTP/2, or a wrapper without Hijack).
var errNoHijack = errors.New("diagpage: the probes need an HTTP/1.1 connection to the browser (no HTTP/2, no proxy)")

// hijack takes the connection over from net/http, with a deadline of d for
// everything that follows. A TLS connection is refused, the page too: TLS
// records would skew every size (the refusal has been written then, and
// the returned error is non-nil).
func (ex *exchange) hijack(d time.Duration) (net.Conn, error) {
	if ex.r.TLS != nil {
		http.Error(ex.w, "diagpage: the probes need plain HTTP: TLS records would skew every size", http.StatusNotImplemented)
		return nil, errors.New("diagpage: TLS")
	}
	c, _, err := http.NewResponseController(ex.w).Hijack()
	if err != nil {
		http.Error(ex.w, errNoHijack.Error(), http.StatusNotImplemented)
		return nil, errNoHijack
	}
	c.SetDeadline(time.Now().Add(d))
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	return c, nil
}

// header returns an HTTP/1.1 response head for a body of n bytes.
func header(status int, ctype string, n int) []byte {
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
		status, http.StatusText(status), ctype, n)
}

// reply writes a whole response on a hijacked connection, chunk bytes at
// a time (see writeSmall), and closes it; HEAD gets the head only.
func (ex *exchange) reply(c net.Conn, ctype string, body []byte) {
	defer c.Close()
	b := header(http.StatusOK, ctype, len(body))
	if ex.r.Method != http.MethodHead {
		b = append(b, body...)
	}
	n, _ := writeSmall(c, b)
	ex.h.lim.charge(ex.key, n)
}

// page serves the page.
func (ex *exchange) page() {
	c, err := ex.hijack(writeBudget)
	if err != nil {
		return
	}
	ex.reply(c, "text/html; charset=utf-8", pageHTML(ex.h.pageConfig()))
}

// pageConfig is what the page's script learns of the server.
type pageConfig struct {
	TCPInfo  bool   `json:"tcpinfo"`    // sizes exact, PMTUD visible, losses judged by the server
	AckMaxMS int64  `json:"ack_max_ms"` // the longest a downstream probe waits for its ACK
	MinDown  int    `json:"min_down"`   // the smallest downstream probe
	Max      int    `json:"max"`        // the largest probe
	OS       string `json:"os"`
}

func (h *Handler) pageConfig() pageConfig {
	ack := MaxAckTimeout
	if h.AckTimeout > 0 {
		ack = h.AckTimeout
	}
	return pageConfig{TCPInfo: platform.tcpInfo, AckMaxMS: ack.Milliseconds(), MinDown: minDown,
		Max: maxPacket, OS: runtime.GOOS}
}

// upResult is an upstream probe's answer: what arrived.
type upResult struct {
	// Size is the request's size as one IP packet: its bytes plus the
	// IP and TCP headers (timestamps included when in use).
	Size int `json:"size"`
	// Max is the largest packet that carried it: Size when it came in one
	// segment.
	Max int `json:"max"`
	// Segs is how many segments it came in (0: unknown, no TCP_INFO).
	Segs int `json:"segs"`
	// Split reports that it came in more than one segment: the browser's
	// kernel sent smaller ones than the request (path-MTU discovery, or
	// the server's smaller MSS).
	Split bool `json:"split"`
}

// up answers an upstream probe with what arrived.
func (ex *exchange) up() {
	c, err := ex.hijack(probeBudget)
	if err != nil {
		return
	}
	res := measureRequest(c, ex.r)
	body, _ := json.Marshal(res)
	ex.reply(c, "application/json", body)
}

// downTail is a downstream probe's tail: the outcome, once the first
// segment was acknowledged.
type downTail struct {
	OK bool `json:"ok"`
	// Max is the largest packet the server's kernel sent it in: the probe's
	// size, or less when it had to split it (Split).
	Max   int  `json:"max"`
	Split bool `json:"split"`
	// Judged reports that the server saw the ACK (TCP_INFO); false: it
	// cannot tell, and sent the tail at once.
	Judged bool `json:"judged"`
}

// down sends a downstream probe: a first segment that is one packet of the
// size asked for, then the tail once the browser acknowledged it, or a
// reset when it did not in time.
func (ex *exchange) down() {
	size, err := strconv.Atoi(ex.r.URL.Query().Get("s"))
	if err != nil || size < minDown || size > maxPacket {
		http.Error(ex.w, fmt.Sprintf("diagpage: s must be a packet size in %d..%d", minDown, maxPacket), http.StatusBadRequest)
		return
	}
	c, err := ex.hijack(probeBudget)
	if err != nil {
		return
	}
	n := sendProbe(c, size, ex.h.AckTimeout)
	ex.h.lim.charge(ex.key, n)
}

// probeHead builds the head and padding of a downstream probe: exactly
// first bytes, declaring a body of the padding plus a tail of the returned
// length (tailLen, or one more where the Content-Length's digits leave no
// exact fit: at 999 and 1000 bytes). It returns nil when first cannot hold
// a head.
func probeHead(first int) ([]byte, int) {
	for tail := tailLen; tail <= tailLen+1; tail++ {
		// The head's length depends on the Content-Length's digits.
		pad := first
		for range 3 {
			pad = first - len(header(http.StatusOK, "text/plain", pad+tail))
		}
		h := header(http.StatusOK, "text/plain", pad+tail)
		if pad < 0 || len(h)+pad != first {
			continue
		}
		b := make([]byte, first)
		copy(b, h)
		for i := len(h); i < first; i++ {
			b[i] = 'x'
		}
		return b, tail
	}
	return nil, 0
}

// encodeTail returns t's JSON padded with spaces to n bytes (n ≥ tailLen
// holds any downTail).
func encodeTail(t downTail, n int) []byte {
	b, _ := json.Marshal(t)
	for len(b) < n {
		b = append(b, ' ')
	}
	return b[:n]
}

// summaryReply is what the page shows at the end.
type summaryReply struct {
	// Summary is the verdict.Summary, as the diagnose command's -json.
	Summary json.RawMessage `json:"summary"`
	// Headline and Lines say it in words.
	Headline string   `json:"headline"`
	Lines    []string `json:"lines"`
}

// verdict turns the page's findings into the summary.
func (ex *exchange) verdict() {
	q := ex.r.URL.Query()
	dir := func(limit, how string) direction {
		v, _ := strconv.Atoi(limit)
		d := direction{Limit: v, How: how}
		if !d.valid() {
			return direction{}
		}
		return d
	}
	up, down := dir(q.Get("up"), q.Get("us")), dir(q.Get("down"), q.Get("ds"))
	c, err := ex.hijack(writeBudget)
	if err != nil {
		return
	}
	ipv6 := isIPv6(c)
	s := summarize(up, down, ipv6)
	raw, _ := json.Marshal(s)
	head, lines := explain(s, up, down, ipv6, platform)
	body, _ := json.Marshal(summaryReply{Summary: raw, Headline: head, Lines: lines})
	ex.reply(c, "application/json", body)
}

// isIPv6 reports whether c runs over IPv6 (an IPv4-mapped address counts
// as IPv4).
func isIPv6(c net.Conn) bool {
	a, ok := c.LocalAddr().(*net.TCPAddr)
	return ok && a.IP.To4() == nil
}

// requestLen is the length of r's head as the browser sent it, rebuilt
// from what net/http parsed (header names keep their length when
// canonicalized; net/http moves Host out of the header map).
func requestLen(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2
	if r.Host != "" {
		n += len("Host: ") + len(r.Host) + 2
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n + 2
}
