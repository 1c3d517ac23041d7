package tlsdial

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/fitshake/fitshake/pmtu"
)

// TCPDialer is a drop-in for net.Dialer.DialContext under TLS stacks that
// fitshake does not control: crypto/tls inside net/http, gRPC, database
// drivers. The zero value is ready to use and it is safe for concurrent use.
//
// The connections it returns watch their first flight. If that flight is a
// single complete TLS ClientHello and the server sends nothing back within
// the stall window, the connection redials with a smaller MSS and replays
// the exact same ClientHello bytes, invisibly to the TLS stack above, within
// the deadlines that stack set. Nothing that is not a ClientHello is ever
// replayed, nor anything after the first byte from the server; from then on
// the connection is a plain pass-through.
//
// With net/http:
//
//	td := &tlsdial.TCPDialer{}
//	tr := &http.Transport{DialContext: td.DialContext, ForceAttemptHTTP2: true}
type TCPDialer struct {
	// NetDialer dials the TCP connections. Nil means the zero net.Dialer.
	// Its Control or ControlContext still runs, after the MSS clamp.
	NetDialer *net.Dialer

	// Trace receives the connection's events. Nil means none; a Trace
	// attached to the dial's context with WithTrace is called as well.
	Trace *Trace

	// Logger receives a line per stall and recovery (Info) and per attempt
	// (Debug). Nil means no logging.
	Logger *slog.Logger

	// Cache remembers what worked per destination. Nil means
	// pmtu.DefaultCache.
	Cache *pmtu.Cache

	// StallWindow is how long the server may stay silent after the
	// ClientHello. Zero means four times the connect round trip, at least
	// 250 ms and at most 3 s. Negative disables replay: the connections
	// are plain TCP connections with the remembered MSS clamp.
	StallWindow time.Duration

	// MaxAttempts bounds the connections one dial may open. Zero means one
	// per MSS step of the ladder.
	MaxAttempts int
}

func (d *TCPDialer) netDialer() *net.Dialer {
	if d.NetDialer != nil {
		return d.NetDialer
	}
	return new(net.Dialer)
}

func (d *TCPDialer) cache() *pmtu.Cache {
	if d.Cache != nil {
		return d.Cache
	}
	return pmtu.DefaultCache
}

// Dial is DialContext with context.Background.
func (d *TCPDialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

// DialContext connects to addr on the named network ("tcp", "tcp4" or
// "tcp6"). The returned net.Conn is a *TCPConn. ctx bounds the connect; the
// redials a stall triggers later are bounded by the deadlines set on the
// connection and end when it is closed.
func (d *TCPDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if ctx == nil {
		panic("tlsdial: nil context")
	}
	s := &session{
		network: network,
		addr:    addr,
		cache:   d.cache(),
		key:     cacheKey(network, addr),
		traces:  collectTraces(d.Trace, ctx),
		log:     loggerOr(d.Logger),
		start:   time.Now(),
	}
	s.lad = newLadder(defaultMTUs, 1, d.MaxAttempts)
	if err := checkNetwork(network); err != nil {
		return nil, s.failed(err)
	}
	if err := s.prepare(ctx); err != nil {
		return nil, s.failed(err)
	}
	st, ok := s.begin(ctx)
	if !ok {
		return nil, s.failed(ctx.Err())
	}
	s.attemptStart(st, 0, false)
	nd := d.netDialer()
	raw, a, err := dialAttempt(ctx, nd, s, st, d.StallWindow)
	if err != nil {
		s.record(a)
		return nil, s.failed(err)
	}
	// Redials outlive the dial's context (net/http may cancel it once the
	// dial returns) but keep its values, for traces and loggers.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &TCPConn{
		s:        s,
		nd:       nd,
		window:   d.StallWindow,
		ctx:      rctx,
		cancel:   cancel,
		conn:     raw,
		step:     st,
		att:      a,
		attOpen:  true,
		attStart: s.start,
	}
	c.rep = s.report
	if d.StallWindow < 0 {
		c.finishLocked(OutcomeOK, nil)
	}
	return c, nil
}

// dialAttempt opens one TCP connection at st and fills in what is known of
// the attempt so far.
func dialAttempt(ctx context.Context, nd *net.Dialer, s *session, st step, window time.Duration) (net.Conn, Attempt, error) {
	t0 := time.Now()
	a := Attempt{MTU: st.mtu}
	raw, rtt, err := connect(ctx, nd, s.network, s.addr, st.mtu)
	if err != nil {
		a.Duration = time.Since(t0)
		a.Outcome, a.Err = outcomeOf(ctx, err), err
		return nil, a, err
	}
	if st.mtu > 0 {
		a.MSS = pmtu.MSSForMTU(st.mtu, remoteIsIPv6(raw))
	}
	a.ConnectRTT = rtt
	a.StallWindow = stallWindow(window, rtt)
	a.Duration = time.Since(t0) // completed when the attempt ends
	return raw, a, nil
}

type connState int

