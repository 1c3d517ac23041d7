package tlswatch

import (
	"fmt"
	"time"

	"github.com/fitshake/fitshake/internal/verdict"
	"github.com/fitshake/fitshake/pmtu"
)

// Class is what a watched handshake, or a prefix's handshakes, came to. Its
// values are stable JSON strings; those shared with the client's diagnosis
// (diagnose -json, the diagnostic page) are internal/verdict's.
type Class string

// The classes.
const (
	// Healthy: the handshake completed (for a prefix: it is not failing).
	Healthy Class = verdict.Healthy
	// BlackHoleUpstream: the client's large packets are lost on the way
	// in: the hello's tail arrived out of order, its head never did.
	BlackHoleUpstream Class = verdict.BlackHoleUpstream
	// BlackHoleDownstream: our large packets are lost on the way out: our
	// flight was retransmitted or its tail SACKed, its head never
	// acknowledged.
	BlackHoleDownstream Class = verdict.BlackHoleDownstream
	// BlackHole: a prefix with both of the above.
	BlackHole Class = verdict.BlackHole
	// Reset: the client reset or closed the connection during the
	// handshake with no sign of lost packets.
	Reset Class = "reset"
	// TLSError: an alert either way (a certificate the client refused,
	// no common cipher), or a first record that is not a TLS handshake.
	// Not the path's fault.
	TLSError Class = "tls-error"
	// Idle: nothing at all arrived (a scanner, a health check, a
	// connection opened ahead of need), or the client went quiet or
	// left after our flight arrived whole (a client that races
	// connections, as fitshake and browsers do, and took another). Not
	// a failure.
	Idle Class = "idle"
	// HelloPartial: part of the hello arrived in order and the rest
	// never did, with nothing seen out of order.
	HelloPartial Class = "hello-partial"
)

// Failed reports whether c counts as a failed handshake: every class but
// Healthy and Idle.
func (c Class) Failed() bool { return c != Healthy && c != Idle && c != "" }

// BlackHoleClass reports whether c is evidence of packets lost for their
// size: the evidence the self-fix acts on.
func (c Class) BlackHoleClass() bool {
	return c == BlackHoleUpstream || c == BlackHoleDownstream || c == BlackHole
}

// Stage is how far a watched handshake got.
type Stage int

// The stages, in order.
const (
	// StageNothing: no byte of the hello was read.
	StageNothing Stage = iota
	// StageHelloPartial: part of the hello's record was read.
	StageHelloPartial
	// StageHello: the hello's record was read whole; our flight not yet
	// written.
	StageHello
	// StageFlight: our flight was written; the client's next flight has
	// not come.
	StageFlight
	// StageDone: the client's next flight came: the handshake completed
	// as far as the path is concerned.
	StageDone
)

func (s Stage) String() string {
	switch s {
	case StageNothing:
		return "nothing received"
	case StageHelloPartial:
		return "hello partly received"
	case StageHello:
		return "hello received"
	case StageFlight:
		return "our flight sent"
	case StageDone:
		return "completed"
	}
	return fmt.Sprintf("Stage(%d)", int(s))
}

// End is why the watch of a connection ended before its handshake
// completed.
type End int

// The ends.
const (
	// EndNone: the handshake completed, or the watch timed out
	// (Watcher.StallAfter) with the connection still open.
	EndNone End = iota
	// EndEOF: the client closed its side (a FIN).
	EndEOF
	// EndReset: the client reset the connection.
	EndReset
	// EndTimeout: a read deadline set by the TLS stack passed (its
	// handshake timeout).
	EndTimeout
	// EndClosed: the server closed the connection (after an error of its
	// own, or at shutdown).
	EndClosed
)

func (e End) String() string {
	switch e {
	case EndNone:
		return "open"
	case EndEOF:
		return "closed by the client"
	case EndReset:
		return "reset by the client"
	case EndTimeout:
		return "handshake timed out"
	case EndClosed:
		return "closed by the server"
	}
	return fmt.Sprintf("End(%d)", int(e))
}

