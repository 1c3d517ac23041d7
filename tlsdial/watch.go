package tlsdial

import (
	"time"

	"github.com/fitshake/fitshake/pmtu"
)

// The stall policy. While an attempt waits for the server's first reply,
// TCP_INFO is polled every pollInterval and classified (pmtu.Classify):
//
//	upstream black hole ──────────────────────────► stall: redial smaller at once
//	downstream black hole, lasting 3 round trips ─► stall
//	nothing acked after hedgeAfter ───┐
//	acked, silent for the window ─────┴──────────► hedge: race one clamped
//	                                                attempt with the same hello,
//	                                                keep this one, first wins
//	nothing acked or retransmitted for the window ► stall
//	reply started, then no progress for the window ► stall
//
// A silent server never causes a smaller hello: only conclusive evidence
// moves down the ladder. Without TCP_INFO (other systems, or
// Dialer.TimerOnly) the window alone decides, as a silence timer.
const (
	// pollInterval: the lab detected a head-lost hello in 1.2–1.8 ms at a
	// 1 ms poll and 5–6 ms at 5 ms; one getsockopt costs about a
	// microsecond, and polling only runs until the first reply.
	pollInterval = time.Millisecond
	// timerInterval is the poll of the silence timer without TCP_INFO.
	timerInterval = 5 * time.Millisecond
	// A healthy Linux server acknowledged the hello within one round trip
	// in every lab run (the first data is quick-acked). Nothing acked
	// after a few round trips is ambiguous: a lost oversized segment
	// shows nothing until the tail-loss probe (~200 ms), so race instead
	// of waiting for it. minHedgeAfter absorbs scheduling noise.
	minHedgeAfter = 20 * time.Millisecond
	hedgeRTTs     = 4
	// A reply's tail can arrive out of order for a moment on a healthy
	// path too: where PMTUD works, the server resends the head after the
	// router's ICMP, a round trip later. A downstream verdict stands only
	// once the hole has lasted this many round trips (and minConfirm).
	confirmRTTs = 3
	minConfirm  = 2 * time.Millisecond
)

type action int

const (
	actWait action = iota
	actHedge
	actStall
)

// monitor is the stall policy of one attempt, a pure state machine: it is
// fed TCP_INFO snapshots (or received-byte counts) and the time.
type monitor struct {
	sent       int
	start      time.Time // the first flight was written
	window     time.Duration
	hedgeAfter time.Duration
	info       bool // TCP_INFO is readable
	base       pmtu.TCPInfo
	confirm    time.Duration
	received   uint64
	progress   time.Time // last in-order bytes from the server
	holeSince  time.Time // first seen a downstream hole; zero when none
	diag       pmtu.Diagnosis
}

func newMonitor(sent int, start time.Time, rtt, window time.Duration, base pmtu.TCPInfo, info bool) *monitor {
	return &monitor{
		sent:       sent,
		start:      start,
		window:     window,
		hedgeAfter: min(max(minHedgeAfter, hedgeRTTs*rtt), window),
		confirm:    max(minConfirm, confirmRTTs*rtt),
		info:       info,
		base:       base,
		progress:   start,
	}
}

// observe returns what to do at now, given TCP_INFO cur (used when info)
// or the in-order bytes received so far (used otherwise).
func (m *monitor) observe(now time.Time, cur pmtu.TCPInfo, received uint64) action {
	elapsed := now.Sub(m.start)
	if m.info {
		m.diag = pmtu.Classify(m.sent, m.base, cur, elapsed)
		received = uint64(m.diag.Evidence.Received)
	}
	if received != m.received {
		m.received, m.progress = received, now
	}
	silent := now.Sub(m.progress) >= m.window
	if !m.info {
		if silent {
			return actStall
		}
		return actWait
	}
	if m.diag.Class != pmtu.ClassDownstream {
		m.holeSince = time.Time{}
	}
	switch m.diag.Class {
	case pmtu.ClassUpstream:
		return actStall
	case pmtu.ClassDownstream:
		if m.holeSince.IsZero() {
			m.holeSince = now
		}
		if now.Sub(m.holeSince) >= m.confirm {
			return actStall
		}
	case pmtu.ClassReplied:
		if silent {
			return actStall
		}
	case pmtu.ClassUnknown:
		if silent {
			return actStall
		}
		// While PMTUD resends, waiting is right: race only a silence.
		if elapsed >= m.hedgeAfter && !m.diag.Evidence.PathMTUShrank {
			return actHedge
		}
	case pmtu.ClassSilent:
		if silent {
			return actHedge
		}
	}
	return actWait
}

// diagnosis returns the last classification, with the elapsed time of
// the decision; zero without TCP_INFO.
func (m *monitor) diagnosis() pmtu.Diagnosis {
	if !m.info {
		return pmtu.Diagnosis{}
	}
	return m.diag
}

func (m *monitor) interval() time.Duration {
	if m.info {
		return pollInterval
	}
	return timerInterval
}
