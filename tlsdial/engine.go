package tlsdial

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fitshake/fitshake/pmtu"
)

// An engine runs one dial for either dialer. It owns the dial's machine
// (the policy), the I/O side of its attempts, its timer and its place in
// the destination's group. Ownership rule: exactly one goroutine at a time
// touches an engine — the Dialer's caller for a whole dial; for a TCPConn,
// the caller that moved the connection out of its fresh state, and then
// the watcher goroutine that run is started in. Attempts run their I/O in
// goroutines of their own and report to the owner through events; the
// owner decides, closes the losers, and calls hooks with no lock held.
type engine struct {
	m      *machine
	drv    driver
	dst    destination
	ctx    context.Context // ends the dial; its cause is the dial's error
	legs   []*leg          // by ID − 1
	events chan legEvent
	inbox  chan news
	grp    *group
	done   chan struct{} // closed when the dial is over: late attempts clean up after themselves
	timer  *time.Timer
	commit chan struct{} // TCPConn: the stack wrote again, keep one attempt; nil for Dialer
	// snapshots makes the engine publish the report after every batch of
	// effects, for TCPConn.Report while the dial runs.
	snapshots bool
	snap   atomic.Pointer[Report] // the report as of the last batch of effects, if snapshots
	final  error                  // the dial's error, built by failure
}

// destination is what a dial is to: shared by its engine and its adapter.
type destination struct {
	network, addr string
	cache         *pmtu.Cache
	key           pmtu.Key
	traces        traces
	log           *slog.Logger
}

// driver is what differs between the dialers: the I/O of one attempt.
type driver interface {
	// attempt runs attempt l in its own goroutine: it connects at l.st
	// (unless l.conn is already set), sends the ClientHello and waits for
	// the reply, reporting with l.sent and l.finished. When a report
	// returns false the dial is over and the driver closes what it opened.
	attempt(l *leg)
}

// leg is the I/O side of one attempt. The engine's owner sets conn, info
// and rx from the sent event; the attempt's goroutine keeps its own
// copies.
type leg struct {
	id       int
	st       step
	e        *engine
	ctx      context.Context
	cancel   context.CancelFunc
	conn     net.Conn
	info     bool
	rx       *atomic.Int64 // bytes read from the server; nil if not counted
	val      any           // the driver's result, from the finished event
	ended    bool          // the machine ended it; its connection is closed
	nextPoll time.Time     // when to read its TCP_INFO next

	// TCPConn's first read: set by the attempt's goroutine before it closes
	// got; keep is set for the winner before the dial ends.
	got      chan struct{}
	buf      *[firstReadSize]byte // first's storage, from firstBufs
	first    []byte
	firstErr error
	keep     atomic.Bool
}

type evKind uint8

const (
	evSent     evKind = iota + 1 // connected, and the ClientHello goes out now
	evFinished                   // the attempt's I/O ended
)

// legEvent is what an attempt's goroutine reports.
type legEvent struct {
	kind  evKind
	id    int
	at    time.Time
	conn  net.Conn
	rtt   time.Duration
	hello int
	base  pmtu.TCPInfo
	info  bool
	rx    *atomic.Int64
	res   legResult
	val   any
}

// newEngine prepares the engine of one dial; the machine's first attempt
// is queued, not yet started.
func newEngine(ctx context.Context, dst destination, cfg machineConfig, drv driver) *engine {
	e := &engine{
		m:      newMachine(cfg),
		drv:    drv,
		dst:    dst,
		ctx:    ctx,
		events: make(chan legEvent), // unbuffered: a delivered event is one the owner handles
		inbox:  make(chan news, 4),
		done:   make(chan struct{}),
	}
	e.m.begin(time.Now())
	return e
}

// run is the dial's loop. It returns when the dial is over, with every
// attempt but the winner closed and the Done hook called.
func (e *engine) run() {
	var known []news
	e.grp, known = joinGroup(groupKey{e.dst.cache, e.dst.key}, e.inbox)
	for _, n := range known {
		e.m.peer(time.Now(), n)
	}
	e.timer = time.NewTimer(time.Hour)
	defer e.timer.Stop()
	for _, l := range e.legs {
		if !l.ended {
			go e.drv.attempt(l) // started before run: TCPConn's first
		}
	}
	e.flush(e.launch)
	for !e.m.over {
		e.arm()
		select {
		case ev := <-e.events:
			e.handle(ev)
		case n := <-e.inbox:
			e.m.peer(time.Now(), n)
		case now := <-e.timer.C:
			e.poll(now)
		case <-e.commit:
			e.m.commit(time.Now())
		case <-e.ctx.Done():
			e.m.cancel(time.Now(), context.Cause(e.ctx))
		}
		e.flush(e.launch)
	}
	e.end()
}

