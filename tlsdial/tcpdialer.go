package tlsdial

import (
	"bytes"
	"context"
	"errors"
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
// single complete TLS ClientHello and it meets a black hole or a reset, or
// the server stays silent, the connection dials again with a smaller MSS
// (instead, or beside, as for Dialer) and replays the exact same
// ClientHello bytes, invisibly to the TLS stack above, within the deadlines
// that stack set. Nothing that is not a ClientHello is ever replayed, nor
// anything after the first byte from the server's TLS; from then on the
// connection is a plain pass-through.
//
// A known client-first plaintext prelude may come before the ClientHello:
// PostgreSQL's SSLRequest (pgx, lib/pq), and a GSSENCRequest refused with
// 'N' before it. Its exchange passes through attempt 1 and is recorded;
// each new attempt replays it, checks that the server answers the same
// byte for byte (else that attempt ends with a *PreludeError), and then
// replays the ClientHello. A server that declines TLS ('N') gets a plain
// pass-through, as without fitshake. Other protocols that talk before
// their TLS (MySQL and STARTTLS, where the server speaks first) are not
// protected: their connections keep the remembered clamp, if any, and
// their Report's Protection says why; pin a clamp with pmtu.DialerWithMTU
// for them.
//
// A TLS 1.3 HelloRetryRequest that answers attempt 1's hello is handled
// like a prelude: the first hello and the retry request (checked byte for
// byte) are replayed on each new attempt, and the second hello is watched.
// A retry request that answers a raced attempt ends the watch there; the
// Report's Protection says so.
//
// With net/http:
//
//	td := &tlsdial.TCPDialer{}
//	tr := &http.Transport{DialContext: td.DialContext, ForceAttemptHTTP2: true, TLSHandshakeTimeout: 10 * time.Second}
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
	// ClientHello before a connection with the next clamp is raced beside
	// it; see Dialer.StallWindow. Negative disables replay: the
	// connections are plain TCP connections with the remembered MSS clamp.
	StallWindow time.Duration

	// MaxAttempts bounds the connections one dial may open. Zero means one
	// per MSS step of the ladder; negative is an error.
	MaxAttempts int

	// TimerOnly disables reading TCP_INFO; see Dialer.TimerOnly.
	TimerOnly bool
}