// observation is everything a watched connection saw: what classify
// judges. It is plain data, so that tests can write it.
type observation struct {
	stage    Stage
	end      End
	read     int // bytes of the client's read by the TLS stack
	helloLen int // bytes of the hello's record, header included; 0 unknown
	wrote    int // bytes we wrote before the client's next flight
	alert    string
	elapsed  time.Duration
	info     pmtu.TCPInfo
	infoOK   bool // info was read (Linux)
}

// Evidence is what the kernel and the records showed of one watched
// connection: the numbers behind its class.
type Evidence struct {
	Stage Stage
	End   End
	// HelloBytes is the client's hello record, header included; 0 when
	// its header never arrived.
	HelloBytes int
	// Received is the bytes of the client's in order (TCP_INFO's count
	// when read, else what the TLS stack read).
	Received int
	// OutOfOrder is the client's segments that arrived beyond a hole
	// (tcpi_rcv_ooopack).
	OutOfOrder int
	// Flight is the bytes we wrote before the client's next flight (our
	// handshake flight).
	Flight int
	// Acked is the bytes of ours the client acknowledged in order
	// (tcpi_bytes_acked less the SYN); 0 unknown.
	Acked int
	// Unacked, SACKed and Retransmits are our segments not acknowledged,
	// acknowledged beyond a hole, and retransmitted (tcpi_unacked,
	// tcpi_sacked, tcpi_total_retrans).
	Unacked, SACKed, Retransmits int
	// SYNMSS is the MSS the client's SYN announced, as far as TCP_INFO
	// tells it: the send MSS plus the timestamp option's 12 bytes,
	// bounded by our own route's MSS and by the self-fix's clamp (see
	// AdvMSS); 0 unknown.
	SYNMSS int
	// AdvMSS is the MSS our SYN-ACK announced (tcpi_advmss): our route's,
	// or the self-fix's clamp when it applied to the connection. A SYNMSS
	// below it is the client's own; 0 unknown.
	AdvMSS int
	// MaxReceived is the largest segment received from the client
	// (tcpi_rcv_mss); 0 unknown.
	MaxReceived int
	// MaxAcked is the largest of our segments the client acknowledged:
	// the send MSS when a full-size segment of ours was acknowledged in
	// order; 0 when none was, or unknown.
	MaxAcked int
	// Alert is the alert seen ("client alert", "server alert") or "not
	// TLS" for a first record that is not a handshake; "" none.
	Alert string
	// TCPInfo reports that the kernel's counts were read (Linux).
	TCPInfo bool
	// Elapsed is the time from accept to the verdict.
	Elapsed time.Duration
}

// timestampOpt is the bytes of the TCP timestamp option as it sits in
// every segment (10, padded to 12): the send MSS excludes it.
const timestampOpt = 12

// classify judges an observation. It is a pure function.
func classify(o observation) (Class, Evidence) {
	ev := Evidence{
		Stage: o.stage, End: o.end, HelloBytes: o.helloLen, Received: o.read,
		Flight: o.wrote, Alert: o.alert, TCPInfo: o.infoOK, Elapsed: o.elapsed,
	}
	if o.infoOK {
		ti := o.info
		// BytesReceived counts the client's FIN, as BytesAcked our SYN.
		fin := 0
		if o.end == EndEOF {
			fin = 1
		}
		ev.Received = max(ev.Received, int(ti.BytesReceived)-fin)
		ev.OutOfOrder = int(ti.RcvOOOPack)
		ev.Unacked, ev.SACKed, ev.Retransmits = int(ti.Unacked), int(ti.Sacked), int(ti.TotalRetrans)
		ev.Acked = int(max(ti.BytesAcked, 1) - 1)
		// A reset clears the kernel's counts of segments in flight
		// (unacked, sacked), not its totals: none of our flight acknowledged
		// in order (BytesAcked counts the SYN) while segments of it were
		// delivered (Delivered counts the SYN too) is its tail SACKed.
		if ti.BytesAcked <= 1 && o.wrote > 0 {
			ev.Unacked = max(ev.Unacked, 1)
			ev.SACKed = max(ev.SACKed, int(ti.Delivered)-1)
		}
		ev.SYNMSS = int(ti.SndMSS)
		if ti.Options&1 != 0 { // TCPI_OPT_TIMESTAMPS
			ev.SYNMSS += timestampOpt
		}
		ev.AdvMSS = int(ti.AdvMSS)
		ev.MaxReceived = int(ti.RcvMSS)
		// BytesAcked counts the SYN: a full segment of ours was
		// acknowledged in order once it passed SndMSS.
		if ti.SndMSS > 0 && ti.BytesAcked > uint64(ti.SndMSS) {
			ev.MaxAcked = int(ti.SndMSS)
		}
	}
	return judge(o, ev), ev
}

