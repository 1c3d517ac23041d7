package tlsdial

import (
	"time"

	"github.com/fitshake/fitshake/pmtu"
)

// advance moves down the ladder after an attempt at step from ended
// conclusively, unless an attempt further down is already running.
func (m *machine) advance(now time.Time, from int) {
	if m.over {
		return
	}
	for _, l := range m.legs {
		if !l.ended && l.idx > from {
			return
		}
	}
	next := m.frontier + 1
	if next < len(m.cfg.steps) && m.canStart(now) && m.mayEnter(next) {
		m.startAt(now, next, false)
		return
	}
	if m.live() == 0 {
		m.finish(now, m.lastErr)
	}
}

// moveOn starts what follows attempt l's conclusive end: the next step,
// and when l's hello looked refused, the next smaller hello at once; when
// every hello is refused (pmtu.ClassRefused), nothing.
//
// The first attempt's refusal still races the next clamp: a box that
// terminates TCP (a proxy) may acknowledge what it then resets for its
// size, and then a clamp is the fix. A clamped hello read whole and
// refused all the same shows that clamps do not help, and a destination
// learned to refuse hellos skips them: then only smaller hellos follow.
func (m *machine) moveOn(now time.Time, l *mleg) {
	d := m.attempt(l.id).Diagnosis
	switch {
	case !d.Class.HelloRejected():
		m.advance(now, l.idx)
		return
	case d.Class == pmtu.ClassRefused:
		if m.live() == 0 {
			m.finish(now, m.lastErr)
		}
		return
	}
	next := l.idx + 1
	if next < len(m.cfg.steps) && !m.begun(next) && m.cfg.steps[next].rung == m.cfg.steps[l.idx].rung &&
		!(readWhole(d.Evidence) && m.cfg.steps[l.idx].mtu > 0) && !m.cfg.rejected.HelloRejected() && m.canStart(now) {
		m.startAt(now, next, false)
	}
	m.smaller(now, l.idx)
}

// begun reports whether an attempt at step idx has started.
func (m *machine) begun(idx int) bool {
	for _, l := range m.legs {
		if l.idx == idx {
			return true
		}
	}
	return false
}

// smaller starts the first step with a smaller hello than step from's,
// skipping the clamps in between, unless it has begun already; with none
// left, the dial fails once nothing runs.
func (m *machine) smaller(now time.Time, from int) {
	if m.over {
		return
	}
	j := from + 1
	for j < len(m.cfg.steps) && m.cfg.steps[j].rung <= m.cfg.steps[from].rung {
		j++
	}
	if j < len(m.cfg.steps) && !m.begun(j) && m.canStart(now) {
		m.startAt(now, j, false)
		return
	}
	if m.live() == 0 {
		m.finish(now, m.lastErr)
	}
}

// mayEnter reports whether step idx may start after the frontier: a hello
// without the post-quantum share needs every step tried with the current
// hello to have ended conclusively.
func (m *machine) mayEnter(idx int) bool {
	cur := m.cfg.steps[m.frontier].rung
	if !m.weakens(m.frontier, idx) {
		return true
	}
	for i := m.cfg.first; i <= m.frontier; i++ {
		if m.cfg.steps[i].rung == cur && !m.conclusive[i] {
			return false
		}
	}
	return true
}
