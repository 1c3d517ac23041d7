package pmtu

import (
	"fmt"
	"time"
)

// Class is what a handshake's first flight looks like from the client's own
// kernel while the client waits for the server's reply.
type Class int

const (
	// ClassUnknown: no verdict yet. Nothing of the flight is acknowledged
	// and nothing has been retransmitted.
	ClassUnknown Class = iota
	// ClassReplied: the server's reply is arriving in order; not a stall.
	ClassReplied
	// ClassUpstream: a client→server black hole. Part of the flight never
	// got through: the head segment was lost while the tail was SACKed, or
	// the flight was retransmitted and never acknowledged.
	ClassUpstream
	// ClassDownstream: a server→client black hole. The flight was
	// acknowledged and segments of the reply arrived out of order, but its
	// first segment never did.
	ClassDownstream
	// ClassSilent: the flight was acknowledged and nothing came back. A
	// slow server, or a reply made only of full-size segments that were
	// all dropped; TCP_INFO cannot tell which.
	ClassSilent
	// ClassReset: the connection was reset or closed after the first flight
	// and before any reply. Classify never returns it (TCP_INFO cannot
	// see it coming); a dialer sets it when a read fails that way. Servers
	// answer a ClientHello they dislike with an alert, so a reset is the
	// mark of a box on the path that rejects large packets or the hello.
	ClassReset
	// ClassSplitIntolerant: a box on the path fails on a ClientHello split
	// across TCP segments (an inspecting firewall that reads only the first
	// one). The hello spanned more than one segment, and either its small
	// tail was lost and retransmitted with nothing SACKed (a path that
	// drops large packets delivers the tail), or its full-size head was
	// acknowledged and then the connection was reset or closed before any
	// reply. A smaller MSS makes it worse; a hello that fits one segment
	// gets through.
	ClassSplitIntolerant
	// ClassContentIntolerant: a box on the path rejects the ClientHello
	// itself — its size, or an extension it does not know — whatever its
	// segments: a hello that fit one segment was acknowledged and then
	// reset, or hellos were reset even in segments small enough for any
	// path (a dialer sets it then). A smaller hello, or one without what
	// the box rejects, gets through.
	ClassContentIntolerant
	// ClassRefused: every ClientHello tried was acknowledged whole and
	// then the connection was cut before any reply, a smaller and
	// different one too. Whoever read it refuses the connection, not its
	// packets: a policy (an SNI blocklist, a TLS-inspecting proxy told to
	// terminate), or a server that does not speak TLS on this port. A
	// dialer sets it; no clamp gets through, and no hello it may send.
	ClassRefused
	// ClassProxy: every ClientHello was acknowledged, even in segments
	// small enough for any path (the smallest clamp), and nothing came
	// back. A reply lost for its size would have arrived at that clamp,
	// so something acknowledges for the server — a proxy or
	// TCP-terminating middlebox — and gets no answer beyond it: its far
	// side drops large packets, or cannot reach the server (or the server
	// never answers). A dialer sets it when it gives up.
	ClassProxy
)