// judge picks the class; ev is o's evidence.
func judge(o observation, ev Evidence) Class {
	switch {
	case o.alert != "":
		return TLSError
	case o.stage == StageDone:
		return Healthy
	case o.stage == StageFlight:
		lost := ev.Unacked > 0 && (ev.Retransmits > 0 || ev.SACKed > 0)
		switch {
		case lost:
			return BlackHoleDownstream
		case ev.TCPInfo && ev.Acked >= o.wrote:
			// Our flight arrived whole and the client went quiet, or
			// dropped the connection: a client that races connections
			// (fitshake, browsers) and took another.
			return Idle
		case o.end == EndReset || o.end == EndEOF:
			return Reset
		}
		return Idle // the client went quiet, nothing seen lost
	case ev.OutOfOrder > 0 && o.stage < StageHello:
		// Data beyond a hole, and the hole never filled: the client's
		// large segment was lost on the way in.
		return BlackHoleUpstream
	case o.stage == StageHelloPartial || (o.stage == StageNothing && ev.Received > 0):
		if o.end == EndReset || o.end == EndEOF {
			return Reset
		}
		return HelloPartial
	case o.stage == StageHello:
		if o.end == EndReset || o.end == EndEOF {
			return Reset
		}
		return Idle // the TLS stack has not answered: not the path's doing
	case o.end == EndReset:
		return Reset
	}
	return Idle
}

// Sentence explains ev in one line for people, in the words of the class.
func (ev Evidence) Sentence(c Class) string {
	ms := ev.Elapsed.Round(100 * time.Microsecond)
	switch c {
	case Healthy:
		return fmt.Sprintf("handshake completed in %s: %d-byte hello, %d-byte flight", ms, ev.HelloBytes, ev.Flight)
	case BlackHoleUpstream:
		return fmt.Sprintf("%d of the client's segments arrived out of order but the hello's head never did (%d bytes in order, after %s) — the client's large packets are dropped on the way in",
			ev.OutOfOrder, ev.Received, ms)
	case BlackHoleDownstream:
		return fmt.Sprintf("%d-byte hello received; our %d-byte flight: %d segments never acknowledged, %d SACKed beyond a hole, %d retransmitted (after %s) — our large packets are dropped on the way back",
			ev.HelloBytes, ev.Flight, ev.Unacked, ev.SACKed, ev.Retransmits, ms)
	case Reset:
		return fmt.Sprintf("%s after %s (%s), nothing seen lost", ev.End, ms, ev.Stage)
	case TLSError:
		return fmt.Sprintf("%s (%s, after %s) — a TLS failure, not the path", ev.Alert, ev.Stage, ms)
	case HelloPartial:
		return fmt.Sprintf("%d bytes of a %d-byte hello arrived and then nothing, nothing out of order (after %s)", ev.Received, ev.HelloBytes, ms)
	case Idle:
		if ev.Stage == StageFlight {
			return fmt.Sprintf("our %d-byte flight was acknowledged and the client said nothing more, %s (after %s) — a client that went quiet or took another connection, not the path", ev.Flight, ev.End, ms)
		}
		return fmt.Sprintf("%s, %s (after %s) — an idle or scanning client, not a black hole", ev.Stage, ev.End, ms)
	}
	return string(c)
}
