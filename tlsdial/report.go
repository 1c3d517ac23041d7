package tlsdial

import (
	"fmt"
	"strings"
	"time"

	"github.com/fitshake/fitshake/pmtu"
)

// Outcome is how an attempt ended.
type Outcome int

const (
	// OutcomeOK means the attempt completed: the handshake finished
	// (Dialer) or the server's first byte arrived (TCPDialer).
	OutcomeOK Outcome = iota + 1
	// OutcomeStall means TCP connected but the server stayed silent past the
	// stall window: the signature of a path-MTU black hole.
	OutcomeStall
	// OutcomeError means the attempt failed in a way that is not retried
	// (refused, reset, certificate or alert, ...).
	OutcomeError
	// OutcomeCanceled means the dial's context ended or the connection was
	// closed during the attempt.
	OutcomeCanceled
	// OutcomeSuperseded means a parallel attempt completed first and this
	// one was closed.
	OutcomeSuperseded
)

func (o Outcome) String() string {
	switch o {
	case OutcomeOK:
		return "ok"
	case OutcomeStall:
		return "stall"
	case OutcomeError:
		return "error"
	case OutcomeCanceled:
		return "canceled"
	case OutcomeSuperseded:
		return "superseded"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Attempt is one connection tried during a dial.
type Attempt struct {
	// MTU is the path MTU the MSS was clamped to fit; 0 means no clamp.
	MTU int
	// MSS is the TCP_MAXSEG set on the socket (derived from MTU and the
	// address family); 0 means none was set.
	MSS int
	// HelloSize is the ClientHello's TLS record size in bytes, known before
	// it was sent.
	HelloSize int
	// Rung names the fingerprint rung of the ClientHello ("" for
	// TCPDialer, which replays the TLS stack's own hello).
	Rung string
	// ConnectRTT is the round trip measured while connecting (the kernel's
	// estimate where available); 0 if the connection failed.
	ConnectRTT time.Duration
	// StallWindow is how long the server was allowed to stay silent.
	StallWindow time.Duration
	// Duration is the attempt's wall time, connect included.
	Duration time.Duration
	// Hedge reports that the attempt ran in parallel with the one before
	// it, because the evidence against that one was ambiguous.
	Hedge   bool
	Outcome Outcome
	// Diagnosis is what TCP_INFO showed when the attempt ended; its Class
	// is ClassUnknown when TCP_INFO was not read (other systems, TimerOnly).
	Diagnosis pmtu.Diagnosis
	// Err is the attempt's error; nil for OutcomeOK.
	Err error
}

// Report describes how a connection was established.
type Report struct {
	// Attempts lists every attempt in order; the last one is the one that
	// succeeded when the dial succeeded.
	Attempts []Attempt
	// MSS is the clamp that worked; 0 means none was needed.
	MSS int
	// MTU is the path MTU MSS was derived from; 0 means no clamp.
	MTU int
	// HelloSize is the record size of the ClientHello that completed.
	HelloSize int
	// Rung names the fingerprint rung that completed ("" for TCPDialer).
	Rung string
	// SecurityReduced reports that the completed hello dropped the
	// post-quantum key share the first rung offers (only possible when the
	// dialer allows it).
	SecurityReduced bool
	// FromCache reports that the first attempt used sizes remembered from
	// an earlier dial to the same destination.
	FromCache bool
	// Diagnosis explains the first stall, the reason for any fallback: its
	// String is a one-line explanation and its Fix the network-side change
	// that would make the fallback unnecessary. Zero when nothing stalled
	// or TCP_INFO was not read.
	Diagnosis pmtu.Diagnosis
	// Duration is the dial's total wall time.
	Duration time.Duration
}

// Stalls counts the attempts that stalled.
func (r Report) Stalls() int {
	n := 0
	for _, a := range r.Attempts {
		if a.Outcome == OutcomeStall {
			n++
		}
	}
	return n
}

// String formats the report on one line per attempt, for people.
func (r Report) String() string {
	var b strings.Builder
	for i, a := range r.Attempts {
		mss := "default"
		if a.MSS > 0 {
			mss = fmt.Sprint(a.MSS)
		}
		fmt.Fprintf(&b, "attempt %d: mss=%s", i+1, mss)
		if a.HelloSize > 0 {
			fmt.Fprintf(&b, " hello=%dB", a.HelloSize)
		}
		if a.Rung != "" {
			fmt.Fprintf(&b, " rung=%s", a.Rung)
		}
		if a.Hedge {
			b.WriteString(" (in parallel)")
		}
		fmt.Fprintf(&b, " %s after %s", a.Outcome, a.Duration.Round(10*time.Microsecond))
		if a.Outcome == OutcomeStall && a.Diagnosis.Class != pmtu.ClassUnknown {
			fmt.Fprintf(&b, ": %s", a.Diagnosis.Class)
		}
		if a.Err != nil && (a.Outcome == OutcomeError || a.Outcome == OutcomeCanceled) {
			fmt.Fprintf(&b, ": %v", a.Err)
		}
		b.WriteByte('\n')
	}
	if r.Diagnosis.Class.BlackHole() {
		fmt.Fprintf(&b, "why: %s\nfix: %s\n", r.Diagnosis, r.Diagnosis.Fix())
	}
	if r.FromCache {
		b.WriteString("(sizes from memory)\n")
	}
	if r.SecurityReduced {
		b.WriteString("(security reduced: no post-quantum key share)\n")
	}
	return b.String()
}