const (
	stateFresh    connState = iota // nothing written or read yet
	stateWatching                  // ClientHello sent, no server byte yet
	statePass                      // plain pass-through
	stateClosed
)

// TCPConn is a connection made by TCPDialer. See TCPDialer for what it does
// with a stalled ClientHello. Its methods are safe for concurrent use as
// those of net.TCPConn are.
type TCPConn struct {
	s      *session // only touched by the goroutine holding rmu, or under mu once passed
	nd     *net.Dialer
	window time.Duration
	ctx    context.Context // redials; canceled by Close
	cancel context.CancelFunc

	rmu sync.Mutex // serializes reads while watching, and the redials they run

	mu       sync.Mutex
	conn     net.Conn
	state    connState
	hello    []byte // the ClientHello to replay
	sentAt   time.Time
	step     step
	att      Attempt // the attempt in progress, if attOpen
	attOpen  bool
	attStart time.Time
	finished bool      // the report is complete
	redial   bool      // a stall closed conn; the next read redials
	rdl, wdl time.Time // the deadlines the stack set
	rep      Report    // snapshot of s.report for Report
}

var _ net.Conn = (*TCPConn)(nil)

// isClientHello reports whether b is exactly one TLS record holding exactly
// one complete ClientHello: only then may it be replayed.
func isClientHello(b []byte) bool {
	if len(b) < 9 || b[0] != 22 || b[1] != 3 || b[5] != 1 {
		return false
	}
	recLen := int(b[3])<<8 | int(b[4])
	hsLen := int(b[6])<<16 | int(b[7])<<8 | int(b[8])
	return len(b) == 5+recLen && recLen == 4+hsLen
}

func (c *TCPConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	switch c.state {
	case stateFresh:
		if isClientHello(b) {
			c.hello = slices.Clone(b)
			c.state = stateWatching
			c.sentAt = time.Now()
			c.att.HelloSize = len(b)
		} else {
			c.finishLocked(OutcomeOK, nil)
		}
	case stateWatching:
		// The stack wrote again before any reply: what is on the wire is
		// no longer a lone ClientHello, so stop watching; nothing will be
		// replayed.
		c.finishLocked(OutcomeOK, nil)
	case stateClosed:
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	conn := c.conn
	c.mu.Unlock()
	return conn.Write(b)
}

func (c *TCPConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	switch c.state {
	case stateFresh: // the server speaks first: nothing to watch
		c.finishLocked(OutcomeOK, nil)
	case stateClosed:
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	watching := c.state == stateWatching
	conn := c.conn
	c.mu.Unlock()
	if !watching {
		return conn.Read(b)
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	n, err := backoff.RetryNotifyWithData(func() (int, error) { return c.readWatching(b) }, pacing(c.ctx), nil)
	if err != nil && c.ctx.Err() != nil {
		err = net.ErrClosed
	}
	return n, err
}

// errStalled asks the retry loop to redial after pacing.
var errStalled = errors.New("tlsdial: stalled, redialing")

// readWatching reads while the first reply is awaited, declaring a stall
// when the window passes before the stack's own deadline.
func (c *TCPConn) readWatching(b []byte) (int, error) {
	c.mu.Lock()
	if c.redial && c.state == stateWatching {
		c.mu.Unlock()
		if err := c.redialOnce(); err != nil {
			return 0, backoff.Permanent(err)
		}
		c.mu.Lock()
	}
	if c.state != stateWatching {
		conn, closed := c.conn, c.state == stateClosed
		c.mu.Unlock()
		if closed {
			return 0, backoff.Permanent(net.ErrClosed)
		}
		n, err := conn.Read(b)
		return n, backoff.Permanent(err)
	}
	conn := c.conn
	stallAt := c.sentAt.Add(c.att.StallWindow)
	dl := stallAt
	if !c.rdl.IsZero() && c.rdl.Before(dl) {
		dl = c.rdl
	}
	conn.SetReadDeadline(dl)
	c.mu.Unlock()

	n, err := conn.Read(b)

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateClosed {
		return n, backoff.Permanent(net.ErrClosed)
	}
	if c.state != stateWatching { // the stack wrote again meanwhile
		conn.SetReadDeadline(c.rdl)
		if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, backoff.Permanent(err)
		}
		return 0, errStalled // read again, now without the stall deadline
	}
	now := time.Now()
	if n > 0 {
		conn.SetReadDeadline(c.rdl)
		c.finishLocked(OutcomeOK, nil)
		return n, backoff.Permanent(err)
	}
	userExpired := !c.rdl.IsZero() && !now.Before(c.rdl)
	if !errors.Is(err, os.ErrDeadlineExceeded) || userExpired || now.Before(stallAt) {
		// EOF, reset, or the stack's own deadline: not ours to hide.
		if !userExpired {
			c.finishLocked(OutcomeError, err)
		}
		return 0, backoff.Permanent(err)
	}
	// Stall.
	silent := now.Sub(c.sentAt)
	serr := &StallError{Addr: c.s.addr, MSS: c.att.MSS, Hello: len(c.hello), Elapsed: silent, Window: c.att.StallWindow}
	c.s.traces.stall(StallInfo{Addr: c.s.addr, Attempt: c.s.lad.attempts, Elapsed: silent, Window: c.att.StallWindow})
	c.conn.Close()
	c.endAttemptLocked(OutcomeStall, serr)
	c.s.log.Debug("tlsdial: replaying ClientHello on a smaller MSS", "addr", c.s.addr)
	c.mu.Unlock()
	more, werr := c.s.stalled(c.ctx)
	c.mu.Lock()
	if werr != nil || !more || c.state != stateWatching {
		return 0, backoff.Permanent(c.finishLocked(OutcomeError, serr))
	}
	c.redial = true
	return 0, errStalled
}

// redialOnce opens the next connection of the ladder and replays the
// ClientHello on it. Called without mu.
func (c *TCPConn) redialOnce() error {
	c.mu.Lock()
	ctx, rdl, wdl := c.ctx, c.rdl, c.wdl
	c.mu.Unlock()
	if !rdl.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, rdl)
		defer cancel()
	}
	st, ok := c.s.begin(ctx)
	if !ok {
		return c.giveUp(ctx.Err())
	}
	c.s.attemptStart(st, len(c.hello), false)
	t0 := time.Now()
	raw, a, err := dialAttempt(ctx, c.nd, c.s, st, c.window)
	if err == nil {
		raw.SetWriteDeadline(wdl)
		if _, err = raw.Write(c.hello); err != nil {
			raw.Close()
			a.Outcome, a.Err = OutcomeError, err
		}
	}
	if err != nil {
		c.s.record(a)
		return c.giveUp(err)
	}
	a.HelloSize = len(c.hello)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateClosed {
		raw.Close()
		return net.ErrClosed
	}
	c.conn, c.step, c.att, c.attOpen, c.attStart = raw, st, a, true, t0
	c.sentAt = time.Now()
	c.redial = false
	return nil
}

