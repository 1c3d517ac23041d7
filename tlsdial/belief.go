package tlsdial

import (
	"time"

	"github.com/fitshake/fitshake/pmtu"
)

// What a dial believes, and so remembers and tells the others: never more
// than it saw.
//
//   - Replies that arrive together prefer the least reduced attempt. A box
//     that holds new connections and releases them together (a proxy
//     waiting on its resolver, a loaded server) answers the hedges raced
//     beside the first attempt at the same moment; whichever is read first
//     must not decide. A reply on an attempt while an older, less reduced
//     one may still answer (monitor.answering) is held for a grace of a
//     few round trips; if the older one answers, it wins.
//   - A reduction (a clamp, a smaller hello) is remembered, and told to
//     the dials in progress as one to start at once, only when every less
//     reduced step tried ended conclusively: a black hole TCP_INFO showed,
//     a reset, a refused hello, or silence past a grace after a later
//     attempt got its whole reply (a server answers in the order the
//     hellos reach it; overtaken).
//   - A reply at a step is told at once: silence there and below is a
//     slow server, not a path to race.
//   - A slow server (its silence) is remembered only from an attempt that
//     won after it made the dial hedge.
const (
	graceRTTs = 4
	minGrace  = 50 * time.Millisecond
)

// replied records that the server's reply came at step idx, and tells the
// other dials the first time.
func (m *machine) replied(idx int) {
	if idx < m.good {
		m.good = idx
		m.emit(effect{kind: effShare, step: m.cfg.steps[idx], replied: true})
	}
}

// reply takes attempt l's reply: it wins, or is held while an older, less
// reduced attempt may still answer. A reply more reduced than the one held
// is superseded; a less reduced one replaces it.
func (m *machine) reply(now time.Time, l *mleg) {
	if m.held != 0 {
		h := m.leg(m.held)
		if l.idx >= h.idx {
			m.end(now, l, OutcomeSuperseded, errSuperseded)
			return
		}
		m.held = 0
		m.end(now, h, OutcomeSuperseded, errSuperseded)
	}
	if m.hopeful(l) {
		m.held = l.id
		m.heldUntil = now.Add(max(graceRTTs*m.attempt(l.id).ConnectRTT, minGrace))
		return
	}
	m.complete(now, l)
}

// hopeful reports whether an attempt older than w, at a less reduced
// step, may still answer.
func (m *machine) hopeful(w *mleg) bool {
	for _, o := range m.legs {
		if o != w && !o.ended && !m.holding(o) && o.idx < w.idx && o.mon != nil && o.mon.answering() {
			return true
		}
	}
	return false
}

// checkHeld lets the held reply win once its grace is over or no older
// attempt may answer any more.
func (m *machine) checkHeld(now time.Time) {
	if m.over || m.held == 0 {
		return
	}
	if w := m.leg(m.held); !now.Before(m.heldUntil) || !m.hopeful(w) {
		m.complete(now, w)
	}
}

// holding reports whether l's reply is the one held.
func (m *machine) holding(l *mleg) bool { return m.held == l.id }

// complete makes w, whose reply came, the dial's winner.
func (m *machine) complete(now time.Time, w *mleg) {
	m.held = 0
	m.endOthers(now, w)
	m.end(now, w, OutcomeOK, nil)
	if w.idx != m.cfg.first && m.needed(w.idx) {
		m.emit(effect{kind: effShare, step: m.cfg.steps[w.idx], replied: true, needed: true})
	}
	m.win(now, w)
}

// needed reports whether the evidence shows that no step before idx could
// have worked: some were tried, and every one tried ended conclusively.
func (m *machine) needed(idx int) bool {
	tried := false
	for _, l := range m.legs {
		if l.idx < idx && l.mon != nil {
			if !m.conclusive[l.idx] {
				return false
			}
			tried = true
		}
	}
	return tried
}

// remember returns what the cache should keep after the dial: the step
// that worked when it was not the first tried and was needed, or the
// first step with the server's learned silence when silence made the dial
// race another attempt, and the class of a refused hello (also when the
// dial failed). A step is marked FromNetwork when the dial started from
// the network's evidence: steps it did not try were not seen to fail here.
func (m *machine) remember(now time.Time) (pmtu.Entry, bool) {
	refused := pmtu.Entry{Class: m.rejected.Class}
	if m.winner == 0 {
		// A refused hello is worth knowing: the next dial skips the
		// clamps, which cannot help.
		return refused, refused.Class.HelloRejected()
	}
	w := m.leg(m.winner)
	st := m.cfg.steps[w.idx]
	e := pmtu.Entry{MTU: st.mtu, Rung: m.cfg.rungs[st.rung].name, Class: refused.Class, FromNetwork: m.cfg.borrowed}
	if w.idx != m.cfg.first {
		if !m.needed(w.idx) {
			return refused, refused.Class.HelloRejected()
		}
		return e, true
	}
	if m.hedges == 0 || w.mon == nil {
		return pmtu.Entry{}, false
	}
	e.Silence = w.mon.silence(now)
	return e, e.Silence > 0
}

// peer applies what another dial to the destination found: a step where
// the server replied makes silence at it or below slowness from now on; a
// step it needed starts here at once, beside what runs, if it is further
// down the ladder with the same hello; a step that stalled conclusively
// makes an attempt here at that step race the next one.
func (m *machine) peer(now time.Time, n news) {
	if m.over || m.frontier < 0 {
		return
	}
	idx := -1
	for i, s := range m.cfg.steps {
		if s == n.step {
			idx = i
		}
	}
	if idx < 0 {
		return
	}
	if n.replied {
		m.good = min(m.good, idx)
		// Never a different hello on another dial's word.
		if n.needed && idx > m.frontier && m.cfg.steps[idx].rung == m.cfg.steps[m.frontier].rung && m.canStart(now) {
			m.startAt(now, idx, true)
		}
		return
	}
	for _, l := range m.legs {
		if !l.ended && l.idx == idx && l.mon != nil {
			m.spawn(now, l)
		}
	}
}
