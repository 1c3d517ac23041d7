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

	// TimerOnly disables reading TCP_INFO; see Dialer.TimerOnly.
	TimerOnly bool
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
	s := newSession(ctx, network, addr, d.Cache, d.Trace, d.Logger)
	mtus, _ := ladderMTUs()
	s.lad = newLadder(mtus, 0, 1, d.MaxAttempts)
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
	nd := netDialerOr(d.NetDialer)
	l, err := openLeg(ctx, nd, s, st, d.StallWindow, false)
	if err != nil {
		s.record(l.a)
		return nil, s.failed(err)
	}
	l.start = s.start
	// Redials outlive the dial's context (net/http may cancel it once the
	// dial returns) but keep its values, for traces and loggers.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &TCPConn{
		s:         s,
		nd:        nd,
		window:    d.StallWindow,
		timerOnly: d.TimerOnly,
		ctx:       rctx,
		cancel:    cancel,
		cur:       l,
	}
	c.rep = s.report
	if d.StallWindow < 0 {
		c.finishLocked(OutcomeOK, nil)
	}
	return c, nil
}

// leg is one connection of a TCPConn's dial: the current one, or a hedge
// racing it.
type leg struct {
	conn  net.Conn
	st    step
	a     Attempt
	start time.Time
	rtt   time.Duration
	mon   *monitor // set once the ClientHello is written on conn
}

// openLeg connects one TCP connection at st and fills in what is known of
// its attempt so far.
func openLeg(ctx context.Context, nd *net.Dialer, s *session, st step, window time.Duration, hedge bool) (*leg, error) {
	l := &leg{st: st, start: time.Now(), a: Attempt{MTU: st.mtu, Hedge: hedge}}
	raw, rtt, err := connect(ctx, nd, s.network, s.addr, st.mtu)
	if err != nil {
		l.a.Duration = time.Since(l.start)
		l.a.Outcome, l.a.Err = outcomeOf(ctx, err), err
		return l, err
	}
	l.conn, l.rtt = raw, rtt
	if st.mtu > 0 {
		l.a.MSS = pmtu.MSSForMTU(st.mtu, remoteIsIPv6(raw))
	}
	l.a.ConnectRTT = rtt
	l.a.StallWindow = stallWindow(window, rtt)
	return l, nil
}

// send writes the ClientHello on l and starts watching it.
func (l *leg) send(hello []byte, wdl time.Time, timerOnly bool) error {
	base, err := pmtu.ReadTCPInfo(l.conn)
	info := err == nil && !timerOnly
	l.conn.SetWriteDeadline(wdl)
	if _, err := l.conn.Write(hello); err != nil {
		return err
	}
	l.a.HelloSize = len(hello)
	l.mon = newMonitor(len(hello), time.Now(), l.rtt, l.a.StallWindow, base, info)
	return nil
}

// observe asks l's monitor what to do now.
func (l *leg) observe(now time.Time) action {
	var ti pmtu.TCPInfo
	if l.mon.info {
		var err error
		if ti, err = pmtu.ReadTCPInfo(l.conn); err != nil {
			return actWait
		}
	}
	return l.mon.observe(now, ti, 0)
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
	s         *session // touched by the goroutine holding rmu, or under mu
	nd        *net.Dialer
	window    time.Duration
	timerOnly bool
	ctx       context.Context // redials; canceled by Close
	cancel    context.CancelFunc

	rmu sync.Mutex // serializes reads while watching, and the redials they run

	mu       sync.Mutex
	state    connState
	cur      *leg   // the connection reads and writes go to
	hedge    *leg   // a clamped connection racing cur, if any
	hedged   bool   // a hedge was started: at most one per dial
	hello    []byte // the ClientHello to replay
	redial   bool   // cur stalled and was closed; the next read redials
	finished bool   // the report is complete
	rdl, wdl time.Time
	rep      Report // snapshot of s.report for Report
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
			err := c.cur.send(c.hello, c.wdl, c.timerOnly)
			c.mu.Unlock()
			if err != nil {
				return 0, err
			}
			return len(b), nil
		}
		c.finishLocked(OutcomeOK, nil)
	case stateWatching:
		// The stack wrote again before any reply: what is on the wire is
		// no longer a lone ClientHello, so stop watching; nothing will be
		// replayed.
		c.finishLocked(OutcomeOK, nil)
	case stateClosed:
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	conn := c.cur.conn
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
	conn := c.cur.conn
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