func (c *TCPConn) giveUp(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		err = c.s.report.Attempts[len(c.s.report.Attempts)-1].Err
	}
	return c.finishLocked(OutcomeError, err)
}

// endAttemptLocked records the attempt in progress, if there is one.
func (c *TCPConn) endAttemptLocked(o Outcome, err error) {
	if !c.attOpen {
		return
	}
	c.attOpen = false
	c.att.Duration = time.Since(c.attStart)
	c.att.Outcome, c.att.Err = o, err
	c.s.record(c.att)
	c.rep = c.s.report
}

// finishLocked stops watching for good: the attempt in progress ends with
// o, and the dial's report is completed, as a success for OutcomeOK and
// as a failure otherwise, whose *DialError it returns.
func (c *TCPConn) finishLocked(o Outcome, err error) error {
	if c.finished {
		return nil
	}
	c.finished = true
	if c.state != stateClosed {
		c.state = statePass
	}
	c.endAttemptLocked(o, err)
	defer func() { c.rep = c.s.report }()
	if o == OutcomeOK {
		c.s.succeeded(c.step)
		return nil
	}
	return c.s.failed(err)
}

// Close closes the connection and stops any redial in progress.
func (c *TCPConn) Close() error {
	c.mu.Lock()
	if c.state == stateClosed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.state = stateClosed
	conn := c.conn
	c.mu.Unlock()
	c.cancel()
	err := conn.Close()
	if c.rmu.TryLock() {
		// No read is running to complete the report (and end a discovery
		// this dial leads): do it here. A running read does it itself.
		c.mu.Lock()
		c.finishLocked(OutcomeCanceled, net.ErrClosed)
		c.mu.Unlock()
		c.rmu.Unlock()
	}
	return err
}

func (c *TCPConn) LocalAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn.LocalAddr()
}

func (c *TCPConn) RemoteAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn.RemoteAddr()
}

func (c *TCPConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.wdl = t
	c.mu.Unlock()
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.setConnDeadline(func(n net.Conn) error { return n.SetWriteDeadline(t) })
}

func (c *TCPConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rdl = t
	if c.state == stateWatching && !c.sentAt.IsZero() {
		// Keep the stall deadline if it comes first.
		if stallAt := c.sentAt.Add(c.att.StallWindow); t.IsZero() || stallAt.Before(t) {
			t = stallAt
		}
	}
	return c.conn.SetReadDeadline(t)
}

func (c *TCPConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.wdl = t
	c.mu.Unlock()
	return c.setConnDeadline(func(n net.Conn) error { return n.SetWriteDeadline(t) })
}

func (c *TCPConn) setConnDeadline(f func(net.Conn) error) error {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	return f(conn)
}

// NetConn returns the current underlying TCP connection. It changes when a
// stall redials.
func (c *TCPConn) NetConn() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

// Report describes the attempts so far. It is complete once the server's
// first byte has arrived (after the TLS handshake, for a TLS stack above).
func (c *TCPConn) Report() Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rep
	r.Attempts = slices.Clone(r.Attempts)
	return r
}
