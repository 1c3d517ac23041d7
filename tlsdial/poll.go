package tlsdial

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/fitshake/fitshake/pmtu"
)

// The TCP_INFO polls of every dial in the process are run by one poller,
// so that their cost stays bounded however many dials wait at once.
//
// What a poll costs is mostly the wake-up, not the read: on the project's
// VM a getsockopt(TCP_INFO) takes about 2 µs, but each wake of an
// otherwise idle Go process by a timer costs 60–70 µs of CPU at one a
// millisecond (more the longer it slept). With a timer per dial, each of
// 100 dials waiting on a server that answers after 100 ms paid ~380 µs of
// CPU more than crypto/tls (BenchmarkDialCPU), and the wakes grew with
// the dials. The poller wakes at most once per pollGap and reads, on each
// wake, the attempts of at most pollBudget dials whose turn it is, taken
// round-robin:
//
//	dials due    reads per wake    each attempt polled every
//	≤ budget     all due           its own interval (1 ms, or 10 ms)
//	N > budget   budget            about N / budget × pollGap
//
// A lone dial is polled exactly as before: one interval after its hello,
// then every interval, the poller's timer set to its due time.
const (
	// pollGap is the shortest time between two wakes of the poller: at
	// most 2000 wakes a second, whatever the number of dials.
	pollGap = pollInterval / 2
	// pollBudget is how many dials one wake polls at most (the read, the
	// monitor, the lock: a few µs each): at most 16 000 polls a second.
	pollBudget = 8
)

// poller runs the TCP_INFO polls of all dials. Its fields, and each
// engine's pollAt and pollIdx, are guarded by mu. Lock order: an engine's
// mu, then the poller's; the poller never holds its own while it polls.
type poller struct {
	mu      sync.Mutex
	engines []*engine // the dials with an attempt to poll
	cursor  int       // where the next wake starts looking: round-robin
	timer   *time.Timer
	next    time.Time // when timer fires; zero when it is not set
	last    time.Time // the last wake
	ticking bool      // a wake is polling: it sets the timer when done
	batch   []*engine // the dials one wake polls; only the wake uses it

	reads atomic.Int64 // TCP_INFO reads by polls, for tests and benchmarks
}

// polls is the process's poller.
var polls poller

// set makes the poller poll e's attempts from at, or forgets e when at is
// zero. Called under e.mu.
func (p *poller) set(e *engine, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if at.IsZero() {
		if i := e.pollIdx; i > 0 {
			last := len(p.engines) - 1
			moved := p.engines[last]
			p.engines[i-1], moved.pollIdx = moved, i
			p.engines[last] = nil
			p.engines = p.engines[:last]
			e.pollIdx = 0
		}
		return
	}
	if e.pollIdx == 0 {
		p.engines = append(p.engines, e)
		e.pollIdx = len(p.engines)
	}
	e.pollAt = at
	if !p.ticking {
		p.schedule(at)
	}
}

// schedule sets the timer to at, unless it is set to fire sooner, and no
// sooner than pollGap after the last wake. Under p.mu.
func (p *poller) schedule(at time.Time) {
	at = maxTime(at, p.last.Add(pollGap))
	if !p.next.IsZero() && !at.Before(p.next) {
		return
	}
	p.next = at
	d := time.Until(at)
	if p.timer == nil {
		p.timer = time.AfterFunc(d, p.wake)
		return
	}
	p.timer.Reset(d)
}

// wake polls the dials that are due, at most pollBudget of them starting
// where the last wake stopped, and sets the timer for the next one due.
func (p *poller) wake() {
	p.mu.Lock()
	now := time.Now()
	p.ticking, p.next, p.last = true, time.Time{}, now
	due := p.batch[:0]
	n, i := len(p.engines), 0
	for ; i < n && len(due) < pollBudget; i++ {
		e := p.engines[(p.cursor+i)%n]
		if !e.pollAt.After(now) {
			due = append(due, e)
		}
	}
	if n > 0 {
		p.cursor = (p.cursor + i) % n
	}
	p.mu.Unlock()

	for _, e := range due {
		e.poll()
	}
	clear(due)

	p.mu.Lock()
	p.batch = due
	p.ticking = false
	var at time.Time
	for _, e := range p.engines {
		if at.IsZero() || e.pollAt.Before(at) {
			at = e.pollAt
		}
	}
	if !at.IsZero() {
		p.schedule(at)
	}
	p.mu.Unlock()
}

// poll reads TCP_INFO of the attempts of e whose turn it is and lets the
// machine judge them. The effects that call out run in a goroutine of
// their own, so that a slow hook delays no other dial's poll.
func (e *engine) poll() {
	e.mu.Lock()
	now := time.Now()
	for _, l := range e.legs {
		every := e.m.pollEvery(l.id)
		if every == 0 || now.Before(l.nextPoll) {
			continue
		}
		ti, err := pmtu.ReadTCPInfo(l.conn)
		polls.reads.Add(1)
		if err != nil {
			continue // closed under us: its result is on its way
		}
		e.m.observe(l.id, now, ti, 0)
		l.nextPoll = now.Add(e.m.pollEvery(l.id))
	}
	e.m.tick(now, e.received)
	e.apply()
	if e.running || len(e.queue) == 0 {
		e.mu.Unlock()
		return
	}
	e.running = true
	e.mu.Unlock()
	go func() {
		e.mu.Lock()
		e.runQueue()
	}()
}

// pollDue returns when the next of e's attempts is due a poll; zero when
// none polls. Under e.mu.
func (e *engine) pollDue() time.Time {
	var at time.Time
	for _, l := range e.legs {
		if e.m.pollEvery(l.id) == 0 {
			continue
		}
		if at.IsZero() || l.nextPoll.Before(at) {
			at = l.nextPoll
		}
	}
	return at
}

// polled tells the poller when e is next due a poll (zero: never), if
// that changed. Under e.mu.
func (e *engine) polled(at time.Time) {
	if at.Equal(e.pollSet) {
		return
	}
	e.pollSet = at
	polls.set(e, at)
}

func maxTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}
