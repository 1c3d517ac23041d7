package tlsdial

import (
	"time"

	"github.com/fitshake/fitshake/pmtu"
)

// The ladder is the order in which a dial tries sizes after a stall:
//
//	hello rung 0 (full, post-quantum)   MTU: none → 1400 → 1280 → 576
//	                                                          │
//	hello rung 1, 2, … (if allowed)     MTU: 1280 ────────────┘ one attempt each
//
// Clamping the MSS comes first: it fixes both directions (the server obeys
// the MSS the client advertises) and keeps the hello intact. 1400 fits the
// common tunnel/VPN overheads, 1280 is the IPv6 minimum link MTU that
// every IPv6 path must carry, 576 is the IPv4 minimum reassembly size.
// A smaller hello helps only when clamping alone did not: a middlebox that
// drops a ClientHello split across segments, or a path below 576. Those
// rungs run at 1280, a clamp that already fits almost every real path.
var (
	defaultMTUs = []int{0, 1400, 1280, 576}
	helloMTU    = 1280
)

// ladderMTUs returns the MTU steps and the MTU of the smaller-hello rungs
// this platform can use: without an MSS clamp (Windows) only the hellos
// can shrink.
func ladderMTUs() ([]int, int) {
	if !pmtu.CanClamp() {
		return []int{0}, 0
	}
	return defaultMTUs, helloMTU
}

// Stall windows. The kernel's minimum retransmission timeout is 200 ms, so
// a window below that cannot tell a lost segment from a slow one; a server
// answers a ClientHello in one round trip plus its own work, so four
// measured round trips leave room for slow servers on long paths. The cap
// keeps a mismeasured RTT (one that includes DNS) from hiding a stall.
const (
	minStallWindow = 250 * time.Millisecond
	maxStallWindow = 3 * time.Second
	stallRTTs      = 4
)

// stallWindow is how long a server may stay silent after the first flight.
// A positive configured value wins; otherwise it derives from rtt.
func stallWindow(configured, rtt time.Duration) time.Duration {
	if configured > 0 {
		return configured
	}
	w := stallRTTs * rtt
	return min(max(w, minStallWindow), maxStallWindow)
}

// step is the setting of one attempt.
type step struct {
	mtu  int // path MTU the MSS is clamped to fit; 0 = no clamp
	rung int // index into the hello rungs
}

// ladder is a pure state machine over steps: it holds no connections and
// reads no clock; callers pass the time in.
type ladder struct {
	steps       []step
	pos         int
	attempts    int // attempts started so far
	maxAttempts int
}

// newLadder builds the ladder for rungs hello rungs (at least 1): the
// first rung over mtus, each further rung at helloMTU; at most maxAttempts
// attempts (≤ 0: one per step).
func newLadder(mtus []int, helloMTU, rungs, maxAttempts int) *ladder {
	l := &ladder{}
	for _, m := range mtus {
		l.steps = append(l.steps, step{mtu: m})
	}
	for r := 1; r < rungs; r++ {
		l.steps = append(l.steps, step{mtu: helloMTU, rung: r})
	}
	l.maxAttempts = maxAttempts
	if l.maxAttempts <= 0 {
		l.maxAttempts = len(l.steps)
	}
	return l
}

// startAt moves to s if it is on the ladder (a remembered step) and reports
// whether it did.
func (l *ladder) startAt(s step) bool {
	for i, t := range l.steps {
		if t == s {
			l.pos = i
			return true
		}
	}
	return false
}

// skipTo moves forward to s if s is on the ladder at or after the current
// step.
// Dials that stalled while another dial discovered the path use it to join
// the discovery's result instead of walking the ladder again.
func (l *ladder) skipTo(s step) {
	for i := l.pos; i < len(l.steps); i++ {
		if l.steps[i] == s {
			l.pos = i
			return
		}
	}
}

// begin starts an attempt at the current step. It reports false when no
// attempt may start: attempts are used up or deadline (zero = none) has
// passed at now.
func (l *ladder) begin(now, deadline time.Time) (step, bool) {
	if l.attempts >= l.maxAttempts || l.pos >= len(l.steps) {
		return step{}, false
	}
	if !deadline.IsZero() && !now.Before(deadline) {
		return step{}, false
	}
	l.attempts++
	return l.steps[l.pos], true
}

// hedge starts an attempt at the next step while the current one stays
// alive, and reports false when there is none to start: attempts are used
// up, or the next step changes the hello. A hedge answers ambiguous
// evidence, and ambiguous evidence (a slow server looks the same) must
// never cost a weaker hello. The hedge's step becomes the current one.
func (l *ladder) hedge() (step, bool) {
	if l.pos+1 >= len(l.steps) || l.attempts >= l.maxAttempts {
		return step{}, false
	}
	if next := l.steps[l.pos+1]; next.rung == l.steps[l.pos].rung {
		l.pos++
		l.attempts++
		return next, true
	}
	return step{}, false
}

// stalled records that the current step stalled and moves down the ladder.
// It reports whether a step remains.
func (l *ladder) stalled() bool {
	l.pos++
	return l.pos < len(l.steps) && l.attempts < l.maxAttempts
}
