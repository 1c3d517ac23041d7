package tlsdial

import "time"

// Hedging: what silence costs the server. A silent attempt is no evidence
// of a broken path — a slow server is silent too, and servers are slow when
// they are overloaded — so the attempts raced beside silence are paced and
// budgeted, while conclusive evidence (a black hole TCP_INFO showed, a
// reset) still redials at once, free:
//
//	attempt 1 ──W── hedge 1 ──3W── hedge 2 ──6W── hedge 3 ──12W── …
//
// W is the attempt's stall window. The first hedge comes after one window,
// as before; each later one waits longer, as TCP's retransmission timer
// backs off. Behind a silent box (a proxy that acknowledges for the
// server), a dial still walks the MSS clamps down to 576 within 10W (2.5 s
// at the smallest window); a server answering after 0.8 s gets at most one
// extra connection (the second hedge would come at 4W, 1 s).
//
// Across the dials to one destination, hedges in flight are bounded as
// Envoy's retry budgets bound retries: at most hedgeBudgetPercent (10%) of
// the dials running to it, and never fewer than minHedgesInFlight (so that a
// lone dial can walk the whole ladder: three clamps and the compact hello).
// A dial denied a hedge asks again after hedgeRetry, and from then on the
// give-up bound applies to it; the destination's first reply stops every
// hedge (machine.good).

// hedgeGap returns how long an attempt started after hedges silence-raced
// attempts of its dial waits in silence before racing the next one: W,
// then 3W, doubling after that, at most giveUpAfter.
func hedgeGap(window time.Duration, hedges int) time.Duration {
	if hedges <= 0 {
		return window
	}
	gap := 3 * window
	for range hedges - 1 {
		if gap >= giveUpAfter {
			break
		}
		gap *= 2
	}
	return min(gap, max(giveUpAfter, window))
}

const (
	hedgeBudgetPercent = 10
	minHedgesInFlight  = 4
	// hedgeRetry is how soon a dial denied a hedge asks again.
	hedgeRetry = 20 * time.Millisecond
)

// hedgeBudget counts the hedged attempts in flight to one destination.
// Its owner serializes calls (group: under groups.mu).
type hedgeBudget struct{ inFlight int }

// acquire takes a hedge from the budget of a destination that dials dials
// are running to; false when the budget is spent.
func (b *hedgeBudget) acquire(dials int) bool {
	if b.inFlight >= hedgeLimit(dials) {
		return false
	}
	b.inFlight++
	return true
}

// release returns a hedge that ended.
func (b *hedgeBudget) release() {
	if b.inFlight <= 0 {
		panic("tlsdial: hedge budget released more than acquired")
	}
	b.inFlight--
}

// hedgeLimit is how many hedges may be in flight while dials run.
func hedgeLimit(dials int) int {
	return max(minHedgesInFlight, dials*hedgeBudgetPercent/100)
}

// hedger grants a dial's hedged attempts: the destination's budget, shared
// with the other dials to it. A machine without one hedges freely.
type hedger interface {
	acquire() bool
	release()
}

// spawn starts the step after l's beside it, if l is the furthest attempt
// down the ladder, that step keeps the same hello and the budget allows.
func (m *machine) spawn(now time.Time, l *mleg) {
	if !m.canSpawn(l) || !m.canStart(now) || now.Before(l.retryAt) {
		return
	}
	if !m.acquire() {
		l.retryAt = now.Add(hedgeRetry)
		return
	}
	l.spawned = true
	m.hedges++
	m.startAt(now, l.idx+1, true)
	m.leg(len(m.legs)).budgeted = m.budget != nil
}

// acquire asks the destination's budget for a hedge.
func (m *machine) acquire() bool { return m.budget == nil || m.budget.acquire() }

// canSpawn reports whether silence on l would start another attempt
// (deadline aside): l is the furthest down the ladder, has not spawned,
// the next step weakens nothing, and the server has not been seen to
// answer at l's step or a larger one — then it is only slow.
func (m *machine) canSpawn(l *mleg) bool {
	next := l.idx + 1
	return !l.ended && !m.holding(l) && !l.spawned && l.idx == m.frontier && l.idx < m.good && next < len(m.cfg.steps) &&
		!m.weakens(l.idx, next) && m.attempts < m.cfg.maxAttempts
}

// weakens reports whether step to sends a hello without the post-quantum
// share that step from's hello carries.
func (m *machine) weakens(from, to int) bool {
	r := m.cfg.rungs
	return r[m.cfg.steps[from].rung].pq && !r[m.cfg.steps[to].rung].pq
}
