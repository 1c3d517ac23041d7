package tlsdial

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fitshake/fitshake/internal/reset"
	"github.com/fitshake/fitshake/pmtu"
)

// An engine runs one dial for either dialer: its machine (the policy), the
// I/O side of its attempts, its timers and its place in the destination's
// group.
//
// The rule: e.mu guards the machine and every field below it. Whatever
// happens to a dial — an attempt connected or ended, a TCP_INFO poll or a
// timer falling due, news from another dial, cancellation, Close — is
// applied under e.mu by the goroutine that saw it: the attempt's own
// (attempt 1 runs in the caller's, DialContext's or that of the Read
// waiting for the reply, so that a healthy dial hands nothing from one
// goroutine to another), the timer's, or the caller of Close. The engine
// has no goroutine of its own. Under the lock, effects only touch sockets
// (reading TCP_INFO, closing a loser). Everything that calls out — hooks,
// logs, starting an attempt, telling other dials, settling a TCPConn — is
// queued under the lock and run after it, in order, by one goroutine at a
// time (unlockAndRun): hooks never run with a lock held, never
// concurrently, and may call back into the connection.
type engine struct {
	dst    destination
	drv    driver
	ctx    context.Context // ends the dial; its cause is the dial's error
	inline bool            // attempt 1 runs in the caller's goroutine, not its own
	// bareFirst: an inline attempt 1 takes no context of its own (its I/O
	// takes none, and the engine stops it by closing its connection).
	bareFirst bool
	// onOver, if set, is run after the hooks of the dial's last events.
	onOver func()

	over  chan struct{} // closed (under mu) when the dial is over
	quiet chan struct{} // closed once the queue of the last events has run, Done included

	mu        sync.Mutex
	m         *machine
	legs      []*leg // by ID − 1
	first     *leg   // attempt 1 when inline: its I/O is the caller's to run
	queue     []func()
	running   bool        // a goroutine is running the queue
	launch    []*leg      // attempts to start when the lock is released (release)
	grp       *group      // the destination's, once enlisted
	timer     *time.Timer // the next timer decision; nil until armed
	pollSet   time.Time   // when the poller was told to poll next (poll.go)
	lookAt    time.Time   // when an attempt's early first look is due (pollFrom); zero: none
	stopCtx   func() bool // stops the context's cancellation callback
	watching  bool        // the first hello is out: the engine reacts by itself
	concluded bool
	final     error // the dial's error, built by failure

	// The poller's, guarded by the tcppoll.Poller's lock (poll.go): when
	// the next poll is due, and the engine's place in its set plus one
	// (0: not there).
	pollAt  time.Time
	pollIdx int
}

// destination is what a dial is to: shared by its engine and its adapter.
type destination struct {
	network, addr string
	cache         *pmtu.Cache
	key           *dialKey // the cache key, looked up when needed
	recallable    bool     // the cache had entries when the dial began
	traces        traces
	log           *slog.Logger
}

// driver is what differs between the dialers: the I/O of one attempt.
type driver interface {
	// attempt runs attempt l: it connects at l.st (unless l.conn is
	// already set), sends the ClientHello and waits for the reply,
	// reporting with l.sent and l.finished, and closes what it opened when
	// they say the attempt is not wanted.
	attempt(l *leg)
}

// stater is a driver that completes the TLS handshake itself (Dialer's):
// it gives the Done hook the state of the winning attempt's connection.
type stater interface {
	connectionState(val any) *tls.ConnectionState
}

// leg is the I/O side of one attempt. conn, info, rx and nextPoll are
// guarded by e.mu; the attempt's goroutine keeps its own copy of conn.
type leg struct {
	id       int
	st       step
	e        *engine
	ctx      context.Context
	cancel   context.CancelFunc
	conn     net.Conn
	info     bool
	rx       *atomic.Int64 // bytes read from the server; nil if not counted
	val      any           // the driver's result, from finished
	ended    bool          // the machine abandoned it: its abort (RST, then the context's end) is queued
	nextPoll time.Time     // when to read its TCP_INFO next (see pollFrom)

	// TCPConn's first read of an attempt running in its own goroutine:
	// set before got is closed (nil for an inline attempt 1).
	got      chan struct{}
	buf      *[firstReadSize]byte // first's storage, from firstBufs
	first    []byte
	firstErr error
}

