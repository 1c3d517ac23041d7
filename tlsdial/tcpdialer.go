package tlsdial

import (
	"context"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

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
	dst := newDestination(ctx, network, addr, d.Cache, d.Trace, d.Logger)
	if err := checkNetwork(network); err != nil {
		return nil, dst.failed(err)
	}
	if d.MaxAttempts < 0 {
		return nil, dst.failed(errMaxAttempts)
	}
	mtus, _ := ladderMTUs()
	mc := machineConfig{
		addr:        addr,
		steps:       ladderSteps(mtus, 0, 1),
		rungs:       []rungInfo{{}}, // the stack's own hello, size known once written
		maxAttempts: d.MaxAttempts,
		window:      d.StallWindow,
	}
	dst.recall(&mc)
	// The watcher outlives the dial's context (net/http may cancel it once
	// the dial returns) but keeps its values, for traces and loggers.
	wctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	c := &TCPConn{
		nd:        netDialerOr(d.NetDialer),
		timerOnly: d.TimerOnly,
		replay:    d.StallWindow >= 0,
		cancel:    cancel,
		settled:   make(chan struct{}),
		closed:    make(chan struct{}),
	}
	c.e = newEngine(wctx, dst, mc, c)
	c.e.commit = make(chan struct{}, 1)
	c.e.snapshots = true
	if err := c.connectFirst(ctx); err != nil {
		return nil, err
	}
	if !c.replay {
		c.plain()
	}
	return c, nil
}

// connectFirst opens attempt 1 in the caller's goroutine, bounded by ctx.
func (c *TCPConn) connectFirst(ctx context.Context) error {
	e := c.e
	e.flush(func(l *leg) { c.first = l })
	conn, rtt, err := connect(ctx, c.nd, e.dst.network, e.dst.addr, c.first.st.mtu)
	if err != nil {
		if cerr := ended(ctx); cerr != nil {
			e.m.cancel(time.Now(), cerr)
		} else {
			e.m.finished(1, time.Now(), legResult{kind: resFailed, err: err})
		}
		e.flush(nil)
		e.end()
		c.cancel(nil)
		return e.failure()
	}
	c.first.conn, c.conn, c.took = conn, conn, rtt
	e.m.connected(1, rtt, mssOf(c.first.st, conn))
	e.publish()
	return nil
}

type connState int

const (
	stateFresh    connState = iota // nothing written or read yet: the caller's goroutine may own the engine
	stateWatching                  // ClientHello sent, no reply yet: the watcher owns the engine
	stateSettled                   // the dial is over: conn is the winner, or perr its error
	stateClosed
)

// TCPConn is a connection made by TCPDialer. See TCPDialer for what it does
// with a stalled ClientHello. Its methods are safe for concurrent use as
// those of net.TCPConn are; after the server's first byte, Read and Write
// go straight to the TCP connection.
type TCPConn struct {
	nd        *net.Dialer
	timerOnly bool
	replay    bool                    // stall detection is on (StallWindow ≥ 0)
	cancel    context.CancelCauseFunc // ends the watcher
	e         *engine                 // owned as engine's doc says; e.report any time
	first     *leg                    // attempt 1, connected by DialContext
	took      time.Duration           // attempt 1's connect time
	hello     []byte                  // the ClientHello; set before watching, then read-only
	settleOne sync.Once

	settled chan struct{} // closed once the watcher has settled the dial
	closed  chan struct{} // closed by Close

	fastR atomic.Pointer[connBox] // settled, first bytes delivered: Read goes here
	fastW atomic.Pointer[connBox] // settled: Write goes here

	mu       sync.Mutex
	state    connState
	conn     net.Conn // attempt 1's until settled, then the winner's; nil if the dial failed
	win      *leg     // the winner, whose first read Read delivers
	taken    bool     // pending and perr were taken from win
	pending  []byte   // the winner's first bytes not yet returned
	perr     error    // returned once pending is empty; the dial's error if it failed
	rdl, wdl time.Time
	rwait    deadline // wakes a Read waiting for the watcher
	wwait    deadline // wakes a Write waiting for the watcher
}

type connBox struct{ net.Conn }

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
	if p := c.fastW.Load(); p != nil {
		return p.Write(b)
	}
	for {
		c.mu.Lock()
		switch c.state {
		case stateFresh:
			if c.replay && isClientHello(b) {
				return c.watch(b) // unlocks
			}
			c.mu.Unlock()
			c.plain()
		case stateWatching:
			// The stack wrote again before any reply: the hello can no
			// longer be replayed, so the watcher keeps one attempt.
			wait := c.wwait.wait()
			c.mu.Unlock()
			select {
			case c.e.commit <- struct{}{}:
			default:
			}
			if err := c.await(wait); err != nil {
				return 0, err
			}
		case stateSettled:
			conn, err := c.conn, c.perr
			c.mu.Unlock()
			if conn == nil {
				return 0, err
			}
			return conn.Write(b)
		default:
			c.mu.Unlock()
			return 0, net.ErrClosed
		}
	}
}

