package tlsdial

import (
	"context"
	"errors"
	"time"

	"github.com/fitshake/fitshake/pmtu"
)

// The machine is the policy of one dial, for both dialers: which attempts
// run, when another one starts, which one wins, and what the report and the
// trace say. It is a pure state machine: it opens no connection and reads
// no clock. Its owner (the engine) feeds it events with the time they
// happened and carries out the effects it queues, in order.
//
// An attempt at ladder step i, once its ClientHello is sent:
//
//	conclusive: upstream or downstream black hole,   ─► ends as a stall (or reset);
//	  or a reset or EOF before any reply                 step i+1 starts now
//	silent: nothing acked after hedgeAfter,           ─► step i+1 starts beside it, paced and
//	  or no reply for the stall window                   budgeted (hedge.go; same hello)
//	a reply: handshake done (Dialer),                 ─► wins, after a grace while an older, less
//	  first byte (TCPConn)                               reduced attempt may still answer (belief.go).
//	                                                     Attempts still silent that sent their hello
//	                                                     earlier were overtaken: stalls. The others
//	                                                     are superseded.
//	an alert, a certificate error, a refused connect  ─► the dial fails with it
//
// Evidence that the hello itself is refused (a split- or content-intolerant
// box, pmtu.Class.HelloRejected) jumps to the next smaller hello at once:
// no clamp can help. Otherwise only conclusive evidence on every MSS step
// moves to a smaller hello rung that drops the post-quantum share; silence
// never does, because a slow server is silent too, but it may race the
// compact post-quantum hello, which weakens nothing. When no step is
// left and every attempt is silent, the dial gives up once the oldest has
// waited giveUpAfter (or its window, if longer): a server that slow fails
// net/http's default TLSHandshakeTimeout too.
type machine struct {
	cfg        machineConfig
	legs       []*mleg // by ID − 1, in start order
	conclusive []bool  // by step index: an attempt there ended conclusively
	frontier   int     // highest step index started; −1 before any
	good       int     // lowest step index where the server's reply came (here or in another dial); len(steps) if none
	attempts   int
	began      time.Time
	report     Report
	diagnosed  bool // report.Diagnosis is set
	lastErr    error
	committing bool // commit waits for an attempt to send its hello
	// rejected is the diagnosis of the last attempt whose hello was
	// refused on the path (Class.HelloRejected).
	rejected pmtu.Diagnosis

	// hedges counts the attempts raced beside silence (hedge.go); budget
	// grants them, nil: freely.
	hedges int
	budget hedger
	// held is the attempt whose reply waits until heldUntil for older,
	// less reduced attempts that may still answer (belief.go); 0 if none.
	held      int
	heldUntil time.Time

	over   bool
	winner int // ID of the attempt that completed; 0 if none
	err    error

	out []effect
}

// machineConfig is what a dial's machine is built from.
type machineConfig struct {
	addr  string
	steps []step
	rungs []rungInfo
	// first is the step index of the first attempt (a remembered one, or
	// 0); fromCache says it was remembered for the destination,
	// fromNetwork that it is the prior of the dial's local network.
	first       int
	fromCache   bool
	fromNetwork bool
	// borrowed says that first rests on the local network's evidence, not
	// the destination's (a prior, or an entry learned from one): what the
	// dial learns is remembered as pmtu.Entry.FromNetwork.
	borrowed bool
	// maxAttempts bounds the attempts; ≤ 0 means one per step.
	maxAttempts int
	// window is StallWindow as configured: 0 derives it from the round
	// trip, negative disables stall detection (one attempt).
	window time.Duration
	// silence is how long the server was learned to take to answer at
	// step first: silence there is slowness, never raced (machine.good).
	silence time.Duration
	// deadline: no attempt starts at or after it; zero means none.
	deadline time.Time
	// rejected is what the destination was learned to do to the hello
	// (a Class whose HelloRejected is true), or ClassUnknown.
	rejected pmtu.Class
	// lookSoon: the process has not seen the destination answer a dial's
	// first attempt, so attempts take their first look at TCP_INFO sooner
	// (looks.go).
	lookSoon bool
}

// rungInfo describes one hello rung of the ladder.
type rungInfo struct {
	name       string // "" for the TLS stack's own hello (TCPDialer)
	size       int    // ClientHello record bytes; 0 until known (TCPDialer)
	pq         bool   // it carries a post-quantum key share
	oneSegment bool   // it is made to fit one segment: tried unclamped
}