// newEngine prepares the engine of one dial; begin starts it.
func newEngine(ctx context.Context, dst destination, cfg machineConfig, drv driver) *engine {
	cfg.lookSoon = !answered.has(dst.answeredKey())
	return &engine{
		dst:   dst,
		drv:   drv,
		ctx:   ctx,
		m:     newMachine(cfg),
		over:  make(chan struct{}),
		quiet: make(chan struct{}),
	}
}

// begin starts the dial's first attempt (an inline one is left in e.first
// for the caller to run).
func (e *engine) begin() {
	e.do(e.m.begin)
}

// watch makes the dial react by itself, once its first hello is on its
// way: it arms the polls and timers. A dial whose attempt 1 is polled
// joins the destination's group and watches its context only at its first
// event other than attempt 1's reply (enlist): a healthy dial is over
// before its first poll, and the join, the context's callback and the
// leave cost ~5 µs of a loopback handshake's critical path. The others
// enlist at once: their timer decides with the group's news and budget.
func (e *engine) watch() {
	e.do(e.startWatching)
}

// startWatching is watch, under e.mu.
func (e *engine) startWatching(now time.Time) {
	if e.watching || e.m.over {
		return
	}
	e.watching = true
	if e.m.pollEvery(1) == 0 || len(e.legs) > 1 {
		e.enlist(now)
	}
}

// enlist joins the destination's group, hears what its members learned
// and ends the dial when its context ends; once, under e.mu, after watch.
// Every event that can start an attempt enlists first (poll, fire, a
// failed attempt), so that the machine decides with the group's budget.
// The news it missed meanwhile (at most a poll interval) is in known, and
// a context that ended meanwhile ends the dial at once (AfterFunc): a
// Dialer's dial sees its context end at most a poll interval (1 ms) later
// than crypto/tls would (TestCancelDuringStallIsPrompt).
func (e *engine) enlist(now time.Time) {
	if e.grp != nil || !e.watching || e.m.over {
		return
	}
	var known []news
	e.grp, known = joinGroup(e.dst.groupKey(), e)
	e.m.budget = e.grp
	for _, n := range known {
		e.m.peer(now, n)
	}
	e.stopCtx = context.AfterFunc(e.ctx, func() {
		e.do(func(now time.Time) { e.m.cancel(now, ctxErr(e.ctx)) })
	})
}

// hear applies news from another dial to the same destination.
func (e *engine) hear(n news) {
	e.do(func(now time.Time) { e.m.peer(now, n) })
}

// arm tells the poller when the next TCP_INFO poll is due (poll.go) and
// sets the timer for the next timer decision, under e.mu.
func (e *engine) arm(now time.Time) {
	if !e.watching {
		return
	}
	if e.m.over {
		if e.timer != nil {
			e.timer.Stop()
		}
		e.polled(time.Time{})
		return
	}
	e.polled(e.pollDue())
	d, ok := e.nextWake(now)
	if !ok {
		// Nothing is due: no timer (every change that could make
		// something due comes through apply, which arms again).
		if e.timer != nil {
			e.timer.Stop()
		}
		return
	}
	if e.timer == nil {
		e.timer = time.AfterFunc(d, e.fire)
		return
	}
	e.timer.Reset(d)
}

// nextWake returns how long until the next timer decision; false when
// none is due. TCP_INFO polls are the poller's (poll.go).
func (e *engine) nextWake(now time.Time) (time.Duration, bool) {
	at := e.m.nextWake()
	if at.IsZero() {
		return 0, false
	}
	return max(at.Sub(now), 0), true
}

// fire is the timer's: it lets the machine judge the attempts without
// TCP_INFO, and the time spent.
func (e *engine) fire() {
	e.do(func(now time.Time) {
		e.enlist(now)
		e.m.tick(now, e.received)
	})
}

// pollFrom schedules the first TCP_INFO poll of l, whose hello was
// written at sent, one poll interval later (sooner where the destination
// was not seen to answer: looks.go), not at once: polled at once (as soon
// as the timer's goroutine ran), a loopback dial paid a goroutine, a
// TCP_INFO read and a timer reset while the server computed its reply,
// 3–4% of its time. Under e.mu.
func (l *leg) pollFrom(sent time.Time) { l.pollIn(sent, l.e.m.firstPoll(l.id)) }