func (c Class) String() string {
	switch c {
	case ClassUnknown:
		return "unknown"
	case ClassReplied:
		return "replied"
	case ClassUpstream:
		return "upstream black hole"
	case ClassDownstream:
		return "downstream black hole"
	case ClassSilent:
		return "silent server"
	case ClassReset:
		return "reset"
	case ClassSplitIntolerant:
		return "split-intolerant middlebox"
	case ClassContentIntolerant:
		return "hello-intolerant middlebox"
	case ClassRefused:
		return "hello refused after reading"
	case ClassProxy:
		return "box acknowledging for the server"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// BlackHole reports whether c is conclusive evidence of a black hole.
func (c Class) BlackHole() bool { return c == ClassUpstream || c == ClassDownstream }

// HelloRejected reports whether c says that the ClientHello itself, not
// the size of packets, is what the path refuses: a split-intolerant or a
// content-intolerant box, where another ClientHello gets through, or a
// refusal of any hello (ClassRefused), where none does. No MSS clamp
// helps.
func (c Class) HelloRejected() bool {
	return c == ClassSplitIntolerant || c == ClassContentIntolerant || c == ClassRefused
}

// SmallerHelloHelps reports whether a smaller or different ClientHello
// may get through where this one did not: the box refuses hellos split
// across segments, or this hello's size or content.
func (c Class) SmallerHelloHelps() bool {
	return c == ClassSplitIntolerant || c == ClassContentIntolerant
}

// Evidence is what TCP_INFO showed about a first flight, as changes since it
// was written.
type Evidence struct {
	Sent        int           // bytes of the flight
	SegSize     int           // send MSS: the largest segment the flight used
	Acked       int           // bytes of it the server acknowledged in order
	SACKed      int           // segments the server acknowledged beyond a hole
	Retransmits int           // segments retransmitted since it was written
	OutOfOrder  int           // segments of the reply received beyond a hole
	Received    int           // bytes of the reply received in order
	Elapsed     time.Duration // since it was written
	// PathMTU is the kernel's path MTU for the connection now, and
	// PathMTUShrank reports that it fell since the flight was written: an
	// ICMP "fragmentation needed" or "packet too big" arrived, so path MTU
	// discovery works and the kernel is already resending smaller.
	PathMTU       int
	PathMTUShrank bool
	// TCPInfo reports that the counts come from TCP_INFO (Classify sets
	// it). Without it, only Sent, Received and Elapsed are known, and the
	// class is ClassUnknown or ClassReset.
	TCPInfo bool
	// OvertakenBy is the MSS clamp of a parallel attempt that got the
	// server's reply while this flight was still waiting for it; 0 means
	// none did. A dialer sets it, Classify never does. Behind a box that
	// acknowledges data for the server (a proxy, or the pmtutest
	// simulator), it is the only sign that large packets vanish beyond it.
	OvertakenBy int
}

// Segments returns how many TCP segments the flight took at SegSize; 0
// when SegSize is unknown.
func (e Evidence) Segments() int {
	if e.SegSize <= 0 {
		return 0
	}
	return max(1, (e.Sent+e.SegSize-1)/e.SegSize)
}

// Diagnosis is a classified stall: the class and the evidence for it.
type Diagnosis struct {
	Class    Class
	Evidence Evidence
}

// Classify reads the state of a first flight of sent bytes from two
// TCP_INFO snapshots of one connection: base, taken before the flight was
// written, and cur, taken elapsed later. It is a pure function: callers
// poll and decide what to do with the answer.
//
// A flight of several segments that is retransmitted while nothing of it
// is SACKed is ClassSplitIntolerant: its small tail was lost as well as
// (or after) the full-size head, which no size limit explains. Inline
// inspectors that fail on a split ClientHello drop the rest of the flow,
// the server's acknowledgement of the head included.
//
// Measured signatures (see the recorded timelines in testdata/timelines):
// a flight whose head segment is black-holed shows Sacked > 0 within one
// round trip; a flight sent as one oversized segment shows nothing until the
// kernel's tail-loss probe retransmits it (~200 ms); a black-holed reply
// shows RcvOOOPack > 0 with nothing received in order; a healthy path
// acknowledges the flight within one round trip. Where path MTU discovery
// works, the head's loss is explained by ICMP: the kernel's path MTU falls
// and no black hole is reported.
func Classify(sent int, base, cur TCPInfo, elapsed time.Duration) Diagnosis {
	ev := Evidence{
		Sent:        sent,
		SegSize:     int(cur.SndMSS),
		Acked:       int(sub(cur.BytesAcked, base.BytesAcked)),
		SACKed:      int(cur.Sacked),
		Retransmits: int(sub(uint64(cur.TotalRetrans), uint64(base.TotalRetrans))),
		OutOfOrder:  int(sub(uint64(cur.RcvOOOPack), uint64(base.RcvOOOPack))),
		Received:    int(sub(cur.BytesReceived, base.BytesReceived)),
		Elapsed:     elapsed,
		PathMTU:     int(cur.PMTU),
		TCPInfo:     true,
	}
	ev.PathMTUShrank = cur.PMTU != 0 && base.PMTU != 0 && cur.PMTU < base.PMTU
	d := Diagnosis{Evidence: ev}
	switch {
	case ev.Received > 0:
		d.Class = ClassReplied
	case ev.PathMTUShrank && ev.Acked < sent:
		// A hole that ICMP explained is not a black hole: the kernel
		// resends the head in smaller segments within a round trip.
		d.Class = ClassUnknown
	case ev.Acked >= sent:
		d.Class = ClassSilent
		if ev.OutOfOrder > 0 {
			d.Class = ClassDownstream
		}
	case ev.SACKed == 0 && ev.Retransmits > 0 && ev.Segments() > 1:
		// The small tail was lost too (a path that drops large packets
		// delivers it, and the server SACKs it), or it was lost after the
		// full-size head got through: not a size the path drops, a box
		// that stopped the flow on the ClientHello.
		d.Class = ClassSplitIntolerant
	case ev.SACKed > 0 || ev.Retransmits > 0:
		d.Class = ClassUpstream
	default:
		d.Class = ClassUnknown
	}
	return d
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// String is the one-line explanation of d, for people.
func (d Diagnosis) String() string {
	e := d.Evidence
	ms := e.Elapsed.Round(100 * time.Microsecond)
	switch d.Class {
	case ClassUpstream:
		head := min(e.Sent, e.SegSize)
		if e.SACKed > 0 && e.Sent > head {
			return fmt.Sprintf("%d-byte ClientHello: %d-byte head %s, %d-byte tail SACKed — segments this large are dropped on this path",
				e.Sent, head, retransmitted(e.Retransmits), e.Sent-head)
		}
		return fmt.Sprintf("%d-byte ClientHello sent as %s, %s and never acknowledged while the connection's small packets got through — packets this large are dropped on this path",
			e.Sent, segments(e.Sent, e.SegSize), retransmitted(e.Retransmits))
	case ClassDownstream:
		return fmt.Sprintf("%d-byte ClientHello acknowledged; %d segments of the server's reply arrived out of order but its first segment never did (after %s) — the server's large packets are dropped on the way back",
			e.Sent, e.OutOfOrder, ms)
	case ClassSilent:
		if e.OvertakenBy > 0 {
			return fmt.Sprintf("%d-byte ClientHello acknowledged, nothing back for %s while an attempt clamped to MSS %d got its reply — large packets vanish beyond a box that acknowledges them (a proxy or TCP-terminating middlebox), or on the way back",
				e.Sent, ms, e.OvertakenBy)
		}
		return fmt.Sprintf("%d-byte ClientHello acknowledged, nothing back from the server for %s — a slow server, or a reply of full-size segments that are all dropped",
			e.Sent, ms)
	case ClassReplied:
		return fmt.Sprintf("%d-byte ClientHello answered: %d bytes of the reply received", e.Sent, e.Received)
	case ClassReset:
		return fmt.Sprintf("%d-byte ClientHello: the connection was reset before any reply (after %s) — a firewall or middlebox rejecting large packets or this ClientHello",
			e.Sent, ms)
	case ClassSplitIntolerant, ClassContentIntolerant, ClassRefused:
		return d.refusedString(ms)
	case ClassProxy:
		return fmt.Sprintf("%d-byte ClientHello acknowledged even in segments of MSS %d that any path carries, and nothing back for %s — not a reply lost for its size: a box acknowledges for the server (a proxy or TCP-terminating firewall) and gets no answer beyond it",
			e.Sent, e.SegSize, ms)
	}
	switch {
	case e.PathMTUShrank:
		return fmt.Sprintf("%d-byte ClientHello: the kernel learned a %d-byte path MTU from ICMP and is resending it in smaller segments — path MTU discovery works", e.Sent, e.PathMTU)
	case e.OvertakenBy > 0:
		return fmt.Sprintf("%d-byte ClientHello: no reply for %s while an attempt clamped to MSS %d got its reply — packets this large are dropped on this path",
			e.Sent, ms, e.OvertakenBy)
	case !e.TCPInfo:
		return fmt.Sprintf("%d-byte ClientHello: no reply for %s (TCP_INFO not read: what the kernel saw is unknown)", e.Sent, ms)
	}
	return fmt.Sprintf("%d-byte ClientHello: nothing acknowledged or retransmitted yet after %s", e.Sent, ms)
}

// Fix suggests what to change, on the network or at the server, so that
// the handshake no longer needs fitshake's fallback, or what to check when
// nothing was seen to fix. It is never empty.
func (d Diagnosis) Fix() string {
	const clamp = "clamp the TCP MSS on the router or tunnel endpoint (nftables: `tcp flags syn tcp option maxseg size set rt mtu`; iptables: `-p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu`), or let ICMP \"fragmentation needed\" and ICMPv6 \"packet too big\" through to the sender"
	const smaller = "; or make the server's handshake flight smaller (an ECDSA certificate, no unneeded intermediates)"
	switch d.Class {
	case ClassUpstream:
		return clamp
	case ClassDownstream:
		return clamp + smaller
	case ClassReset:
		return clamp + "; or ask whoever runs the firewall why it resets this ClientHello"
	case ClassSplitIntolerant:
		return "update or exempt the TLS inspection of the firewall or IPS on the path so that it reassembles a ClientHello split across TCP segments (Suricata: match with ssl_state:client_hello; HAProxy: tcp-request inspect-delay before req.ssl_sni) — do not clamp the MSS for it, a smaller MSS splits the hello more; meanwhile " + ClassSplitIntolerant.ClientFix()
	case ClassContentIntolerant:
		return "update or exempt the TLS inspection of the firewall or IPS on the path: it rejects this ClientHello (its size, or extensions such as post-quantum key shares or ML-DSA signature algorithms); meanwhile " + ClassContentIntolerant.ClientFix()
	case ClassRefused:
		return "ask whoever runs the box or server that read the ClientHello why it refuses this connection: it refused every ClientHello tried after reading it whole — a policy (an SNI blocklist; a TLS-inspecting proxy's terminate or deny rule) or a port that does not speak TLS; no MSS clamp gets past it"
	case ClassProxy:
		return "a proxy or TCP-terminating firewall acknowledges for the server and gets no answer beyond it: on its far side, " + clamp + "; and check that it can reach the server and the server answers"
	case ClassSilent, ClassUnknown:
		if d.Evidence.OvertakenBy > 0 {
			return clamp + smaller
		}
		return "nothing on the path was seen to fail: if the server is slow, give it time (a longer stall window); if it persists, run fitshake's diagnose against it"
	case ClassReplied:
		return "nothing to fix: the server answered"
	}
	return "nothing was seen: run fitshake's diagnose against the server"
}

// ClientFix returns the change on the client's side that gets a
// handshake past what c describes, "" where none does (or none is
// needed): a ClientHello that fits one segment past a split-intolerant
// box, a smaller one past a content-intolerant one, and an MSS clamp per
// connection (fitshake) past a black hole or a reset.
func (c Class) ClientFix() string {
	switch c {
	case ClassSplitIntolerant:
		return "send a ClientHello that fits one segment: fitshake's tlsdial.Dialer does (its pq-compact hello keeps post-quantum); with crypto/tls, CurvePreferences without X25519MLKEM768 or GODEBUG=tlsmlkem=0 (no post-quantum)"
	case ClassContentIntolerant:
		return "send a smaller ClientHello: fitshake's tlsdial.Dialer tries its compact post-quantum hello, and a classical one with AllowClassical; with crypto/tls, CurvePreferences without X25519MLKEM768 or GODEBUG=tlsmlkem=0 (no post-quantum)"
	case ClassUpstream, ClassDownstream, ClassReset:
		return "until the network is fixed, dial with fitshake (tlsdial.Dialer, or tlsdial.TCPDialer under crypto/tls, net/http and gRPC): it clamps the MSS per connection when a handshake stalls"
	}
	return ""
}

// refusedString explains a hello the path refused.
func (d Diagnosis) refusedString(ms time.Duration) string {
	e := d.Evidence
	switch {
	case d.Class == ClassRefused:
		return fmt.Sprintf("%d-byte ClientHello acknowledged whole, then the connection was cut before any reply (after %s), as a different ClientHello was — whoever read it refuses the connection, not its packets or its hello: a policy (an SNI filter, a proxy that terminates it) or a server that does not speak TLS on this port",
			e.Sent, ms)
	case d.Class == ClassContentIntolerant && e.TCPInfo && e.Acked >= e.Sent:
		return fmt.Sprintf("%d-byte ClientHello acknowledged whole, then the connection was cut before any reply (after %s) — a box or server on the path read it and refused it: its size or an extension it does not know, or the connection itself",
			e.Sent, ms)
	case d.Class == ClassContentIntolerant:
		return fmt.Sprintf("%d-byte ClientHello rejected before any reply (after %s), in segments any path carries — a box on the path rejects this ClientHello: its size or an extension it does not know",
			e.Sent, ms)
	case e.Acked <= 0 && e.Retransmits > 0:
		return fmt.Sprintf("%d-byte ClientHello sent as %s: even the small tail was lost and %s, nothing SACKed (after %s) — not packets too large for the path, a box that dropped the flow on a ClientHello split across segments",
			e.Sent, segments(e.Sent, e.SegSize), retransmitted(e.Retransmits), ms)
	case e.Acked <= 0:
		return fmt.Sprintf("%d-byte ClientHello sent as %s, cut before any reply (after %s) — this path was seen to fail on a ClientHello split across segments",
			e.Sent, segments(e.Sent, e.SegSize), ms)
	}
	return fmt.Sprintf("%d-byte ClientHello sent as %s: the %d-byte head was acknowledged, then the flow was cut before any reply (after %s) — a box on the path fails on a ClientHello split across segments",
		e.Sent, segments(e.Sent, e.SegSize), min(e.Acked, e.SegSize), ms)
}

func retransmitted(n int) string {
	switch n {
	case 0:
		return "lost"
	case 1:
		return "retransmitted once"
	case 2:
		return "retransmitted twice"
	}
	return fmt.Sprintf("retransmitted %d times", n)
}

func segments(sent, seg int) string {
	if seg <= 0 || sent <= seg {
		return "one segment"
	}
	return fmt.Sprintf("%d segments of up to %d bytes", (sent+seg-1)/seg, seg)
}
