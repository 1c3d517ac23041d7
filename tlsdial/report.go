package tlsdial

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fitshake/fitshake/pmtu"
)

// Outcome is how an attempt ended.
type Outcome int

// OutcomeRunning is the zero Outcome: the attempt has not ended yet (seen
// in TCPConn.Report while its dial runs).
const OutcomeRunning Outcome = 0

const (
	// OutcomeOK means the attempt completed: the handshake finished
	// (Dialer) or the server's first byte arrived (TCPDialer).
	OutcomeOK Outcome = iota + 1
	// OutcomeStall means TCP connected and the ClientHello went out, but
	// the reply never came: TCP_INFO showed a black hole, or the server
	// stayed silent while a parallel attempt got its reply, or past every
	// window. Its Err is a *StallError.
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
	// OutcomeReset means the connection was reset or closed after the
	// ClientHello and before any reply, as boxes that reject large packets
	// or a hello do: the dial moved on with a smaller MSS as after a stall.
	OutcomeReset
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
	case OutcomeReset:
		return "reset"
	case OutcomeRunning:
		return "running"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Attempt is one connection tried during a dial.
type Attempt struct {
	// ID numbers the dial's attempts from 1 in the order they started;
	// Trace events carry it.
	ID int
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
	// Hedge reports that the attempt started beside the ones still
	// running, because they were silent (or another dial to the same
	// destination found its step worked).
	Hedge   bool
	Outcome Outcome
	// Diagnosis is what was seen of the attempt when it ended: TCP_INFO's
	// class and evidence (ClassUnknown without TCP_INFO: other systems,
	// TimerOnly), for OutcomeReset ClassReset or, when the evidence says
	// the hello itself was refused, ClassSplitIntolerant or
	// ClassContentIntolerant, and Evidence.OvertakenBy when a parallel
	// attempt got the reply first.
	Diagnosis pmtu.Diagnosis
	// Err is the attempt's error; nil for OutcomeOK.
	Err error
}

// Report describes how a connection was established.
type Report struct {
	// Attempts lists every attempt in the order they started (ID 1
	// first). Parallel attempts end in any order; the one that completed
	// has Outcome OutcomeOK.
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
	// FromNetwork reports that the first attempt used the clamp the local
	// network was shown to need (pmtu.Cache.LoadNetwork): the destination
	// itself was not remembered.
	FromNetwork bool
	// Diagnosis explains the first stall or reset, the reason for any
	// fallback: its String is a one-line explanation and its Fix the
	// network-side change that would make the fallback unnecessary. Zero
	// when nothing stalled.
	Diagnosis pmtu.Diagnosis
	// Duration is the dial's total wall time.
	Duration time.Duration
	// Protection says whether the connection's ClientHello was watched
	// and would be replayed. Its zero value, Protected, is what every
	// Dialer connection has, and a TCPConn until its first flight is
	// written; a TCPConn passed through unwatched says why.
	Protection Protection
	// Prelude names the exchanges that went before the watched
	// ClientHello (TCPDialer): plaintext preludes ("PostgreSQL
	// SSLRequest") and a first hello answered by a HelloRetryRequest
	// ("HelloRetryRequest"), in order, joined by ", "; "" if none. Each
	// raced attempt replayed them first.
	Prelude string
}

// Protection says whether a connection's first flight was watched, and
// if not, why.
type Protection int

const (
	// Protected is the zero Protection: the ClientHello was watched and
	// replayed as needed (or, for a TCPConn, nothing was written yet).
	Protected Protection = iota
	// UnprotectedNotHello means the first flight, or the one after a
	// prelude, was not a lone ClientHello (a protocol that talks before
	// its TLS, a hello written in pieces), so it was passed through.
	UnprotectedNotHello
	// UnprotectedServerFirst means the server spoke first (MySQL, SMTP
	// and other server-first protocols).
	UnprotectedServerFirst
	// UnprotectedDeclined means a prelude was answered with something
	// other than "TLS follows" (PostgreSQL's 'N'), or failed: plain bytes
	// follow.
	UnprotectedDeclined
	// UnprotectedReplayOff means TCPDialer.StallWindow is negative.
	UnprotectedReplayOff
	// UnprotectedHelloRetry means a raced attempt got the server's TLS
	// 1.3 HelloRetryRequest and kept the connection: the first ClientHello
	// was protected, the second one is not watched. (A retry request
	// that answers attempt 1 is replayed like a prelude instead.)
	// Offering a key share for the group the server takes avoids the
	// retry.
	UnprotectedHelloRetry
)

func (p Protection) String() string {
	if p == Protected {
		return "protected"
	}
	return "not protected: " + p.reason()
}

// reason says why p is not Protected.
func (p Protection) reason() string {
	switch p {
	case UnprotectedNotHello:
		return "not a ClientHello"
	case UnprotectedServerFirst:
		return "the server spoke first"
	case UnprotectedDeclined:
		return "the server declined TLS"
	case UnprotectedReplayOff:
		return "replay disabled (StallWindow < 0)"
	case UnprotectedHelloRetry:
		return "the server asked for a second ClientHello (HelloRetryRequest)"
	}
	return fmt.Sprintf("Protection(%d)", int(p))
}

// clone returns r with Attempts of its own.
func (r Report) clone() Report {
	r.Attempts = slices.Clone(r.Attempts)
	return r
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
	for _, a := range r.Attempts {
		mss := "default"
		if a.MSS > 0 {
			mss = fmt.Sprint(a.MSS)
		}
		fmt.Fprintf(&b, "attempt %d: mss=%s", a.ID, mss)
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
		if a.Err != nil && (a.Outcome == OutcomeError || a.Outcome == OutcomeCanceled || a.Outcome == OutcomeReset) {
			fmt.Fprintf(&b, ": %v", a.Err)
		}
		b.WriteByte('\n')
	}
	if r.Diagnosis != (pmtu.Diagnosis{}) {
		fmt.Fprintf(&b, "why: %s\nfix: %s\n", r.Diagnosis, r.Diagnosis.Fix())
	}
	if r.Prelude != "" {
		fmt.Fprintf(&b, "(after %s)\n", r.Prelude)
	}
	if r.Protection != Protected {
		fmt.Fprintf(&b, "%s\n", r.Protection)
	}
	if r.FromCache {
		b.WriteString("(sizes from memory)\n")
	}
	if r.FromNetwork {
		b.WriteString("(sizes from the network's memory)\n")
	}
	if r.SecurityReduced {
		b.WriteString("(security reduced: no post-quantum key share)\n")
	}
	return b.String()
}