// hedgePeek is how long a read of the hedge waits: it only collects what
// has already arrived, between two polls of the current connection.
const hedgePeek = 50 * time.Microsecond

// readWatching reads while the first reply is awaited: it polls the
// current connection and any hedge, and acts on what their monitors say.
func (c *TCPConn) readWatching(b []byte) (int, error) {
	c.mu.Lock()
	if c.redial && c.state == stateWatching {
		c.mu.Unlock()
		if err := c.redialOnce(); err != nil {
			return 0, backoff.Permanent(err)
		}
		c.mu.Lock()
	}
	defer c.mu.Unlock()
	for {
		if c.state != stateWatching {
			conn, closed, rdl := c.cur.conn, c.state == stateClosed, c.rdl
			c.mu.Unlock()
			var n int
			err := net.ErrClosed
			if !closed {
				conn.SetReadDeadline(rdl)
				n, err = conn.Read(b)
			}
			c.mu.Lock()
			return n, backoff.Permanent(err)
		}
		cur, hedge := c.cur, c.hedge
		dl := time.Now().Add(cur.mon.interval())
		if !c.rdl.IsZero() && c.rdl.Before(dl) {
			dl = c.rdl
		}
		cur.conn.SetReadDeadline(dl)
		c.mu.Unlock()
		winner := cur
		n, err := cur.conn.Read(b)
		if n == 0 && hedge != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			hedge.conn.SetReadDeadline(time.Now().Add(hedgePeek))
			var herr error
			if n, herr = hedge.conn.Read(b); n > 0 {
				winner, err = hedge, nil
			} else if !errors.Is(herr, os.ErrDeadlineExceeded) {
				c.mu.Lock()
				c.dropHedgeLocked(OutcomeError, herr)
				c.mu.Unlock()
			}
		}
		c.mu.Lock()
		switch {
		case c.state == stateClosed:
			return n, backoff.Permanent(net.ErrClosed)
		case c.state != stateWatching: // the stack wrote again meanwhile
			if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
				return n, backoff.Permanent(err)
			}
			continue
		case n > 0:
			if winner == hedge {
				c.abortLegLocked(cur, OutcomeSuperseded, errSuperseded)
				c.cur, c.hedge = hedge, nil
			} else {
				c.dropHedgeLocked(OutcomeSuperseded, errSuperseded)
			}
			c.cur.conn.SetReadDeadline(c.rdl)
			c.finishLocked(OutcomeOK, nil)
			return n, backoff.Permanent(err)
		case !errors.Is(err, os.ErrDeadlineExceeded):
			// EOF or reset: not ours to hide.
			c.dropHedgeLocked(OutcomeSuperseded, errSuperseded)
			return 0, backoff.Permanent(c.finishLocked(OutcomeError, err))
		}
		now := time.Now()
		if !c.rdl.IsZero() && !now.Before(c.rdl) {
			return 0, backoff.Permanent(err) // the stack's own deadline
		}
		if h := c.hedge; h != nil && h.observe(now) == actStall {
			c.stallLegLocked(h, now)
			c.hedge = nil
		}
		switch cur.observe(now) {
		case actStall:
			c.stallLegLocked(cur, now)
			if c.hedge != nil { // the hedge carries on alone
				c.cur, c.hedge = c.hedge, nil
				continue
			}
			serr := cur.a.Err
			c.mu.Unlock()
			more, werr := c.s.stalled(c.ctx)
			c.mu.Lock()
			if werr != nil || !more || c.state != stateWatching {
				return 0, backoff.Permanent(c.finishLocked(OutcomeError, serr))
			}
			c.redial = true
			return 0, errStalled
		case actHedge:
			if c.hedged {
				continue
			}
			c.hedged = true
			if hst, ok := c.s.lad.hedge(); ok {
				ctx, wdl := c.ctx, c.wdl
				c.mu.Unlock()
				h, err := c.openReplay(ctx, hst, wdl, true)
				c.mu.Lock()
				if err != nil {
					c.s.record(h.a)
					c.rep = c.s.report
				} else if c.state != stateWatching {
					h.conn.Close()
				} else {
					c.hedge = h
				}
			}
		}
	}
}