// await waits for the watcher to settle the dial, for the deadline behind
// wait, or for Close.
func (c *TCPConn) await(wait <-chan struct{}) error {
	select {
	case <-c.settled:
		return nil
	case <-wait:
		return os.ErrDeadlineExceeded
	case <-c.closed:
		return net.ErrClosed
	}
}

// watch sends the ClientHello b on attempt 1 and hands the dial to a
// watcher goroutine. Called with mu held, in stateFresh; it unlocks.
func (c *TCPConn) watch(b []byte) (int, error) {
	c.hello = slices.Clone(b)
	c.state = stateWatching
	conn := c.conn
	c.mu.Unlock()
	var base pmtu.TCPInfo
	info := false
	if !c.timerOnly {
		var err error
		base, err = pmtu.ReadTCPInfo(conn)
		info = err == nil
	}
	now := time.Now()
	n, err := conn.Write(c.hello)
	// Attempts run on their own: the stack's deadlines bound its Read and
	// Write calls, which wait for the watcher, and go to the winner.
	conn.SetDeadline(time.Time{})
	if err != nil {
		c.e.m.finished(1, now, legResult{kind: resFailed, err: err})
	} else {
		c.first.info = info
		c.e.m.connected(1, rttOf(c.took, base, info), mssOf(c.first.st, conn))
		c.e.m.sent(1, now, len(b), base, info)
	}
	go c.watcher()
	return n, err
}

// watcher runs the dial's engine until the dial is over, its hooks
// included, then settles the connection on its outcome.
func (c *TCPConn) watcher() {
	c.e.run()
	c.settle()
}

// settle puts the connection on the dial's outcome, once: the winner's TCP
// connection, or the dial's error.
func (c *TCPConn) settle() {
	c.settleOne.Do(func() {
		w := c.e.winner()
		c.mu.Lock()
		defer c.mu.Unlock()
		defer close(c.settled)
		if c.state == stateClosed {
			if w != nil {
				w.conn.Close()
			}
			return
		}
		c.state = stateSettled
		if w == nil {
			c.conn, c.perr = nil, c.e.failure()
			return
		}
		c.conn, c.win = w.conn, w
		w.conn.SetReadDeadline(c.rdl)
		w.conn.SetWriteDeadline(c.wdl)
		c.fastW.Store(&connBox{w.conn})
	})
}

// plain settles a fresh connection as a plain one: what goes over it is
// not a lone ClientHello (or replay is off), so there is nothing to watch.
func (c *TCPConn) plain() {
	c.mu.Lock()
	if c.state != stateFresh {
		c.mu.Unlock()
		return
	}
	c.state = stateSettled
	c.fastR.Store(&connBox{c.conn})
	c.fastW.Store(&connBox{c.conn})
	c.mu.Unlock()
	c.settleOne.Do(func() { close(c.settled) })
	// The state change made this goroutine the engine's owner.
	c.e.m.commit(time.Now())
	c.e.flush(nil)
	c.e.end()
	c.cancel(nil)
}

func (c *TCPConn) Read(b []byte) (int, error) {
	if p := c.fastR.Load(); p != nil {
		return p.Read(b)
	}
	for {
		c.mu.Lock()
		st, w, wait := c.state, c.win, c.rwait.wait()
		c.mu.Unlock()
		switch st {
		case stateFresh: // the server speaks first: nothing to watch
			c.plain()
			continue
		case stateWatching:
			if err := c.await(wait); err != nil {
				return 0, err
			}
			continue
		case stateClosed:
			return 0, net.ErrClosed
		}
		if w != nil {
			select {
			case <-w.got:
			case <-wait:
				return 0, os.ErrDeadlineExceeded
			case <-c.closed:
				return 0, net.ErrClosed
			}
		}
		return c.readSettled(b)
	}
}

// readSettled returns the winner's first bytes, then its first error or
// the dial's, then goes straight to the connection.
func (c *TCPConn) readSettled(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateClosed {
		return 0, net.ErrClosed
	}
	if c.win != nil && !c.taken {
		c.taken = true
		c.pending, c.perr = c.win.first, c.win.firstErr
	}
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 && c.win.buf != nil {
			firstBufs.Put(c.win.buf)
			c.win.buf, c.pending = nil, nil
		}
		return n, nil
	}
	if c.perr != nil {
		return 0, c.perr
	}
	c.fastR.Store(&connBox{c.conn})
	return c.conn.Read(b)
}