// giveUpAfter bounds how long a dial waits for a silent server once no
// step is left to try: net/http's default TLSHandshakeTimeout.
const giveUpAfter = 10 * time.Second

// mleg is the machine's view of one attempt.
type mleg struct {
	id      int
	idx     int       // step index
	start   time.Time // the attempt began (connect included)
	conn    bool      // connected
	sentAt  time.Time // the ClientHello went out; zero until then
	mon     *monitor  // nil until sent, and when stall detection is off
	spawned bool      // it started the next step beside itself
	ended   bool
	// budgeted: it is a hedge taken from the destination's budget,
	// returned when it ends.
	budgeted bool
	// retryAt: a hedge it asked for was denied; it asks again then.
	retryAt time.Time
}

type resultKind uint8

const (
	resOK       resultKind = iota // the handshake completed, or the first byte came
	resRejected                   // reset or closed before any reply: conclusive
	resFailed                     // anything else: final
)

// legResult is how an attempt's I/O ended.
type legResult struct {
	kind    resultKind
	err     error
	replied bool // the server's bytes arrived before err (an alert, a certificate)
}

type effKind uint8

const (
	effStart effKind = iota + 1 // open attempt id at step
	effAbort                    // close attempt id, which has ended
	effStall                    // attempt id stalled: Trace.Stall with stall
	effEnded                    // attempt id ended: Trace.AttemptDone
	effShare                    // tell other dials to the destination: step stalled, or replied
)

type effect struct {
	kind    effKind
	id      int
	step    step
	replied bool
	needed  bool
	stall   StallInfo
}

// news is what one dial tells the others to the same destination.
type news struct {
	step    step
	replied bool // the server's reply came at step; false: step stalled conclusively
	needed  bool // and no step before it could have worked (belief.go)
}

func newMachine(cfg machineConfig) *machine {
	if cfg.window < 0 {
		cfg.maxAttempts = 1
	}
	if cfg.maxAttempts <= 0 || cfg.maxAttempts > len(cfg.steps) {
		// More attempts than steps could only repeat a step.
		cfg.maxAttempts = len(cfg.steps)
	}
	m := &machine{
		cfg:        cfg,
		conclusive: make([]bool, len(cfg.steps)),
		frontier:   -1,
		good:       len(cfg.steps),
		report:     Report{FromCache: cfg.fromCache, FromNetwork: cfg.fromNetwork},
	}
	if cfg.silence > 0 {
		m.good = cfg.first
	}
	return m
}

// drain returns the queued effects and empties the queue.
func (m *machine) drain() []effect {
	out := m.out
	m.out = m.out[len(m.out):]
	return out
}

func (m *machine) emit(e effect) { m.out = append(m.out, e) }

// recycle takes back effs, which drain returned and which have been
// carried out, so that later effects reuse its array: unless effects were
// emitted meanwhile (they are in m.out, on effs's array).
func (m *machine) recycle(effs []effect) {
	if len(m.out) == 0 {
		clear(effs)
		m.out = effs[:0]
	}
}

func (m *machine) leg(id int) *mleg { return m.legs[id-1] }

func (m *machine) attempt(id int) *Attempt { return &m.report.Attempts[id-1] }

// begin starts the dial's first attempt.
func (m *machine) begin(now time.Time) {
	m.began = now
	if !m.canStart(now) {
		m.finish(now, context.DeadlineExceeded)
		return
	}
	m.startAt(now, m.cfg.first, false)
}

func (m *machine) canStart(now time.Time) bool {
	if m.over || m.attempts >= m.cfg.maxAttempts {
		return false
	}
	return m.cfg.deadline.IsZero() || now.Before(m.cfg.deadline)
}

func (m *machine) startAt(now time.Time, idx int, hedge bool) {
	st := m.cfg.steps[idx]
	r := m.cfg.rungs[st.rung]
	m.attempts++
	id := len(m.legs) + 1
	m.legs = append(m.legs, &mleg{id: id, idx: idx, start: now})
	m.report.Attempts = append(m.report.Attempts, Attempt{
		ID: id, MTU: st.mtu, HelloSize: r.size, Rung: r.name, Hedge: hedge,
	})
	m.frontier = max(m.frontier, idx)
	m.emit(effect{kind: effStart, id: id, step: st})
}

// connected records attempt id's TCP connection.
func (m *machine) connected(id int, rtt time.Duration, mss int) {
	a := m.attempt(id)
	a.ConnectRTT, a.MSS = rtt, mss
	m.leg(id).conn = true
}

