package tcppoll

import (
	"slices"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/leaktest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// warmNetpoller starts the runtime's netpoller, whose two descriptors
// stay open for good, so that a leak check begun after it counts only
// what a precise wake leaves (its goroutine and timerfd last until it
// fires).
func warmNetpoller(t *testing.T) {
	t.Helper()
	warm := &Poller{}
	tg := &target{p: warm, want: 1, done: make(chan struct{})}
	warm.SetPrecise(tg, time.Now().Add(100*time.Microsecond))
	<-tg.done
	time.Sleep(10 * time.Millisecond) // its goroutine ends after the poll
}

// TestSetPrecisePolls: a target set precisely is polled once due, not
// before, and then as usual; nothing is left behind.
func TestSetPrecisePolls(t *testing.T) {
	warmNetpoller(t)
	leaktest.Check(t)
	p := &Poller{Gap: 100 * time.Microsecond, Budget: 8}
	tg := &target{p: p, every: time.Millisecond, want: 3, done: make(chan struct{})}
	t0 := time.Now()
	p.SetPrecise(tg, t0.Add(300*time.Microsecond))
	select {
	case <-tg.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("polled %d times of 3", tg.polls.Load())
	}
	assert.GreaterOrEqual(t, time.Since(t0), 2300*time.Microsecond)
	assert.Equal(t, 0, p.Len())
}

// TestSetPreciseForgotten: a target set precisely and forgotten before it
// is due is never polled; the wake that cannot be stopped finds nothing,
// and a target set later is polled as usual.
func TestSetPreciseForgotten(t *testing.T) {
	warmNetpoller(t)
	leaktest.Check(t)
	p := &Poller{Gap: 100 * time.Microsecond, Budget: 8}
	gone := &target{p: p, want: 1, done: make(chan struct{})}
	p.SetPrecise(gone, time.Now().Add(200*time.Microsecond))
	p.Set(gone, time.Time{})
	time.Sleep(5 * time.Millisecond)
	assert.Zero(t, gone.polls.Load())

	later := &target{p: p, want: 1, done: make(chan struct{})}
	p.Set(later, time.Now().Add(time.Millisecond))
	<-later.done
}

// TestSetPreciseOneWakeAtATime is TestPollerOneWakeAtATime with precise
// wakes beside the timer's: still one wake polls at a time.
func TestSetPreciseOneWakeAtATime(t *testing.T) {
	oneWakeAtATime(t, 300*time.Millisecond, func(p *Poller, tg Target, i int, at time.Time) {
		if i%3 == 1 {
			p.SetPrecise(tg, at)
			return
		}
		p.Set(tg, at)
	})
}

// BenchmarkWakeLate measures how late a lone target set 200 µs ahead is
// polled in an otherwise idle process, with Set (the runtime's timer)
// and with SetPrecise:
//
//	go test -run '^$' -bench WakeLate ./internal/tcppoll/
func BenchmarkWakeLate(b *testing.B) {
	for _, bc := range []struct {
		name string
		set  func(p *Poller, t Target, at time.Time)
	}{
		{"Set", (*Poller).Set},
		{"SetPrecise", (*Poller).SetPrecise},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := &Poller{Gap: pollGapForBench, Budget: 8}
			var late []time.Duration
			for b.Loop() {
				time.Sleep(3 * time.Millisecond) // idle: every thread asleep
				tg := &timedTarget{p: p, polled: make(chan time.Time, 1)}
				at := time.Now().Add(200 * time.Microsecond)
				bc.set(p, tg, at)
				late = append(late, (<-tg.polled).Sub(at))
			}
			slices.Sort(late)
			require.NotEmpty(b, late)
			b.ReportMetric(float64(late[len(late)/2].Microseconds()), "late-p50-µs")
			b.ReportMetric(float64(late[len(late)*9/10].Microseconds()), "late-p90-µs")
		})
	}
}

// pollGapForBench is tlsdial's Gap: half its 1 ms poll interval.
const pollGapForBench = 500 * time.Microsecond

// timedTarget records when it is polled and leaves.
type timedTarget struct {
	p      *Poller
	polled chan time.Time
	at     time.Time
	idx    int
}

func (t *timedTarget) PollState() (*time.Time, *int) { return &t.at, &t.idx }

func (t *timedTarget) Poll() {
	t.polled <- time.Now()
	t.p.Set(t, time.Time{})
}