// firstReadSize bounds the first read of each attempt: the reply's first
// bytes, handed to the TLS stack by the next Read.
const firstReadSize = 4096

// firstBufs recycles the first-read buffers: an attempt that lost returns
// its own, the winner's returns once Read has handed its bytes on.
var firstBufs = sync.Pool{New: func() any { return new([firstReadSize]byte) }}

// attempt runs one attempt of the dial (see driver): a redial connects with
// the step's clamp and replays the ClientHello; every attempt then reads
// the server's first bytes.
func (c *TCPConn) attempt(l *leg) {
	conn := l.conn // set for attempt 1 only, before the watcher started
	if conn == nil {
		conn = c.redial(l)
		if conn == nil {
			return
		}
	}
	buf := firstBufs.Get().(*[firstReadSize]byte)
	n, err := conn.Read(buf[:])
	l.buf, l.first, l.firstErr = buf, buf[:n], err
	close(l.got)
	res := legResult{kind: resOK}
	if n == 0 {
		res = resultOf(err, false)
	}
	if !l.finished(res, nil) && !l.keep.Load() {
		// The dial ended without this attempt: no Read will look at it.
		conn.Close()
		firstBufs.Put(buf)
	}
}

// redial connects attempt l, bounded by the read deadline the stack set,
// and replays the ClientHello; nil when it failed (reported) or the dial
// is over.
func (c *TCPConn) redial(l *leg) net.Conn {
	c.mu.Lock()
	rdl, wdl := c.rdl, c.wdl
	c.mu.Unlock()
	ctx := l.ctx
	if !rdl.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, rdl)
		defer cancel()
	}
	conn, rtt, err := connect(ctx, c.nd, c.e.dst.network, c.e.dst.addr, l.st.mtu)
	if err != nil {
		l.finished(legResult{kind: resFailed, err: err}, nil)
		return nil
	}
	if !l.sent(conn, rtt, len(c.hello), c.timerOnly, nil) {
		conn.Close()
		return nil
	}
	conn.SetWriteDeadline(wdl)
	if _, err := conn.Write(c.hello); err != nil {
		conn.Close()
		l.finished(resultOf(err, false), nil)
		return nil
	}
	conn.SetWriteDeadline(time.Time{})
	return conn
}

// Close closes the connection and ends any attempt still running.
func (c *TCPConn) Close() error {
	c.mu.Lock()
	prev, conn := c.state, c.conn
	if prev == stateClosed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.state = stateClosed
	close(c.closed)
	c.mu.Unlock()
	switch prev {
	case stateFresh:
		// The state change made this goroutine the engine's owner.
		err := conn.Close()
		c.e.m.cancel(time.Now(), net.ErrClosed)
		c.e.flush(nil)
		c.e.end()
		c.cancel(nil)
		return err
	case stateWatching:
		c.cancel(net.ErrClosed) // the watcher ends every attempt
		return nil
	}
	c.cancel(nil)
	if conn == nil {
		return nil
	}
	return conn.Close()
}

func (c *TCPConn) LocalAddr() net.Addr  { return c.NetConn().LocalAddr() }
func (c *TCPConn) RemoteAddr() net.Addr { return c.NetConn().RemoteAddr() }

func (c *TCPConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline. While the first reply is awaited
// it bounds the wait and any redial's connect; the TCP connection that
// wins gets it too.
func (c *TCPConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rdl = t
	c.rwait.set(t)
	if c.state == stateWatching || c.conn == nil {
		return nil
	}
	return c.conn.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline, which also bounds a redial's
// replay of the ClientHello.
func (c *TCPConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wdl = t
	c.wwait.set(t)
	if c.state == stateWatching || c.conn == nil {
		return nil
	}
	return c.conn.SetWriteDeadline(t)
}

// NetConn returns the current underlying TCP connection: attempt 1's until
// the server's first reply, then the one that got it. It is nil after a
// failed dial.
func (c *TCPConn) NetConn() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return c.first.conn
	}
	return c.conn
}

// Report describes the dial's attempts so far: while they run (attempts
// not yet ended have Outcome OutcomeRunning), and complete once the
// server's first byte has arrived (after the TLS handshake, for a TLS
// stack above) or the dial failed.
func (c *TCPConn) Report() Report { return c.e.report() }