// Dial is DialContext with context.Background.
func (d *TCPDialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

// DialTimeout is DialContext bounded by timeout; zero means no bound. With
// Dial and DialContext it makes a TCPDialer a lib/pq Dialer.
func (d *TCPDialer) DialTimeout(network, addr string, timeout time.Duration) (net.Conn, error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return d.DialContext(ctx, network, addr)
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
	if err := checkInput(network, d.MaxAttempts); err != nil {
		return nil, dst.failed(err)
	}
	mtus, _ := ladderMTUs()
	rungs := []rungInfo{{}} // the stack's own hello, its size known once written
	mc := machineConfig{
		addr:        addr,
		steps:       ladderSteps(mtus, 0, rungs),
		rungs:       rungs,
		maxAttempts: d.MaxAttempts,
		window:      d.StallWindow,
	}
	dst.recall(&mc)
	// The engine outlives the dial's context (net/http may cancel it once
	// the dial returns) but keeps its values, for traces and loggers.
	ectx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	c := &TCPConn{
		nd:        netDialerOr(d.NetDialer),
		timerOnly: d.TimerOnly,
		replay:    d.StallWindow >= 0,
		cancel:    cancel,
		settled:   make(chan struct{}),
		closed:    make(chan struct{}),
	}
	c.e = newEngine(ectx, dst, mc, c)
	c.e.inline, c.e.bareFirst, c.e.onOver = true, true, c.settle
	if err := c.connectFirst(ctx); err != nil {
		return nil, err
	}
	if !c.replay {
		c.plain(UnprotectedReplayOff)
	}
	return c, nil
}

// ContextDialer returns DialContext on network ("tcp", "tcp4" or "tcp6")
// as a function of the context and address alone: the dialer shape of
// gRPC's grpc.WithContextDialer and of other clients that fix the network
// themselves. With gRPC, keep grpc's TLS credentials: they run crypto/tls
// over the connection, and d replays its ClientHello if it stalls.
//
//	conn, err := grpc.NewClient(target,
//		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{})),
//		grpc.WithContextDialer(td.ContextDialer("tcp")))
//
// gRPC sets TCP_USER_TIMEOUT only on a *net.TCPConn, so not on these
// connections; set it in NetDialer.Control, which every attempt runs.
func (d *TCPDialer) ContextDialer(network string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
}

// connectFirst opens attempt 1 in the caller's goroutine, bounded by ctx.
func (c *TCPConn) connectFirst(ctx context.Context) error {
	e := c.e
	e.begin()
	c.first = e.first
	conn, took, err := connect(ctx, c.nd, e.dst.network, e.dst.addr, c.first.st.mtu)
	if err != nil {
		e.do(func(now time.Time) {
			if cerr := ended(ctx); cerr != nil {
				e.m.cancel(now, cerr)
			} else {
				e.m.finished(1, now, legResult{kind: resFailed, err: err})
			}
		})
		return e.failure()
	}
	e.do(func(time.Time) {
		c.first.conn = conn
		e.m.connected(1, took, mssOf(c.first.st, conn))
	})
	c.conn, c.took = conn, took
	return nil
}

type connState int

const (
	stateFresh    connState = iota // nothing written or read yet, or a prelude's exchange is complete
	statePrelude                   // a prelude's request sent, its answer awaited
	stateWatching                  // ClientHello sent, no reply yet
	stateSettled                   // the dial is over: conn is the winner, or perr its error
	stateClosed
)

// TCPConn is a connection made by TCPDialer. See TCPDialer for what it does
// with a stalled ClientHello. Its methods are safe for concurrent use as
// those of net.TCPConn are; after the server's first byte, Read and Write
// go straight to the TCP connection.
//
// Attempt 1 is read by the Read that waits for the reply, so that on a
// healthy path the reply reaches the TLS stack with no hand-off between
// goroutines; attempts raced beside it read their first bytes in goroutines
// of their own, and Read hands them on.
type TCPConn struct {
	nd        *net.Dialer
	timerOnly bool
	replay    bool                    // stall detection is on (StallWindow ≥ 0)
	cancel    context.CancelCauseFunc // ends the engine's context
	e         *engine
	first     *leg          // attempt 1, connected by DialContext
	took      time.Duration // attempt 1's connect time
	hello     []byte        // the ClientHello watched; under mu (a HelloRetryRequest makes way for the second)
	exch      []exchange    // what attempt 1 exchanged before hello, in order; under mu
	next      preludeNext   // what the last exchange's answer lets follow; under mu
	settleOne sync.Once

	settled chan struct{} // closed once the dial is over and settled
	closed  chan struct{} // closed by Close

	fastR atomic.Pointer[connBox] // settled, first bytes delivered: Read goes here
	fastW atomic.Pointer[connBox] // settled: Write goes here

	rmu sync.Mutex // one Read at a time reads attempt 1 while watching

	mu       sync.Mutex
	state    connState
	conn     net.Conn // attempt 1's until settled, then the winner's; nil if the dial failed
	win      *leg     // the winner, when it read its first bytes itself
	taken    bool     // pending and perr were taken from win
	pending  []byte   // the winner's first bytes not yet returned
	perr     error    // returned once pending is empty; the dial's error if it failed
	rdl, wdl time.Time
	rwait    deadline // wakes a Read waiting for the dial
	wwait    deadline // wakes a Write waiting for the dial
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
			if !c.replay {
				c.mu.Unlock()
				c.plain(UnprotectedReplayOff)
				continue
			}
			if isClientHello(b) || c.next == nextRetried && bytes.HasPrefix(b, ccsRecord) && isClientHello(b[len(ccsRecord):]) {
				return c.watch(b) // unlocks
			}
			if c.next == nextRetried && bytes.Equal(b, ccsRecord) {
				return c.send(b) // unlocks
			}
			if p := preludeOf(b); p != nil && c.next == nextAny && len(c.exch) < maxPreludes {
				return c.ask(p, b) // unlocks
			}
			c.mu.Unlock()
			c.plain(UnprotectedNotHello)
		case statePrelude:
			// Written before the answer was read: not a prelude we know.
			c.mu.Unlock()
			c.plain(UnprotectedNotHello)
		case stateWatching:
			// The stack wrote again before any reply: the hello can no
			// longer be replayed, so one attempt is kept.
			wait := c.wwait.wait()
			c.mu.Unlock()
			c.e.do(c.e.m.commit)
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

// await waits for the dial to settle, for the deadline behind wait, or for
// Close.
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

// watch sends the ClientHello b on attempt 1, as a raced attempt's
// redial does, and makes the dial react by itself. Called with mu held, in
// stateFresh; it unlocks.
func (c *TCPConn) watch(b []byte) (int, error) {
	hello := slices.Clone(b)
	c.hello, c.state = hello, stateWatching
	conn, names := c.conn, preludeNames(c.exch)
	c.mu.Unlock()
	if names != "" {
		c.e.do(func(time.Time) { c.e.m.report.Prelude = names })
	}
	n, err, wanted := c.first.sendHello(conn, c.took, len(b), nil, c.timerOnly, func() (int, error) { return conn.Write(hello) })
	switch {
	case !wanted:
		return 0, net.ErrClosed // closed meanwhile: the dial is over
	case err != nil:
		// Final even if the path cut it: the stack sees this error.
		c.first.finished(legResult{kind: resFailed, err: err}, nil)
	}
	return n, err
}

// settle puts the connection on the dial's outcome, once: the winner's TCP
// connection, or the dial's error. The engine runs it (onOver) after the
// hooks of the dial's last events.
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
		c.conn = w.conn
		box := &connBox{w.conn}
		c.fastW.Store(box)
		if w == c.first {
			// Attempt 1 has had the stack's deadlines all along, and Read
			// reads its bytes itself: nothing is pending.
			c.fastR.Store(box)
			return
		}
		w.conn.SetReadDeadline(c.rdl)
		w.conn.SetWriteDeadline(c.wdl)
		c.win = w
	})
}

