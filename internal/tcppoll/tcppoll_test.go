package tcppoll

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// target counts its polls and asks to be polled again every `every`, until
// it has been polled `want` times.
type target struct {
	p     *Poller
	every time.Duration
	want  int32
	polls atomic.Int32
	done  chan struct{}
	at    time.Time
	idx   int
}

func (t *target) PollState() (*time.Time, *int) { return &t.at, &t.idx }

func (t *target) Poll() {
	if t.polls.Add(1) >= t.want {
		t.p.Set(t, time.Time{})
		close(t.done)
		return
	}
	t.p.Set(t, time.Now().Add(t.every))
}

// TestPollerBudget: many targets due at once are polled at most Budget
// per wake, wakes at least Gap apart, and each gets all its polls.
func TestPollerBudget(t *testing.T) {
	p := &Poller{Gap: 2 * time.Millisecond, Budget: 4}
	const n = 40
	ts := make([]*target, n)
	t0 := time.Now()
	for i := range ts {
		ts[i] = &target{p: p, every: time.Millisecond, want: 3, done: make(chan struct{})}
		p.Set(ts[i], t0)
	}
	for _, tg := range ts {
		select {
		case <-tg.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("a target got %d polls of 3", tg.polls.Load())
		}
	}
	// 120 polls at 4 a wake and at most one wake per 2 ms take 60 ms at
	// least.
	assert.GreaterOrEqual(t, time.Since(t0), 58*time.Millisecond)
	assert.Equal(t, 0, p.Len())
	for _, tg := range ts {
		assert.Equal(t, int32(3), tg.polls.Load())
		assert.Equal(t, 0, tg.idx)
	}
}

// TestPollerLone: a lone target is polled at its own time, not sooner.
func TestPollerLone(t *testing.T) {
	p := &Poller{Gap: time.Millisecond, Budget: 8}
	tg := &target{p: p, every: 20 * time.Millisecond, want: 2, done: make(chan struct{})}
	t0 := time.Now()
	p.Set(tg, t0.Add(20*time.Millisecond))
	<-tg.done
	assert.GreaterOrEqual(t, time.Since(t0), 40*time.Millisecond)
}

// TestPollerRemove: targets set and removed concurrently leave the Poller
// empty, and a removed target is never polled.
func TestPollerRemove(t *testing.T) {
	p := &Poller{Gap: time.Millisecond, Budget: 8}
	var wg sync.WaitGroup
	ts := make([]*target, 200)
	for i := range ts {
		ts[i] = &target{p: p, want: 1 << 30, done: make(chan struct{})}
	}
	for i := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Set(ts[i], time.Now().Add(time.Hour))
			p.Set(ts[i], time.Time{})
		}()
	}
	wg.Wait()
	require.Equal(t, 0, p.Len())
	time.Sleep(5 * time.Millisecond)
	for _, tg := range ts {
		assert.Zero(t, tg.polls.Load())
	}
}

// TestPollerIdleStopsTimer: once the last target leaves, the timer is
// stopped, so that a process with nothing to poll is not woken; a target
// set later is polled as usual.
func TestPollerIdleStopsTimer(t *testing.T) {
	p := &Poller{Gap: time.Millisecond, Budget: 8}
	tg := &target{p: p, want: 1, done: make(chan struct{})}
	p.Set(tg, time.Now().Add(time.Hour))
	p.Set(tg, time.Time{})
	p.mu.Lock()
	assert.True(t, p.next.IsZero(), "timer still due at %v", p.next)
	p.mu.Unlock()
	assert.False(t, p.timer.Stop(), "the timer was still running")

	p.Set(tg, time.Now().Add(2*time.Millisecond))
	<-tg.done
	assert.Equal(t, int32(1), tg.polls.Load())
}

// slowTarget's Poll takes a while and counts the polls running at once.
type slowTarget struct {
	running, most *atomic.Int32
	at            time.Time
	idx           int
}

func (t *slowTarget) PollState() (*time.Time, *int) { return &t.at, &t.idx }

func (t *slowTarget) Poll() {
	n := t.running.Add(1)
	for {
		m := t.most.Load()
		if n <= m || t.most.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(50 * time.Microsecond)
	t.running.Add(-1)
}

// TestPollerOneWakeAtATime: targets set sooner than the timer, and the
// last one leaving, while a wake is polling never start a second wake
// beside it. Two at once shared the wake's batch: one cleared the targets
// the other was polling, and a herd of dials crashed on a nil Target.
func TestPollerOneWakeAtATime(t *testing.T) {
	oneWakeAtATime(t, 500*time.Millisecond, func(p *Poller, tg Target, _ int, at time.Time) { p.Set(tg, at) })
}

// oneWakeAtATime has 4 goroutines set 16 targets for d, every third call
// forgetting one and the others setting it with set (i counts the calls),
// then checks that no two polls ran at once and that the Poller is left
// empty.
func oneWakeAtATime(t *testing.T, d time.Duration, set func(p *Poller, tg Target, i int, at time.Time)) {
	t.Helper()
	p := &Poller{}
	var running, most atomic.Int32
	ts := make([]*slowTarget, 16)
	for i := range ts {
		ts[i] = &slowTarget{running: &running, most: &most}
	}
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for g := range 4 {
		wg.Go(func() {
			for i := g; time.Now().Before(deadline); i++ {
				tg := ts[i%len(ts)]
				if i%3 == 0 {
					p.Set(tg, time.Time{})
				} else {
					set(p, tg, i, time.Now().Add(time.Duration(i%5)*100*time.Microsecond))
				}
			}
		})
	}
	wg.Wait()
	for _, tg := range ts {
		p.Set(tg, time.Time{})
	}
	assert.Equal(t, int32(1), most.Load(), "polls ran at once: two wakes overlapped")
	assert.Equal(t, 0, p.Len())
}