// sent records that attempt id's ClientHello of hello record bytes goes
// out now; base is TCP_INFO just before, valid when info.
func (m *machine) sent(id int, now time.Time, hello int, base pmtu.TCPInfo, info bool) {
	l, a := m.leg(id), m.attempt(id)
	if l.ended {
		return
	}
	l.sentAt = now
	a.HelloSize = hello
	if r := &m.cfg.rungs[m.cfg.steps[l.idx].rung]; r.size == 0 {
		r.size = hello // TCPDialer: the stack's hello, the same on every attempt
	}
	if m.cfg.window >= 0 {
		a.StallWindow = m.windowFor(a.ConnectRTT)
		l.mon = newMonitor(hello, now, a.ConnectRTT, a.StallWindow, hedgeGap(a.StallWindow, m.hedges), base, info)
	}
	if m.committing {
		m.commit(now)
	}
}

// windowFor is the stall window of an attempt whose connect took rtt,
// widened to what the server was learned to need.
func (m *machine) windowFor(rtt time.Duration) time.Duration {
	w := stallWindow(m.cfg.window, rtt)
	if s := m.cfg.silence; s > 0 {
		w = max(w, min(s+s/4, giveUpAfter))
	}
	return w
}

// waiting reports whether attempt id has sent its hello and awaits the
// reply: only then does observing it mean anything.
func (m *machine) waiting(id int) bool {
	l := m.leg(id)
	return !m.over && !l.ended && !m.holding(l) && l.mon != nil
}

// observe feeds attempt id's TCP_INFO (used when the attempt reads it) or
// the count of bytes received from the server (used otherwise).
func (m *machine) observe(id int, now time.Time, ti pmtu.TCPInfo, received uint64) {
	if !m.waiting(id) {
		return
	}
	l := m.leg(id)
	v := l.mon.observe(now, ti, received)
	if l.mon.received > 0 {
		m.replied(l.idx)
	}
	switch v {
	case verdictStall:
		m.stall(now, l, 0)
		m.moveOn(now, l)
	case verdictHedge:
		m.spawn(now, l)
	}
	m.checkHeld(now)
	m.checkGiveUp(now)
}

// look updates attempt id's evidence with TCP_INFO taken as its I/O
// ended, before finished: what was acknowledged tells a refused hello
// from a refused packet.
func (m *machine) look(id int, now time.Time, ti pmtu.TCPInfo) {
	if m.waiting(id) && m.leg(id).mon.info {
		m.leg(id).mon.look(now, ti)
	}
}

// tick re-evaluates the timers of every waiting attempt that does not read
// TCP_INFO and the give-up bound.
func (m *machine) tick(now time.Time, received func(id int) uint64) {
	for _, l := range m.legs {
		if m.waiting(l.id) && !l.mon.info {
			m.observe(l.id, now, pmtu.TCPInfo{}, received(l.id))
		}
	}
	m.checkHeld(now)
	m.checkGiveUp(now)
}

func (m *machine) live() int {
	n := 0
	for _, l := range m.legs {
		if !l.ended {
			n++
		}
	}
	return n
}

// checkGiveUp ends a dial whose ladder is spent and whose attempts have
// all been silent for giveUpAfter (or their window, if longer).
func (m *machine) checkGiveUp(now time.Time) {
	oldest, ok := m.spentSince()
	if !ok || now.Before(oldest) {
		return
	}
	for _, l := range m.legs {
		if !l.ended {
			m.stall(now, l, 0)
		}
	}
	if d, l, ok := m.proxyVerdict(); ok {
		m.report.Diagnosis = d
		m.lastErr = m.stallError(now, l, d)
	}
	m.finish(now, m.lastErr)
}

// spentSince returns when the dial gives up if nothing changes: false while
// it may still start an attempt or one is connecting.
func (m *machine) spentSince() (time.Time, bool) {
	if m.over || m.live() == 0 || m.held != 0 {
		return time.Time{}, false
	}
	var oldest time.Time
	for _, l := range m.legs {
		if l.ended {
			continue
		}
		if l.mon == nil {
			return time.Time{}, false // connecting, or stall detection is off
		}
		if m.canSpawn(l) && l.retryAt.IsZero() {
			return time.Time{}, false // it will start the next step when silent
		}
		at := l.sentAt.Add(max(giveUpAfter, l.mon.window))
		if oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
	}
	return oldest, true
}