// ask sends prelude p's request b on attempt 1 and waits for Read to
// read its answer. Called with mu held, in stateFresh; it unlocks.
func (c *TCPConn) ask(p *prelude, b []byte) (int, error) {
	c.exch = append(c.exch, exchange{name: p.name, request: p.request, p: p})
	c.state = statePrelude
	conn := c.conn
	c.mu.Unlock()
	n, err := conn.Write(b)
	if err != nil {
		c.plain(UnprotectedDeclined)
	}
	return n, err
}

// send writes b, a change_cipher_spec after a HelloRetryRequest, on
// attempt 1 and records it for the replays. Called with mu held, in
// stateFresh; it unlocks.
func (c *TCPConn) send(b []byte) (int, error) {
	c.exch = append(c.exch, exchange{request: slices.Clone(b)})
	conn := c.conn
	c.mu.Unlock()
	return conn.Write(b)
}

// readAnswer reads attempt 1's answer to the prelude request in flight
// for the stack, no further than the answer's end, and records it. The
// stack's read deadline is on the connection.
func (c *TCPConn) readAnswer(b []byte) (int, error) {
	c.mu.Lock()
	x := &c.exch[len(c.exch)-1]
	b = b[:min(len(b), x.p.answer-len(x.answer))]
	conn := c.conn
	c.mu.Unlock()
	n, err := conn.Read(b)
	c.mu.Lock()
	if c.state != statePrelude {
		c.mu.Unlock()
		return n, err // closed, or passed through meanwhile
	}
	x.answer = append(x.answer, b[:n]...)
	next, done := nextPlain, len(x.answer) == x.p.answer
	if done {
		next = x.p.next(x.answer)
	}
	switch {
	case done && next != nextPlain:
		c.state, c.next = stateFresh, next
	case done, err != nil && !errors.Is(err, os.ErrDeadlineExceeded):
		c.mu.Unlock()
		c.plain(UnprotectedDeclined)
		return n, err
	}
	c.mu.Unlock()
	return n, err
}

// plain settles a fresh connection as a plain one, for the reason why:
// what goes over it is not a lone ClientHello, or replay is off, so there
// is nothing to watch.
func (c *TCPConn) plain(why Protection) {
	c.mu.Lock()
	if c.state != stateFresh && c.state != statePrelude {
		c.mu.Unlock()
		return
	}
	c.state = stateWatching // until settle, which commit runs
	names := preludeNames(c.exch)
	c.mu.Unlock()
	c.e.do(func(now time.Time) {
		c.e.m.report.Protection, c.e.m.report.Prelude = why, names
		c.e.m.commit(now)
	})
}