// pollIn schedules l's next poll d after from; one due sooner than the
// interval is an early look (looks.go), set precisely (see polled). Under
// e.mu.
func (l *leg) pollIn(from time.Time, d time.Duration) {
	l.nextPoll = from.Add(d)
	if d > 0 && d < pollInterval {
		l.e.lookAt = l.nextPoll
	}
}

func (e *engine) received(id int) uint64 {
	if rx := e.legs[id-1].rx; rx != nil {
		return uint64(rx.Load())
	}
	return 0
}

// apply carries out the machine's effects, under e.mu: sockets are closed
// here, anything that calls out is queued. When the dial is over, it
// concludes it. now is the time the caller gave the machine (reading the
// clock costs 0.3 µs on some VMs).
func (e *engine) apply(now time.Time) {
	effs := e.m.drain()
	for _, ef := range effs {
		switch ef.kind {
		case effStart:
			e.startLeg(ef.id, ef.step)
		case effAbort:
			l := e.legs[ef.id-1]
			l.ended = true
			// Queued, after the next attempt is on its way: on the lab's
			// veth paths the RST's journey costs the closing thread
			// 0.1–0.5 ms, which was spent before the redial began.
			e.queue = append(e.queue, l.abort)
		case effStall:
			e.queueStall(ef.stall)
		case effEnded:
			e.queueEnded(e.m.report.Attempts[ef.id-1])
		case effShare:
			n := news{step: ef.step, replied: ef.replied, needed: ef.needed}
			if g := e.grp; g != nil {
				e.queue = append(e.queue, func() { g.tell(e, n) })
			} else if e.watching {
				// Not enlisted (a reply before the first poll): the
				// dials waiting to the destination still hear it.
				k := e.dst.groupKey()
				e.queue = append(e.queue, func() { tellGroup(k, e, n) })
			}
		}
	}
	e.m.recycle(effs)
	if e.m.over {
		e.conclude(now)
	}
	e.arm(now)
}

func (e *engine) startLeg(id int, st step) {
	l := &leg{id: id, st: st, e: e}
	e.legs = append(e.legs, l)
	if len(e.dst.traces) > 0 {
		info := e.startInfo(id)
		e.queue = append(e.queue, func() { e.dst.traces.attemptStart(info) })
	}
	if e.inline && id == 1 {
		// Run by the caller: no goroutine to signal; and no context of
		// its own where closing its connection is enough to stop it.
		l.ctx, l.cancel = e.ctx, noCancel
		if !e.bareFirst {
			l.ctx, l.cancel = context.WithCancel(e.ctx)
		}
		e.first = l
		return
	}
	l.ctx, l.cancel = context.WithCancel(e.ctx)
	l.got = make(chan struct{})
	if id > 1 {
		e.dst.key.start() // the dial may learn something: see dialKey
	}
	e.launch = append(e.launch, l)
}

func (e *engine) startInfo(id int) AttemptStartInfo {
	a := e.m.report.Attempts[id-1]
	return AttemptStartInfo{
		Addr: e.dst.addr, ID: id, MTU: a.MTU, HelloSize: a.HelloSize, Rung: a.Rung,
		FromCache: e.m.report.FromCache && id == 1, FromNetwork: e.m.cfg.fromNetwork && id == 1, Hedge: a.Hedge,
	}
}

func (e *engine) queueStall(i StallInfo) {
	d := e.dst
	e.queue = append(e.queue, func() {
		d.traces.stall(i)
		if d.logs(slog.LevelInfo) {
			d.log.Info("tlsdial: handshake stalled", "addr", d.addr, "attempt", i.ID,
				"class", i.Diagnosis.Class, "elapsed", i.Elapsed, "why", i.Diagnosis.String())
		}
	})
}

