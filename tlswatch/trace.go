package tlswatch

import (
	"net/netip"
	"slices"
	"time"
)

// Trace is a set of hooks into a Watcher, for metrics. Any hook may be
// nil. Hooks may be called concurrently, from the goroutines that run the
// watched connections' I/O (or the watcher's timer), never with a lock of
// the watcher held; a slow hook slows that connection's handshake, so
// hooks should only count.
type Trace struct {
	// Handshake is called once for each watched connection, when its
	// verdict is in: its handshake completed, failed, or the connection
	// ended or stalled first (Watcher.StallAfter).
	Handshake func(HandshakeInfo)
	// Prefix is called when a prefix starts failing (FailingAfter failed
	// handshakes in the window and a completion rate under 90%) and when
	// it recovers (the rate back at 90% or more, or its failures out of
	// the window). Recovery is noticed at the prefix's next verdict or
	// the next Status call (the status page's), whichever comes first.
	Prefix func(PrefixInfo)
	// Clamp is called when the set of prefixes the self-fix clamps
	// changes, after Watcher.Clamp was told (Err is its answer).
	Clamp func(ClampInfo)
}

// HandshakeInfo is the verdict on one watched connection.
type HandshakeInfo struct {
	// Addr is the client's address and port (IPv4 unmapped); Prefix its
	// prefix, as counted (zero when the address is not IP).
	Addr   netip.AddrPort
	Prefix netip.Prefix
	// Class is the verdict: Healthy for a completed handshake, Idle for
	// a connection that never tried, else the failure.
	Class Class
	// Recovered reports a completed handshake from an address whose
	// earlier handshake failed, with a smaller MSS in its SYN this time:
	// a client that clamps (fitshake, or its own network's fix) got
	// past the path that failed it.
	Recovered bool
	// Duration is the handshake's time, from accept to the client's
	// second flight, for a Healthy one; 0 otherwise.
	Duration time.Duration
	// Evidence is what the verdict rests on.
	Evidence Evidence
}

// PrefixInfo is a prefix's state when it changed.
type PrefixInfo struct {
	Prefix netip.Prefix
	// Failing is the new state: true when the prefix starts failing,
	// false when it recovers.
	Failing bool
	// Class is the prefix's class (Status's class).
	Class Class
	// Handshakes, Completed and Failed count the window's connections:
	// all of them, the completed, and the failed (Idle ones are
	// neither completed nor failed).
	Handshakes, Completed, Failed int
	// Evidence is the sentence of the prefix's latest failure.
	Evidence string
}

// ClampInfo is a change of the self-fix.
type ClampInfo struct {
	// Prefixes is the whole set clamped from now on, sorted.
	Prefixes []netip.Prefix
	// MSS is Policy.ClampMSS: the one clamp of a Policy with MSS set,
	// else the smallest the ladder may apply.
	MSS int
	// Clamps is the MSS each prefix of Prefixes is clamped to now, as
	// Listen's listeners apply it (its rung of Policy.Ladder, for its
	// family). A Clamper applies its own MSS.
	Clamps map[netip.Prefix]int
	// Err is what Watcher.Clamp returned; nil without one.
	Err error
}

// MultiTrace returns a Trace that calls the hooks of each of ts in order,
// one after the other, skipping nil Traces and nil hooks: a Watcher's own
// Trace beside a metrics adapter's. A hook of the result is nil when no
// Trace in ts has it. It returns nil when every Trace is nil.
func MultiTrace(ts ...*Trace) *Trace {
	var all traces
	for _, t := range ts {
		if t != nil {
			all = append(all, t)
		}
	}
	if len(all) == 0 {
		return nil
	}
	m := new(Trace)
	for _, t := range all {
		if t.Handshake != nil {
			m.Handshake = all.handshake
		}
		if t.Prefix != nil {
			m.Prefix = all.prefix
		}
		if t.Clamp != nil {
			m.Clamp = all.clamp
		}
	}
	return m
}

// traces are the Traces of a MultiTrace, in order.
type traces []*Trace

func (ts traces) handshake(i HandshakeInfo) {
	for _, t := range ts {
		if t.Handshake != nil {
			t.Handshake(i)
		}
	}
}

func (ts traces) prefix(i PrefixInfo) {
	for _, t := range ts {
		if t.Prefix != nil {
			t.Prefix(i)
		}
	}
}

func (ts traces) clamp(i ClampInfo) {
	for _, t := range ts {
		if t.Clamp != nil {
			t.Clamp(i)
		}
	}
}

// clampMSSes returns the distinct clamps of info, smallest first: what a
// log line says of them.
func clampMSSes(info ClampInfo) []int {
	var out []int
	for _, mss := range info.Clamps {
		if !slices.Contains(out, mss) {
			out = append(out, mss)
		}
	}
	slices.Sort(out)
	return out
}
