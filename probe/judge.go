package probe

import (
	"time"

	"github.com/fitshake/fitshake/pmtu"
)

// judge turns a probe's TCP_INFO snapshots into its outcome. It is pure:
// fed snapshots and the time since the hello, it says when it knows.
type judge struct {
	s         spec
	base      pmtu.TCPInfo
	ipv6      bool
	ifMTU     int           // the local interface's MTU; 0 if unknown
	firstByte time.Duration // when the server's first bytes were seen
	hole      since         // a downstream hole: out-of-order bytes, none in order
	tail      since         // an upstream loss: a SACKed tail, or a resend with nothing acked
}

// confirm is how long a downstream hole must last (at least) before it
// counts: where PMTUD works, the server resends the head a round trip
// after the router's ICMP.
func confirm(rtt time.Duration) time.Duration { return max(3*rtt, 3*time.Millisecond) }

// confirmTail is how long a SACKed tail must last before it counts: where
// PMTUD works, the server's SACK can be read before the kernel has applied
// the router's ICMP (seen in the lab: the tail SACKed, the path MTU still
// 1500), and after it the head, resent in smaller segments, is a round
// trip away. A black hole keeps the tail SACKed until the retransmission
// timeout, 200 ms at least.
func confirmTail(rtt time.Duration) time.Duration { return max(4*rtt, 25*time.Millisecond) }

// since is when a condition began to hold, in time since the probe's
// hello.
type since struct {
	at time.Duration
	on bool
}

// held reports whether cond has held at every look since one at least d
// before elapsed.
func (s *since) held(cond bool, elapsed, d time.Duration) bool {
	if !cond {
		s.on = false
		return false
	}
	if !s.on {
		s.on, s.at = true, elapsed
	}
	return elapsed-s.at >= d
}

// look judges cur, taken at elapsed; cut says the connection was reset or
// closed. done is false while the answer is not known.
func (j *judge) look(cur pmtu.TCPInfo, elapsed time.Duration, cut bool) (obs, bool) {
	sent := len(j.s.hello)
	d := pmtu.Classify(sent, j.base, cur, elapsed)
	ev := d.Evidence
	hdr := pmtu.HeaderBytes(j.ipv6, cur.Options&1 != 0) // TCP_INFO says if timestamps are on
	o := obs{rtt: cur.RTT, pmtu: int(cur.PMTU), received: ev.Received, segments: ev.Segments(),
		allowed: int(cur.AdvMSS) + hdr, ifMTU: j.ifMTU}
	// A path MTU below the local link's was learned from ICMP, during the
	// probe or before it (the kernel keeps it per destination).
	// (The kernel caps a route's MTU at 65535, the largest IP packet.)
	o.pmtuShrank = ev.PathMTUShrank || (cur.PMTU > 0 && int(cur.PMTU) < min(j.ifMTU, 0xffff))
	if ev.Received > 0 && j.firstByte == 0 {
		j.firstByte = elapsed
	}
	o.firstByte = j.firstByte
	if j.s.dir == up {
		return j.lookUp(o, ev, hdr, elapsed, cut)
	}
	return j.lookDown(o, cur, ev, hdr, elapsed, cut)
}

func (j *judge) lookUp(o obs, ev pmtu.Evidence, hdr int, elapsed time.Duration, cut bool) (obs, bool) {
	head := min(ev.Sent, ev.SegSize)
	o.packet = ev.SegSize + hdr
	o.headAcked = head > 0 && ev.Acked >= head
	switch {
	case ev.PathMTUShrank:
		// The head was too big, and ICMP said so: discovery works.
		o.outcome = lost
	case o.headAcked && o.pmtuShrank:
		// It went through in segments ICMP made the kernel cut down to.
		o.outcome, o.packet = lost, o.pmtu
	case o.headAcked:
		o.outcome = passed
	case cut:
		o.outcome = refused
	case j.tail.held(ev.SACKed > 0 || (ev.Retransmits > 0 && ev.Acked == 0), elapsed, confirmTail(o.rtt)):
		o.outcome = lost
	case elapsed >= j.s.wait:
		o.outcome = timedOut
	default:
		return o, false
	}
	return o, true
}

func (j *judge) lookDown(o obs, cur pmtu.TCPInfo, ev pmtu.Evidence, hdr int, elapsed time.Duration, cut bool) (obs, bool) {
	// What the server sends: segments of our announced MSS (which already
	// leaves room for the timestamps).
	o.packet = o.allowed
	if ev.Received > 0 {
		// Let the flight arrive, then take its largest segment.
		if elapsed-j.firstByte < confirm(cur.RTT) && !cut {
			return o, false
		}
		o.outcome, o.packet = passed, int(cur.RcvMSS)+hdr
		return o, true
	}
	switch {
	case j.hole.held(ev.OutOfOrder > 0, elapsed, confirm(cur.RTT)):
		o.outcome = lost
	case cut:
		o.outcome = refused
	case elapsed >= j.s.wait:
		o.outcome = timedOut
	default:
		return o, false
	}
	return o, true
}