func (e *engine) queueEnded(a Attempt) {
	d := e.dst
	if len(d.traces) == 0 && !d.logs(slog.LevelDebug) {
		return // a closure per attempt, on a healthy dial's path, for no one
	}
	e.queue = append(e.queue, func() {
		d.traces.attemptDone(AttemptDoneInfo{Addr: d.addr, Attempt: a})
		if d.logs(slog.LevelDebug) {
			d.log.Debug("tlsdial: attempt done", "addr", d.addr, "attempt", a.ID,
				"mss", a.MSS, "hello", a.HelloSize, "outcome", a.Outcome, "err", a.Err)
		}
	})
}

// conclude completes a dial that is over, once, under e.mu: the waiters
// are released and the group left; teaching the cache, the Done hook,
// onOver and the end of quiet are queued last.
func (e *engine) conclude(now time.Time) {
	if e.concluded {
		return
	}
	e.concluded = true
	close(e.over)
	if e.grp != nil {
		e.grp.leave(e)
	}
	if e.stopCtx != nil {
		e.stopCtx()
	}
	for _, l := range e.legs {
		// The winner's too: its I/O is over, and a context left
		// registered in the caller's would live as long as that one.
		// An abandoned attempt's abort cancels it, after its RST.
		if !l.ended {
			l.cancel()
		}
	}
	if e.m.winner != 0 {
		answered.note(e.dst.answeredKey(), e.m.answeredFirst())
	}
	entry, learned := e.m.remember(now)
	d, onOver, tell := e.dst, e.onOver, e.tellDone()
	e.queue = append(e.queue, func() {
		if learned {
			// Outside e.mu: the key may wait for its route lookup.
			d.cache.Store(d.key.get(), entry)
		}
		if tell != nil {
			tell()
		}
		if onOver != nil {
			onOver()
		}
		close(e.quiet)
	})
}

// tellDone returns what tells the end of the dial to its Done hooks and
// its log, to run outside e.mu; nil when neither listens, so that a
// healthy dial copies no report for no one. Under e.mu, once over.
func (e *engine) tellDone() func() {
	d := e.dst
	if len(d.traces) == 0 && !d.logs(slog.LevelInfo) {
		return nil
	}
	r := e.m.report.clone()
	var err error
	if e.m.winner == 0 {
		err = e.failure()
	}
	st, _ := e.drv.(stater)
	var won any // the winner's connection, for the Done hook
	if e.m.winner != 0 && len(d.traces) > 0 {
		won = e.legs[e.m.winner-1].val
	}
	return func() {
		i := DoneInfo{Addr: d.addr, Report: r, Err: err}
		// Recovered, not "more than one attempt": a hedge that lost to a
		// slow server's reply is not a recovery.
		if i.Recovered() && d.logs(slog.LevelInfo) {
			d.log.Info("tlsdial: recovered", "addr", d.addr, "mss", r.MSS,
				"hello", r.HelloSize, "attempts", len(r.Attempts), "stalls", r.Stalls())
		}
		if r.Protection != Protected && r.Protection != UnprotectedReplayOff && d.logs(slog.LevelInfo) {
			d.log.Info("tlsdial: not protected", "addr", d.addr, "reason", r.Protection.reason(), "prelude", r.Prelude)
		}
		if st != nil && won != nil {
			// Outside e.mu: the handshake is over, and the connection
			// is not handed to the caller before quiet is closed.
			i.ConnectionState = st.connectionState(won)
		}
		d.traces.done(i)
	}
}

// unlockAndRun releases e.mu and runs the queue, unless another goroutine
// is running it already (it will run what was added, in order).
func (e *engine) unlockAndRun() { e.release(false) }

// release releases e.mu after a turn: it runs the queue, here or (async)
// in a goroutine of its own, and starts the attempts the turn launched.
//
// The attempts start last, and a turn that starts any runs its queue in a
// goroutine of its own: the newest goroutine runs next on this P, and a
// redial's connect is on a recovery's critical path, where the hooks and
// the RSTs of abandoned attempts are not (on the lab's veth paths an RST
// costs the closing thread 0.1–0.5 ms). The hooks still run in order:
// what an attempt reports is queued after its AttemptStart.
func (e *engine) release(async bool) {
	launch := e.launch
	e.launch = nil
	switch {
	case e.running || len(e.queue) == 0:
		e.mu.Unlock()
	case async || len(launch) > 0:
		e.running = true
		e.mu.Unlock()
		go func() {
			e.mu.Lock()
			e.runQueue()
		}()
	default:
		e.running = true
		e.runQueue()
	}
	for _, l := range launch {
		go e.drv.attempt(l)
	}
}

