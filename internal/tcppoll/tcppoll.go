// Package tcppoll runs periodic work for many connections — TCP_INFO
// reads, mostly — from one timer, so that what it costs stays bounded
// however many connections wait at once. The client's dials (package
// tlsdial) and the server's watched handshakes (package tlswatch) share
// this one implementation, each with a Poller of its own.
//
// What a poll costs is mostly the wake-up, not the read: on the project's
// VM a getsockopt(TCP_INFO) takes about 2 µs, but each wake of an
// otherwise idle Go process by a timer costs 60–70 µs of CPU at one a
// millisecond (more the longer it slept). With a timer per connection the
// wakes grow with the connections. A Poller wakes at most once per Gap and
// polls, on each wake, at most Budget targets whose turn it is, taken
// round-robin:
//
//	targets due    polls per wake    each target polled every
//	≤ Budget       all due           its own interval
//	N > Budget     Budget            about N / Budget × Gap
//
// A lone target is polled when it asks: the timer is set to its due time.
// The runtime's timers wake an idle process no sooner than a millisecond
// after they are due (its netpoller sleeps in epoll_wait, whose timeout is
// whole milliseconds: a 200 µs timer fires after 1.1 ms); a poll set with
// SetPrecise comes from the kernel's timer instead, a timerfd in the
// netpoller, which wakes an idle process within about 0.1 ms of it
// (BenchmarkWakeLate; Linux, elsewhere SetPrecise is Set).
package tcppoll

import (
	"sync"
	"time"
)

// Target is polled by a Poller.
type Target interface {
	// Poll does the target's work. The Poller calls it without holding
	// its own lock, from its timer's goroutine. The target stays due (and
	// is polled again at the next wake) until it calls Set, with its next
	// due time or zero to leave.
	Poll()
	// PollState returns the Poller's bookkeeping for the target: when
	// it is next due, and its place in the Poller plus one (0: not
	// there). Both are read and written only by the Poller, under its
	// lock; the target stores them and leaves them alone.
	PollState() (at *time.Time, idx *int)
}

// Poller polls the targets that are due. The zero value polls each due
// target at once (no Gap) with no Budget; set both for bounded cost. Its
// methods are safe for concurrent use. Lock order: a target's own lock,
// then the Poller's; the Poller never holds its own while it polls.
type Poller struct {
	// Gap is the shortest time between two wakes; 0 means none.
	Gap time.Duration
	// Budget is how many targets one wake polls at most; 0 means all
	// that are due.
	Budget int

	mu      sync.Mutex
	targets []Target
	cursor  int // where the next wake starts looking: round-robin
	timer   *time.Timer
	next    time.Time // when timer fires; zero when it is not set
	last    time.Time // the last wake
	ticking bool      // a wake is polling: it sets the timer when done
	batch   []Target  // the targets one wake polls; only the wake uses it
}

// Set makes p poll t from at, or forgets t when at is zero.
func (p *Poller) Set(t Target, at time.Time) { p.set(t, at, false) }

// SetPrecise is Set for a poll that should not come a millisecond late
// when the process is idle (see the package documentation). Each costs a
// few system calls and a goroutine more than Set, whose timer is reused:
// use it for a poll that is due sooner than a millisecond and rare, not
// for every poll.
func (p *Poller) SetPrecise(t Target, at time.Time) { p.set(t, at, true) }

func (p *Poller) set(t Target, at time.Time, precise bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	due, idx := t.PollState()
	if at.IsZero() {
		if i := *idx; i > 0 {
			last := len(p.targets) - 1
			moved := p.targets[last]
			_, movedIdx := moved.PollState()
			p.targets[i-1], *movedIdx = moved, i
			p.targets[last] = nil
			p.targets = p.targets[:last]
			*idx = 0
		}
		if len(p.targets) == 0 && !p.next.IsZero() {
			// No wake for nobody: a dial that ends before its first
			// poll (every healthy one) would leave a wake behind it,
			// tens of µs of CPU in a process that has nothing to poll.
			if p.timer != nil {
				p.timer.Stop()
			}
			p.next = time.Time{}
		}
		return
	}
	if *idx == 0 {
		p.targets = append(p.targets, t)
		*idx = len(p.targets)
	}
	*due = at
	if !p.ticking {
		p.schedule(at, precise)
	}
}

// Len returns how many targets p polls now.
func (p *Poller) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.targets)
}

// schedule sets the timer to at, unless it is set to fire sooner, and no
// sooner than Gap after the last wake; with precise, the kernel's timer
// where it can (a wake it brings cannot be stopped: one that finds
// nothing due is harmless). Under p.mu.
func (p *Poller) schedule(at time.Time, precise bool) {
	if g := p.last.Add(p.Gap); at.Before(g) {
		at = g
	}
	if !p.next.IsZero() && !at.Before(p.next) {
		return
	}
	p.next = at
	d := time.Until(at)
	if precise && d > 0 && afterPrecise(d, p.wake) {
		if p.timer != nil {
			p.timer.Stop()
		}
		return
	}
	if p.timer == nil {
		p.timer = time.AfterFunc(d, p.wake)
		return
	}
	p.timer.Reset(d)
}

// wake polls the targets that are due, at most Budget of them starting
// where the last wake stopped, and sets the timer for the next one due.
func (p *Poller) wake() {
	p.mu.Lock()
	if p.ticking {
		// The timer was reset (a target due sooner) while a wake was
		// polling: that wake sets the timer when it is done, and two
		// would share the batch.
		p.next = time.Time{}
		p.mu.Unlock()
		return
	}
	now := time.Now()
	p.ticking, p.next, p.last = true, time.Time{}, now
	due := p.batch[:0]
	n, i := len(p.targets), 0
	for ; i < n && (p.Budget <= 0 || len(due) < p.Budget); i++ {
		t := p.targets[(p.cursor+i)%n]
		if at, _ := t.PollState(); !at.After(now) {
			due = append(due, t)
		}
	}
	if n > 0 {
		p.cursor = (p.cursor + i) % n
	}
	p.mu.Unlock()

	for _, t := range due {
		t.Poll()
	}
	clear(due)

	p.mu.Lock()
	p.batch = due
	p.ticking = false
	var at time.Time
	for _, t := range p.targets {
		if tat, _ := t.PollState(); at.IsZero() || tat.Before(at) {
			at = *tat
		}
	}
	if !at.IsZero() {
		p.schedule(at, false)
	}
	p.mu.Unlock()
}