// launch runs a new attempt's I/O in its own goroutine.
func (e *engine) launch(l *leg) { go e.drv.attempt(l) }

// arm sets the timer for the next TCP_INFO poll or timer decision.
func (e *engine) arm() {
	now := time.Now()
	at := e.m.nextWake()
	for _, l := range e.legs {
		if e.m.pollEvery(l.id) == 0 {
			continue
		}
		next := l.nextPoll
		if next.Before(now) { // zero: not polled yet
			next = now
		}
		if at.IsZero() || next.Before(at) {
			at = next
		}
	}
	d := time.Hour
	if !at.IsZero() {
		d = max(at.Sub(now), 0)
	}
	e.timer.Reset(d)
}

// poll reads TCP_INFO of the waiting attempts whose turn it is and lets
// the machine judge them all.
func (e *engine) poll(now time.Time) {
	for _, l := range e.legs {
		every := e.m.pollEvery(l.id)
		if every == 0 || now.Before(l.nextPoll) {
			continue
		}
		ti, err := pmtu.ReadTCPInfo(l.conn)
		if err != nil {
			continue // closed under us: its result is on its way
		}
		e.m.observe(l.id, now, ti, 0)
		l.nextPoll = now.Add(e.m.pollEvery(l.id))
	}
	e.m.tick(now, e.received)
}

func (e *engine) received(id int) uint64 {
	if rx := e.legs[id-1].rx; rx != nil {
		return uint64(rx.Load())
	}
	return 0
}

func (e *engine) handle(ev legEvent) {
	l := e.legs[ev.id-1]
	switch ev.kind {
	case evSent:
		l.conn, l.info, l.rx = ev.conn, ev.info, ev.rx
		if l.ended {
			abortConn(l.conn)
			return
		}
		e.m.connected(l.id, rttOf(ev.rtt, ev.base, ev.info), mssOf(l.st, ev.conn))
		e.m.sent(l.id, ev.at, ev.hello, ev.base, ev.info)
	case evFinished:
		l.val = ev.val
		if err := ended(e.ctx); ev.res.kind != resOK && err != nil {
			// The attempt failed because the dial is over: say so.
			e.m.cancel(ev.at, err)
			return
		}
		e.m.finished(l.id, ev.at, ev.res)
	}
}

// flush carries out the machine's effects in order; start opens a new
// attempt. Hooks run here, in the owner's goroutine, with no lock held.
func (e *engine) flush(start func(*leg)) {
	effs := e.m.drain()
	for _, ef := range effs {
		switch ef.kind {
		case effStart:
			l := e.newLeg(ef.id, ef.step)
			e.dst.traces.attemptStart(e.startInfo(ef.id))
			start(l)
		case effAbort:
			e.abort(e.legs[ef.id-1])
		case effStall:
			e.dst.traces.stall(ef.stall)
			if e.dst.logs(slog.LevelInfo) {
				e.dst.log.Info("tlsdial: handshake stalled", "addr", e.dst.addr, "attempt", ef.id,
					"class", ef.stall.Diagnosis.Class, "elapsed", ef.stall.Elapsed, "why", ef.stall.Diagnosis.String())
			}
		case effEnded:
			a := e.m.report.Attempts[ef.id-1]
			e.dst.traces.attemptDone(AttemptDoneInfo{Addr: e.dst.addr, Attempt: a})
			if e.dst.logs(slog.LevelDebug) {
				e.dst.log.Debug("tlsdial: attempt done", "addr", e.dst.addr, "attempt", a.ID,
					"mss", a.MSS, "hello", a.HelloSize, "outcome", a.Outcome, "err", a.Err)
			}
		case effShare:
			if e.grp != nil {
				e.grp.tell(e.inbox, news{step: ef.step, replied: ef.replied})
			}
		}
	}
	if len(effs) > 0 && e.snapshots {
		e.publish()
	}
}

func (e *engine) newLeg(id int, st step) *leg {
	ctx, cancel := context.WithCancel(e.ctx)
	l := &leg{id: id, st: st, e: e, ctx: ctx, cancel: cancel, got: make(chan struct{})}
	e.legs = append(e.legs, l)
	return l
}