// runQueue runs the queue for the goroutine that set e.running: called
// with e.mu held, it returns with e.mu released.
func (e *engine) runQueue() {
	for len(e.queue) > 0 {
		q := e.queue
		e.queue = nil
		e.mu.Unlock()
		for _, f := range q {
			f()
		}
		e.mu.Lock()
	}
	e.running = false
	e.mu.Unlock()
}

// report returns a copy of the report as it stands.
func (e *engine) report() Report {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.m.report.clone()
}

// winner returns the attempt that completed, or nil. Call it once the
// dial is over.
func (e *engine) winner() *leg {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m.winner == 0 {
		return nil
	}
	return e.legs[e.m.winner-1]
}

// failure returns the error of a dial that is over without a winner: a
// *DialError carrying the report, the same every time. Call it under e.mu
// or once the dial is over.
func (e *engine) failure() error {
	if e.final == nil && e.m.over && e.m.winner == 0 {
		e.final = &DialError{Addr: e.dst.addr, Report: e.m.report, Err: e.m.err}
	}
	return e.final
}

// do applies f to the machine under the lock, with the time, and runs what
// it queued.
func (e *engine) do(f func(now time.Time)) {
	e.mu.Lock()
	now := time.Now()
	f(now)
	e.apply(now)
	e.unlockAndRun()
}

// abort closes an abandoned attempt's connection with an RST, then ends
// its context. The RST first: a TLS stack closes its connection when its
// context ends, with a FIN that would queue behind lost bytes. Run from
// the queue, outside e.mu (l.conn is set once, under e.mu, before the
// machine can abandon the attempt; an attempt abandoned while connecting
// has none and its context's end stops the connect).
func (l *leg) abort() {
	if l.conn != nil {
		abortConn(l.conn)
	}
	l.cancel()
}

// abortConn closes c with an RST instead of a FIN. An abandoned attempt's
// FIN would queue behind its lost bytes, keeping the server's side open
// (and retransmitting) until it times out; a server that serves one
// connection at a time (openssl s_server) would then stay stuck on it, and
// every redial would stall behind it.
func abortConn(c net.Conn) { reset.Close(c) }

// outgoing is the moment a ClientHello goes out on a connection: TCP_INFO
// as it stood just before it (base, when info) and the time.
type outgoing struct {
	base pmtu.TCPInfo
	info bool
	at   time.Time
}

// sendHello sends attempt l's ClientHello of size bytes over c with write,
// reports it, and has the engine watch from then on. Attempt 1 writes
// first and reads TCP_INFO after, so that a healthy path's hello waits for
// nothing (a getsockopt costs microseconds); the others report first, so
// that an attempt the dial no longer wants sends nothing. A failed write is
// reported as sent all the same: the caller's error says why. write nil:
// the TLS stack writes the hello itself, after this. wanted is false when
// the dial no longer wants the attempt: the caller closes c. rx counts what
// the server sent, for a timer-only judge; nil when the caller's Read
// reports the reply itself.
func (l *leg) sendHello(c net.Conn, took time.Duration, size int, rx *atomic.Int64, timerOnly bool, write func() (int, error)) (n int, err error, wanted bool) {
	o := outgoing{at: time.Now()}
	first := l.id == 1 && write != nil
	if first {
		n, err = write()
	}
	if !timerOnly {
		ti, terr := pmtu.ReadTCPInfo(c)
		if o.info = terr == nil; o.info && first {
			ti = ti.BeforeWrite(n)
		}
		o.base = ti
	}
	if !l.sent(c, took, size, o, rx) {
		return n, cmp.Or(err, net.ErrClosed), false
	}
	if write != nil && !first {
		n, err = write()
	}
	return n, err, true
}