// finished records how attempt id's I/O ended.
func (m *machine) finished(id int, now time.Time, res legResult) {
	l := m.leg(id)
	if m.over || l.ended {
		return
	}
	switch res.kind {
	case resOK:
		m.replied(l.idx)
		m.reply(now, l)
		return
	case resRejected:
		m.end(now, l, OutcomeReset, res.err)
		m.conclusive[l.idx] = true
		m.emit(effect{kind: effShare, step: m.cfg.steps[l.idx]})
		m.moveOn(now, l)
	default:
		if res.replied {
			m.endOthers(now, l)
		}
		m.end(now, l, OutcomeError, res.err)
		if m.live() == 0 {
			m.finish(now, res.err)
		}
	}
	m.checkHeld(now)
}

// endOthers ends every other running attempt because w got the server's
// reply: one still waiting that sent its hello before w did was overtaken
// (a stall), the others are superseded.
func (m *machine) endOthers(now time.Time, w *mleg) {
	for _, l := range m.legs {
		if l == w || l.ended {
			continue
		}
		if !m.holding(l) && !l.sentAt.IsZero() && l.sentAt.Before(w.sentAt) && l.mon != nil && !l.mon.replying(now) {
			m.stall(now, l, m.attempt(w.id).MSS)
			continue
		}
		m.end(now, l, OutcomeSuperseded, errSuperseded)
	}
}

// stall ends l as stalled. overtakenBy is the MSS of an attempt that got a
// reply meanwhile (0 if none).
func (m *machine) stall(now time.Time, l *mleg, overtakenBy int) {
	d := l.mon.diagnosis()
	d.Evidence.OvertakenBy = overtakenBy
	serr := m.stallError(now, l, d)
	m.emit(effect{kind: effStall, id: l.id, stall: StallInfo{
		Addr: m.cfg.addr, ID: l.id, Elapsed: serr.Elapsed, Window: serr.Window, Diagnosis: d,
	}})
	if d.Class.BlackHole() || d.Class.HelloRejected() || overtakenBy > 0 {
		// Only what shows the step cannot work is told.
		m.conclusive[l.idx] = true
		m.emit(effect{kind: effShare, step: m.cfg.steps[l.idx]})
	}
	m.endDiag(now, l, OutcomeStall, serr, d)
}

// stallError is the error of attempt l, stalled as d says.
func (m *machine) stallError(now time.Time, l *mleg, d pmtu.Diagnosis) *StallError {
	a := m.attempt(l.id)
	return &StallError{
		Addr: m.cfg.addr, ID: l.id, MSS: a.MSS, HelloSize: a.HelloSize,
		Elapsed: now.Sub(l.sentAt), Window: l.mon.window, Diagnosis: d,
	}
}

// end ends attempt l with outcome o and its error.
func (m *machine) end(now time.Time, l *mleg, o Outcome, err error) {
	var d pmtu.Diagnosis
	if l.mon != nil {
		d = l.mon.diagnosis()
	}
	switch o {
	case OutcomeReset:
		d.Evidence.Sent = m.attempt(l.id).HelloSize
		d.Evidence.Elapsed = now.Sub(l.sentAt)
		d.Class = m.rejection(l, d.Evidence)
	case OutcomeOK:
		if l.mon != nil && l.mon.info {
			d.Class = pmtu.ClassReplied
		}
	}
	m.endDiag(now, l, o, err, d)
}

func (m *machine) endDiag(now time.Time, l *mleg, o Outcome, err error, d pmtu.Diagnosis) {
	a := m.attempt(l.id)
	if d.Class.HelloRejected() {
		m.rejected = d
		err = m.helloError(a, d, err)
	}
	l.ended = true
	if l.budgeted {
		l.budgeted = false
		m.budget.release()
	}
	a.Outcome, a.Err, a.Diagnosis = o, err, d
	a.Duration = now.Sub(l.start)
	if err != nil {
		m.lastErr = err
	}
	// The report explains the dial with its first stall or reset, unless
	// a later one showed the hello itself refused: that is the cause.
	if (o == OutcomeStall || o == OutcomeReset) && (!m.diagnosed || m.strongerRefusal(d.Class)) {
		m.diagnosed = true
		m.report.Diagnosis = d
	}
	if o != OutcomeOK {
		m.emit(effect{kind: effAbort, id: l.id})
	}
	m.emit(effect{kind: effEnded, id: l.id})
}