func (c *TCPConn) Read(b []byte) (int, error) {
	if p := c.fastR.Load(); p != nil {
		return p.Read(b)
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		c.mu.Lock()
		st, w, wait := c.state, c.win, c.rwait.wait()
		c.mu.Unlock()
		switch st {
		case stateFresh: // the server speaks first: nothing to watch
			why := UnprotectedServerFirst
			c.mu.Lock()
			if c.next == nextRetried {
				why = UnprotectedHelloRetry // read before the second hello
			}
			c.mu.Unlock()
			c.plain(why)
			continue
		case statePrelude:
			return c.readAnswer(b)
		case stateClosed:
			return 0, net.ErrClosed
		case stateWatching:
			if n, err, done := c.readFirst(b); done {
				return n, err
			}
			if err := c.await(wait); err != nil {
				return 0, err
			}
			continue
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

// readFirst reads attempt 1 while the dial runs, if it is still running,
// and tells the machine what came. It returns done when Read should return
// n and err: attempt 1 won with these bytes, or the stack's own deadline
// passed. Otherwise Read waits for the dial to settle.
func (c *TCPConn) readFirst(b []byte) (n int, err error, done bool) {
	l, e := c.first, c.e
	e.mu.Lock()
	alive := !e.m.over && !l.ended && e.m.waiting(l.id)
	e.mu.Unlock()
	if !alive {
		return 0, nil, false
	}
	if len(b) == 0 {
		return 0, nil, true // nothing to read into: not a reply
	}
	n, err = l.conn.Read(b)
	if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, err, true // the stack's deadline: attempt 1 carries on
	}
	res := legResult{kind: resOK}
	if n == 0 {
		res = resultOf(err, false)
	} else if c.retried(b[:n]) {
		return n, err, true // the stack answers with its second hello
	}
	if l.finished(res, nil) {
		return n, err, true
	}
	return 0, nil, false // it lost: its bytes are not the stack's
}

// readSettled returns a raced winner's first bytes, then its first error
// or the dial's, then goes straight to the connection.
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

// firstReadSize bounds the first read of an attempt raced in its own
// goroutine: the reply's first bytes, handed to the TLS stack by Read.
const firstReadSize = 4096

// firstBufs recycles the first-read buffers: an attempt that lost returns
// its own, the winner's returns once Read has handed its bytes on.
var firstBufs = sync.Pool{New: func() any { return new([firstReadSize]byte) }}

// attempt runs a raced attempt (see driver): it connects with the step's
// clamp, replays the ClientHello and reads the server's first bytes.
// Attempt 1 is not run here: DialContext connects it, Write sends the
// hello and Read reads it.
func (c *TCPConn) attempt(l *leg) {
	conn := c.redial(l)
	if conn == nil {
		return
	}
	buf := firstBufs.Get().(*[firstReadSize]byte)
	n, err := conn.Read(buf[:])
	l.buf, l.first, l.firstErr = buf, buf[:n], err
	close(l.got)
	res := legResult{kind: resOK}
	if n == 0 {
		res = resultOf(err, false)
	} else {
		c.noteRetry(buf[:n])
	}
	if !l.finished(res, nil) {
		// Failed, or the dial ended without it: no Read will look at it.
		conn.Close()
		firstBufs.Put(buf)
	}
}

// redial connects attempt l, bounded by the read deadline the stack set,
// and replays the ClientHello; nil when it failed (reported) or is not
// wanted.
func (c *TCPConn) redial(l *leg) net.Conn {
	c.mu.Lock()
	// exch and hello change when a HelloRetryRequest makes the second
	// hello the one to watch (which ends the attempts started before).
	rdl, wdl, exch, hello := c.rdl, c.wdl, c.exch, c.hello
	c.mu.Unlock()
	ctx := l.ctx
	if !rdl.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, rdl)
		defer cancel()
	}
	conn, took, err := connect(ctx, c.nd, c.e.dst.network, c.e.dst.addr, l.st.mtu)
	if err != nil {
		l.finished(legResult{kind: resFailed, err: err}, nil)
		return nil
	}
	// The prelude's round trips come before the TCP_INFO baseline and the
	// hello's clock: they are no part of the stall window.
	if err := c.replayPreludes(ctx, l.id, conn, exch, wdl); err != nil {
		conn.Close()
		c.e.do(func(time.Time) {
			// Its MSS, for the report: it connected, it is not a candidate
			// to keep (machine.connected would make it one).
			a := c.e.m.attempt(l.id)
			a.ConnectRTT, a.MSS = took, mssOf(l.st, conn)
		})
		l.finished(legResult{kind: resFailed, err: err}, nil)
		return nil
	}
	_, err, wanted := l.sendHello(conn, took, len(hello), nil, c.timerOnly, func() (int, error) {
		conn.SetWriteDeadline(wdl)
		defer conn.SetWriteDeadline(time.Time{})
		return conn.Write(hello)
	})
	switch {
	case !wanted:
		conn.Close()
		return nil
	case err != nil:
		conn.Close()
		l.finished(resultOf(err, false), nil)
		return nil
	}
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
	var err error
	if (prev == stateFresh || prev == statePrelude) && conn != nil {
		err = conn.Close() // a FIN: nothing is stuck in a black hole
	}
	c.e.do(func(now time.Time) { c.e.m.cancel(now, net.ErrClosed) }) // closes every attempt
	c.cancel(net.ErrClosed)
	if prev == stateSettled && conn != nil {
		err = conn.Close()
	}
	return err
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
// it bounds Read, which reads attempt 1 or waits for a raced attempt, and
// any redial's connect; the TCP connection that wins gets it too.
func (c *TCPConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rdl = t
	if c.state < stateSettled {
		c.rwait.set(t) // only a Read waiting for the dial selects on it
	}
	if c.conn == nil {
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
	if c.state < stateSettled {
		// Only a Write waiting for the dial selects on it: once settled,
		// a TLS stack's close_notify deadlines cost no timer.
		c.wwait.set(t)
	}
	if c.conn == nil {
		return nil
	}
	return c.conn.SetWriteDeadline(t)
}

// NetConn returns the current underlying TCP connection: attempt 1's until
// the server's first reply, then the one that got it.
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