// sent reports that the attempt is connected over c (after took) and its
// ClientHello of hello bytes went out as o says, and has the engine watch
// (in the same turn of the lock: this is on a healthy dial's critical
// path). It returns false when the attempt is not wanted any more.
func (l *leg) sent(c net.Conn, took time.Duration, hello int, o outgoing, rx *atomic.Int64) bool {
	e := l.e
	e.mu.Lock()
	if e.m.over || l.ended {
		e.mu.Unlock()
		return false
	}
	l.conn, l.info, l.rx = c, o.info, rx
	e.m.connected(l.id, rttOf(took, o.base, o.info), mssOf(l.st, c))
	e.m.sent(l.id, o.at, hello, o.base, o.info)
	l.pollFrom(o.at)
	now := time.Now()
	e.startWatching(now)
	e.apply(now)
	e.unlockAndRun()
	return true
}

// finished reports the end of the attempt's I/O and whether the dial
// keeps the attempt: it won, or its reply waits for older attempts (and
// the engine closes it if they win). If not, the caller closes what it
// opened.
func (l *leg) finished(res legResult, val any) (kept bool) {
	e := l.e
	e.mu.Lock()
	l.val = val
	now := time.Now()
	if res.kind == resRejected && l.info && l.conn != nil {
		if ti, err := pmtu.ReadTCPInfo(l.conn); err == nil {
			e.m.look(l.id, now, ti)
		}
	}
	var over error
	if res.kind != resOK {
		e.enlist(now) // it may start another attempt: see enlist
		over = ended(e.ctx)
	}
	if over != nil {
		// The attempt failed because the dial is over: say so.
		e.m.cancel(now, over)
	} else {
		e.m.finished(l.id, now, res)
	}
	kept = e.m.winner == l.id || e.m.held == l.id
	e.apply(now)
	e.unlockAndRun()
	return kept
}

// noCancel is the cancel of a leg with no context of its own.
func noCancel() {}

// ended returns why ctx is over, or nil: ctxErr, or DeadlineExceeded as
// soon as its deadline has passed (a connect bounded by it can fail a
// moment before ctx says so).
func ended(ctx context.Context) error {
	if ctx.Err() != nil {
		return ctxErr(ctx)
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// ctxErr returns why ctx ended: ctx.Err(), wrapped with the context's
// cause when it has a different one (WithCancelCause, WithTimeoutCause),
// so that errors.Is sees both, as it sees ctx.Err() in net.Dialer's
// errors.
func ctxErr(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return &causeError{err: err, cause: cause}
	}
	return err
}

// causeError is a context's end with its cause.
type causeError struct{ err, cause error }

func (e *causeError) Error() string   { return e.err.Error() + ": " + e.cause.Error() }
func (e *causeError) Unwrap() []error { return []error{e.err, e.cause} }

// resultOf classifies how an attempt's I/O ended: err nil is a reply; a
// reset or an end of stream before any reply (replied false) is what a
// box that rejects the hello does, and a smaller MSS may get past it;
// anything else is final.
func resultOf(err error, replied bool) legResult {
	switch {
	case err == nil:
		return legResult{kind: resOK}
	case !replied && isCut(err):
		return legResult{kind: resRejected, err: err}
	}
	return legResult{kind: resFailed, err: err, replied: replied}
}

// isCut reports whether err says the peer or a box on the path cut the
// connection.
func isCut(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

// mssOf returns the MSS clamp of st on c's address family.
func mssOf(st step, c net.Conn) int {
	if st.mtu == 0 {
		return 0
	}
	return pmtu.MSSForMTU(st.mtu, remoteIsIPv6(c))
}

// remoteIsIPv6 reports whether c's peer is an IPv6 address, which decides
// the MSS a path MTU maps to.
func remoteIsIPv6(c net.Conn) bool {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.To4() == nil
	}
	return false
}

// connect dials one TCP connection with the MSS clamped for mtu and
// returns it with the time the connect took.
func connect(ctx context.Context, nd *net.Dialer, network, addr string, mtu int) (net.Conn, time.Duration, error) {
	d, err := pmtu.DialerWithMTU(nd, mtu)
	if err != nil {
		return nil, 0, err
	}
	t0 := time.Now()
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, 0, err
	}
	return c, time.Since(t0), nil
}

// rttOf returns the round trip seen while connecting: the kernel's SYN RTT
// where TCP_INFO was read, else the connect time (an upper bound: it
// includes name resolution).
func rttOf(took time.Duration, ti pmtu.TCPInfo, info bool) time.Duration {
	if info && ti.RTT > 0 {
		return ti.RTT
	}
	return took
}