// win completes the report for attempt w, which completed.
func (m *machine) win(now time.Time, w *mleg) {
	a := m.attempt(w.id)
	r := &m.report
	r.MTU, r.MSS, r.HelloSize, r.Rung = a.MTU, a.MSS, a.HelloSize, a.Rung
	rung := m.cfg.steps[w.idx].rung
	r.SecurityReduced = m.cfg.rungs[0].pq && !m.cfg.rungs[rung].pq
	m.winner = w.id
	m.finish(now, nil)
}

// finish ends the dial: with the winner when err is nil.
func (m *machine) finish(now time.Time, err error) {
	if err == nil && m.winner == 0 {
		err = errNoAttempt
	}
	m.over, m.err = true, err
	m.report.Duration = now.Sub(m.began)
}

var errNoAttempt = errors.New("tlsdial: no attempt could start")

// cancel ends the dial because its context ended or its connection was
// closed.
func (m *machine) cancel(now time.Time, err error) {
	if m.over {
		return
	}
	for _, l := range m.legs {
		if !l.ended {
			m.end(now, l, OutcomeCanceled, err)
		}
	}
	m.finish(now, err)
}

// commit stops the race and keeps the oldest connected attempt as the
// connection: the TLS stack wrote again before any reply, so the hello can
// no longer be replayed, or what it sent was no ClientHello at all. With
// none connected yet, it happens when one is.
func (m *machine) commit(now time.Time) {
	if m.over {
		return
	}
	var keep *mleg
	for _, l := range m.legs {
		if !l.ended && l.conn {
			keep = l
			break
		}
	}
	if keep == nil {
		m.committing = true
		return
	}
	m.committing = false
	for _, l := range m.legs {
		if l != keep && !l.ended {
			m.end(now, l, OutcomeSuperseded, errCommitted)
		}
	}
	m.end(now, keep, OutcomeOK, nil)
	m.win(now, keep)
}

// retried records that attempt id's hello was answered by a
// HelloRetryRequest, which the TLS stack has read: the other attempts end
// (they replayed the first hello only), and id waits unwatched for its
// second hello, whose sent starts its watch afresh. False if the dial is
// over or id ended.
func (m *machine) retried(now time.Time, id int) bool {
	l := m.leg(id)
	if m.over || l.ended {
		return false
	}
	for _, o := range m.legs {
		if o != l && !o.ended {
			m.end(now, o, OutcomeSuperseded, errRetried)
		}
	}
	// The steps those attempts tried are tried again for the second
	// hello, from l's.
	m.held, m.frontier = 0, l.idx
	l.mon, l.sentAt = nil, time.Time{}
	if m.good == l.idx {
		// The retry request was no sign that the server's flight gets
		// through at this step: silence after the second hello is not
		// slowness.
		m.good = len(m.cfg.steps)
	}
	return true
}

// nextWake returns when a timer decision falls due without new events:
// the silence verdict of an attempt that does not read TCP_INFO and would
// start the next step, or the give-up bound. Zero means none.
func (m *machine) nextWake() time.Time {
	var at time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	for _, l := range m.legs {
		if m.waiting(l.id) && !l.mon.info && m.canSpawn(l) {
			due := l.mon.due()
			if due.Before(l.retryAt) {
				due = l.retryAt
			}
			earliest(due)
		}
	}
	if m.held != 0 {
		earliest(m.heldUntil)
	}
	if t, ok := m.spentSince(); ok {
		earliest(t)
	}
	return at
}

// pollEvery returns how often attempt id's TCP_INFO should be read; 0
// means never (it does not read TCP_INFO, or does not wait).
//
// Every millisecond while a black hole could show: until the hello is
// acknowledged (an upstream hole shows within a round trip) and while the
// server's flight may arrive with a hole (a downstream one). Once the reply
// is arriving, or the server is known to answer at this step, only a
// stuck reply or the give-up bound is left to see, and both take hundreds
// of milliseconds: slowPollInterval. Under load — hundreds of dials
// waiting on one slow server — that keeps polling off the CPU the
// handshakes need.
func (m *machine) pollEvery(id int) time.Duration {
	if !m.waiting(id) || !m.leg(id).mon.info {
		return 0
	}
	l := m.leg(id)
	if l.mon.received > 0 || (l.idx >= m.good && l.mon.diag.Class == pmtu.ClassSilent) {
		return slowPollInterval
	}
	return pollInterval
}

var (
	errSuperseded = errors.New("tlsdial: a parallel attempt got the reply first")
	errRetried    = errors.New("tlsdial: the server asked for a second ClientHello on another attempt")
	errCommitted  = errors.New("tlsdial: the TLS stack wrote again before any reply; another attempt was kept")
)
