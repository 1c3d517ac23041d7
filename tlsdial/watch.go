package tlsdial

import (
	"time"

	"github.com/fitshake/fitshake/pmtu"
)

// The stall evidence of one attempt. While it waits for the server's first
// reply, TCP_INFO is polled every pollInterval and classified
// (pmtu.Classify):
//
//	upstream black hole, split-intolerant box ────► conclusive
//	downstream black hole, lasting 3 round trips ─► conclusive
//	nothing acked after hedgeAfter ───┐
//	acked, no reply for the window ───┼──────────► silent: race the next step
//	reply started, a hole, stuck ─────┘
//
// Without TCP_INFO (other systems, or TimerOnly) only the window decides,
// and silence is all it can tell. The machine (machine.go) turns verdicts
// into attempts.
const (
	// pollInterval: the lab detected a head-lost hello in 1.2–1.8 ms at a
	// 1 ms poll and 5–6 ms at 5 ms; one getsockopt costs about a
	// microsecond, and polling only runs until the first reply.
	pollInterval = time.Millisecond
	// slowPollInterval is the poll once nothing a millisecond matters for
	// is left to see (machine.pollEvery).
	slowPollInterval = 10 * time.Millisecond
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

// verdict is what an attempt's evidence says now.
type verdict int

const (
	verdictWait  verdict = iota
	verdictHedge         // silent: start the next step beside it
	verdictStall         // conclusive: the path drops its packets
)

// monitor is the stall policy of one attempt, a pure state machine: it is
// fed TCP_INFO snapshots (or received-byte counts) and the time.
type monitor struct {
	sent       int
	start      time.Time // the first flight was written
	window     time.Duration
	gap        time.Duration // silence that races the next step (hedgeGap)
	hedgeAfter time.Duration
	info       bool // TCP_INFO is readable
	base       pmtu.TCPInfo
	confirm    time.Duration
	received   uint64
	progress   time.Time // last in-order bytes from the server
	replyAt    time.Time // the first of them; zero until then
	holeSince  time.Time // first seen a downstream hole; zero when none
	diag       pmtu.Diagnosis
}

func newMonitor(sent int, start time.Time, rtt, window, gap time.Duration, base pmtu.TCPInfo, info bool) *monitor {
	return &monitor{
		sent:       sent,
		start:      start,
		window:     window,
		gap:        max(gap, window),
		hedgeAfter: min(max(minHedgeAfter, hedgeRTTs*rtt), window),
		confirm:    max(minConfirm, confirmRTTs*rtt),
		info:       info,
		base:       base,
		progress:   start,
		diag:       pmtu.Diagnosis{Evidence: pmtu.Evidence{Sent: sent}}, // until observed
	}
}

// observe returns the verdict at now, given TCP_INFO cur (used when info)
// or the in-order bytes received so far (used otherwise).
func (m *monitor) observe(now time.Time, cur pmtu.TCPInfo, received uint64) verdict {
	elapsed := now.Sub(m.start)
	if m.info {
		m.diag = pmtu.Classify(m.sent, m.base, cur, elapsed)
		received = uint64(m.diag.Evidence.Received)
	} else {
		m.diag = pmtu.Diagnosis{Evidence: pmtu.Evidence{Sent: m.sent, Received: int(received), Elapsed: elapsed}}
	}
	if received != m.received {
		m.received, m.progress = received, now
		if m.replyAt.IsZero() {
			m.replyAt = now
		}
	}
	silent := now.Sub(m.progress) >= m.gap
	if !m.info {
		return hedgeIf(silent)
	}
	if m.diag.Class != pmtu.ClassDownstream {
		m.holeSince = time.Time{}
	}
	switch m.diag.Class {
	case pmtu.ClassUpstream, pmtu.ClassSplitIntolerant:
		return verdictStall
	case pmtu.ClassDownstream:
		if m.holeSince.IsZero() {
			m.holeSince = now
		}
		if now.Sub(m.holeSince) >= m.confirm {
			return verdictStall
		}
	case pmtu.ClassUnknown:
		// While PMTUD resends, waiting is right: race only a silence.
		early := elapsed >= m.hedgeAfter && !m.diag.Evidence.PathMTUShrank
		return hedgeIf(silent || early)
	case pmtu.ClassReplied:
		// A reply that arrived whole leaves the handshake to this
		// machine's CPU (or the server's next flight); only a hole in
		// it is worth racing.
		return hedgeIf(silent && m.diag.Evidence.OutOfOrder > 0)
	}
	return hedgeIf(silent)
}

// look classifies cur as observe does, without a verdict: the attempt's
// I/O has ended and only its evidence is wanted.
func (m *monitor) look(now time.Time, cur pmtu.TCPInfo) {
	m.diag = pmtu.Classify(m.sent, m.base, cur, now.Sub(m.start))
}

func hedgeIf(silent bool) verdict {
	if silent {
		return verdictHedge
	}
	return verdictWait
}

// replying reports whether the server's reply is arriving: bytes came, the
// last of them within the window.
func (m *monitor) replying(now time.Time) bool {
	return m.received > 0 && now.Sub(m.progress) < m.window
}

// due returns when silence alone would change the verdict.
func (m *monitor) due() time.Time { return m.progress.Add(m.gap) }

// answering reports whether the server may still answer this attempt, as
// far as its evidence shows: its hello was acknowledged and nothing says
// the reply is lost (a silent server, a reply arriving), path MTU
// discovery is resending it, or there is no TCP_INFO to tell.
func (m *monitor) answering() bool {
	if !m.info {
		return true
	}
	switch m.diag.Class {
	case pmtu.ClassSilent, pmtu.ClassReplied:
		return true
	case pmtu.ClassUnknown:
		return m.diag.Evidence.PathMTUShrank
	}
	return false
}

// silence returns how long the server took to start its reply, when that
// was longer than the window; 0 otherwise. A reply not yet observed is
// taken to have started at now.
func (m *monitor) silence(now time.Time) time.Duration {
	at := m.replyAt
	if at.IsZero() {
		at = now
	}
	if d := at.Sub(m.start); d > m.window {
		return d
	}
	return 0
}

// diagnosis returns what the last observation showed: TCP_INFO's class
// and evidence, or without TCP_INFO the hello's size, the bytes received
// and the time waited (class unknown).
func (m *monitor) diagnosis() pmtu.Diagnosis { return m.diag }
