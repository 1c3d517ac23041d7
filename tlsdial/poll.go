package tlsdial

import (
	"sync/atomic"
	"time"

	"github.com/fitshake/fitshake/internal/tcppoll"
	"github.com/fitshake/fitshake/pmtu"
)

// The TCP_INFO polls of every dial in the process are run by one poller
// (package tcppoll, which says why), so that their cost stays bounded
// however many dials wait at once. A lone dial is polled as with a timer
// of its own: one interval after its hello (or its early first look,
// looks.go, set precisely: see polled), then every interval.
const (
	// pollGap is the shortest time between two wakes of the poller: at
	// most 2000 wakes a second, whatever the number of dials.
	pollGap = pollInterval / 2
	// pollBudget is how many dials one wake polls at most (the read, the
	// monitor, the lock: a few µs each): at most 16 000 polls a second.
	pollBudget = 8
)

// poller runs the TCP_INFO polls of all dials. Each engine's pollAt and
// pollIdx are the tcppoll.Poller's, guarded by its lock. Lock order: an
// engine's mu, then the poller's; the poller never holds its own while it
// polls.
type poller struct {
	tcppoll.Poller

	reads   atomic.Int64 // TCP_INFO reads by polls, for tests and benchmarks
	precise atomic.Int64 // polls set precisely (early first looks), for tests
}

// polls is the process's poller.
var polls = poller{Poller: tcppoll.Poller{Gap: pollGap, Budget: pollBudget}}

// set makes the poller poll e's attempts from at, or forgets e when at is
// zero; precisely (tcppoll.Poller.SetPrecise) with precise. Called under
// e.mu.
func (p *poller) set(e *engine, at time.Time, precise bool) {
	if precise {
		p.precise.Add(1)
		p.SetPrecise(e, at)
		return
	}
	p.Set(e, at)
}

// Poll is e's turn at the poller (tcppoll.Target).
func (e *engine) Poll() { e.poll() }

// PollState is the poller's bookkeeping in e (tcppoll.Target).
func (e *engine) PollState() (*time.Time, *int) { return &e.pollAt, &e.pollIdx }

// poll reads TCP_INFO of the attempts of e whose turn it is and lets the
// machine judge them. The effects that call out run in a goroutine of
// their own (release), so that a slow hook delays no other dial's poll.
func (e *engine) poll() {
	e.mu.Lock()
	now := time.Now()
	e.enlist(now)
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
		l.pollIn(now, e.m.nextPoll(l.id, now))
	}
	e.m.tick(now, e.received)
	e.apply(now)
	e.release(true)
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
// that changed. Under e.mu. An early first look (pollFrom) is set
// precisely: it is due sooner than the runtime's timers can wake an idle
// process, which a fresh process's first dial is while its hello is out
// (its verdict on an upstream black hole came 1.1–1.2 ms after the hello
// in the lab, a 200 µs look fired late).
func (e *engine) polled(at time.Time) {
	if at.Equal(e.pollSet) {
		return
	}
	e.pollSet = at
	polls.set(e, at, !at.IsZero() && at.Equal(e.lookAt))
}