// openReplay connects a leg at st and replays the ClientHello on it; hedge
// says whether it races the current leg. Called without mu.
func (c *TCPConn) openReplay(ctx context.Context, st step, wdl time.Time, hedge bool) (*leg, error) {
	c.s.attemptStart(st, len(c.hello), hedge)
	l, err := openLeg(ctx, c.nd, c.s, st, c.window, hedge)
	if err == nil {
		if err = l.send(c.hello, wdl, c.timerOnly); err != nil {
			l.conn.Close()
			l.a.Outcome, l.a.Err = OutcomeError, err
		}
	}
	return l, err
}

// stallLegLocked records l as stalled, with its diagnosis, and resets it.
func (c *TCPConn) stallLegLocked(l *leg, now time.Time) {
	serr := &StallError{Addr: c.s.addr, MSS: l.a.MSS, Hello: len(c.hello),
		Elapsed: now.Sub(l.mon.start), Window: l.a.StallWindow, Diagnosis: l.mon.diagnosis()}
	c.s.traces.stall(StallInfo{Addr: c.s.addr, Attempt: len(c.s.report.Attempts) + 1,
		Elapsed: serr.Elapsed, Window: serr.Window, Diagnosis: serr.Diagnosis})
	if c.s.report.Diagnosis.Class == pmtu.ClassUnknown {
		c.s.report.Diagnosis = serr.Diagnosis
	}
	c.abortLegLocked(l, OutcomeStall, serr)
	c.s.log.Debug("tlsdial: replaying ClientHello on a smaller MSS", "addr", c.s.addr)
}

// dropHedgeLocked ends the hedge, if any.
func (c *TCPConn) dropHedgeLocked(o Outcome, err error) {
	if h := c.hedge; h != nil {
		c.abortLegLocked(h, o, err)
		c.hedge = nil
	}
}

// abortLegLocked records l's attempt as o and resets its connection.
func (c *TCPConn) abortLegLocked(l *leg, o Outcome, err error) {
	c.endLegLocked(l, o, err)
	reset(l.conn)
	l.conn.Close()
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
	l, err := c.openReplay(ctx, st, wdl, false)
	if err != nil {
		c.s.record(l.a)
		return c.giveUp(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateClosed {
		l.conn.Close()
		return net.ErrClosed
	}
	c.cur = l
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

// endLegLocked records l's attempt, once.
func (c *TCPConn) endLegLocked(l *leg, o Outcome, err error) {
	if l.a.Outcome != 0 {
		return
	}
	l.a.Duration = time.Since(l.start)
	l.a.Outcome, l.a.Err = o, err
	if l.mon != nil {
		l.a.Diagnosis = l.mon.diagnosis()
	}
	c.s.record(l.a)
	c.rep = c.s.report
}

// finishLocked stops watching for good: the current attempt ends with o
// unless it already ended, and the dial's report is completed, as a
// success for OutcomeOK and as a failure otherwise, whose *DialError it
// returns.
func (c *TCPConn) finishLocked(o Outcome, err error) error {
	if c.finished {
		return nil
	}
	c.finished = true
	if c.state != stateClosed {
		c.state = statePass
	}
	c.endLegLocked(c.cur, o, err)
	defer func() { c.rep = c.s.report }()
	if o == OutcomeOK {
		c.s.succeeded(c.cur.st)
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
	if c.state == stateWatching {
		reset(c.cur.conn) // its ClientHello may be stuck in a black hole
	}
	c.state = stateClosed
	conn := c.cur.conn
	c.dropHedgeLocked(OutcomeCanceled, net.ErrClosed)
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
	return c.cur.conn.LocalAddr()
}

func (c *TCPConn) RemoteAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur.conn.RemoteAddr()
}

func (c *TCPConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline. While the first reply is awaited
// the connection polls with shorter deadlines of its own and honours this
// one between them.
func (c *TCPConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rdl = t
	if c.state == stateWatching {
		return nil
	}
	return c.cur.conn.SetReadDeadline(t)
}

func (c *TCPConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wdl = t
	return c.cur.conn.SetWriteDeadline(t)
}

// NetConn returns the current underlying TCP connection. It changes when a
// stall redials.
func (c *TCPConn) NetConn() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur.conn
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