func (e *engine) startInfo(id int) AttemptStartInfo {
	a := e.m.report.Attempts[id-1]
	return AttemptStartInfo{
		Addr: e.dst.addr, ID: id, MTU: a.MTU, HelloSize: a.HelloSize, Rung: a.Rung,
		FromCache: e.m.report.FromCache && id == 1, Hedge: a.Hedge,
	}
}

// abort stops attempt l, which the machine has ended: its I/O is canceled
// and its connection reset.
func (e *engine) abort(l *leg) {
	l.ended = true
	l.cancel()
	if l.conn != nil {
		abortConn(l.conn)
	}
}

// abortConn closes c with an RST instead of a FIN. An abandoned attempt's
// FIN would queue behind its lost bytes, keeping the server's side open
// (and retransmitting) until it times out; a server that serves one
// connection at a time (openssl s_server) would then stay stuck on it, and
// every redial would stall behind it.
func abortConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// publish stores a copy of the report for readers outside the owner.
func (e *engine) publish() {
	r := e.m.report
	r.Attempts = append([]Attempt(nil), r.Attempts...)
	e.snap.Store(&r)
}

// report returns the latest published report; its Attempts are the
// caller's.
func (e *engine) report() Report {
	p := e.snap.Load()
	if p == nil {
		return Report{}
	}
	r := *p
	r.Attempts = append([]Attempt(nil), r.Attempts...)
	return r
}

// end completes an ended dial: the cache learns, the group is left, the
// Done hook is called.
func (e *engine) end() {
	if w := e.winner(); w != nil {
		w.keep.Store(true) // before done: its goroutine must not close it
	}
	close(e.done)
	if e.grp != nil {
		e.grp.leave(e.inbox)
	}
	for _, l := range e.legs {
		if l.id != e.m.winner {
			l.cancel() // already ended: frees the context
		}
	}
	if entry, ok := e.m.remember(time.Now()); ok {
		e.dst.cache.Store(e.dst.key, entry)
	}
	r := e.m.report
	if e.m.winner != 0 {
		if (r.Stalls() > 0 || len(r.Attempts) > 1) && e.dst.logs(slog.LevelInfo) {
			e.dst.log.Info("tlsdial: recovered", "addr", e.dst.addr, "mss", r.MSS,
				"hello", r.HelloSize, "attempts", len(r.Attempts), "stalls", r.Stalls())
		}
		e.dst.traces.done(DoneInfo{Addr: e.dst.addr, Report: r})
		return
	}
	e.dst.traces.done(DoneInfo{Addr: e.dst.addr, Report: r, Err: e.failure()})
}

// failure returns the error of a dial that is over without a winner: a
// *DialError carrying the report, the same every time.
func (e *engine) failure() error {
	if e.final == nil && e.m.over && e.m.winner == 0 {
		e.final = &DialError{Addr: e.dst.addr, Report: e.m.report, Err: e.m.err}
	}
	return e.final
}

// winner returns the attempt that completed, or nil.
func (e *engine) winner() *leg {
	if e.m.winner == 0 {
		return nil
	}
	return e.legs[e.m.winner-1]
}

// sent reports that the attempt is connected over c and its ClientHello of
// hello bytes goes out now. It takes TCP_INFO before the write, unless
// timerOnly, and returns false when the dial is over.
func (l *leg) sent(c net.Conn, rtt time.Duration, hello int, timerOnly bool, rx *atomic.Int64) bool {
	ev := legEvent{kind: evSent, id: l.id, conn: c, rtt: rtt, hello: hello, rx: rx}
	if !timerOnly {
		var err error
		ev.base, err = pmtu.ReadTCPInfo(c)
		ev.info = err == nil
	}
	ev.at = time.Now()
	return l.report(ev)
}

// finished reports the end of the attempt's I/O and returns false when the
// dial is over.
func (l *leg) finished(res legResult, val any) bool {
	return l.report(legEvent{kind: evFinished, id: l.id, at: time.Now(), res: res, val: val})
}

func (l *leg) report(ev legEvent) bool {
	select {
	case l.e.events <- ev:
		return true
	case <-l.e.done:
		return false
	}
}

// ended returns why ctx is over, or nil: its cause, or DeadlineExceeded
// as soon as its deadline has passed (a connect bounded by it can fail a
// moment before ctx says so).
func ended(ctx context.Context) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

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
