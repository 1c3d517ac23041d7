package tlsdial

import (
	"context"
	"crypto/tls"
	"time"

	"github.com/fitshake/fitshake/pmtu"
)

// Trace is a set of hooks that observe a dial as it walks the ladder.
// Any hook may be nil. Hooks may be called concurrently from different
// dials; within one dial they are called in order, one at a time (not
// always from the same goroutine), with no lock held: a hook may call the
// connection's Report or Close.
//
// A Trace is taken from the Dialer (or TCPDialer) and from the dial's
// context (see WithTrace); when both are set, both are called, the
// Dialer's first. To give one dialer or context several Traces (yours and
// a metrics adapter's), join them with MultiTrace.
type Trace struct {
	// AttemptStart is called before each attempt connects.
	AttemptStart func(AttemptStartInfo)
	// Stall is called when an attempt is declared stalled, before it is
	// closed.
	Stall func(StallInfo)
	// AttemptDone is called when an attempt ends, whatever its outcome.
	AttemptDone func(AttemptDoneInfo)
	// Done is called once per dial with the final Report and error (nil on
	// success), after every attempt's AttemptDone. For a TCPDialer
	// connection it is called when the first server byte arrives, or when
	// the connection gives up or is closed before that.
	Done func(DoneInfo)
}

// AttemptStartInfo describes an attempt about to start.
type AttemptStartInfo struct {
	Addr      string
	ID        int    // the attempt's Attempt.ID: 1, 2, … in start order
	MTU       int    // path MTU the MSS is clamped to fit; 0 = no clamp
	HelloSize int    // ClientHello record bytes; 0 if not known yet
	Rung      string // fingerprint rung; "" for TCPDialer
	FromCache bool   // the settings came from memory of this destination
	// FromNetwork: the settings came from what the local network has shown
	// it needs (pmtu.Cache.LoadNetwork), for a destination not remembered.
	FromNetwork bool
	Hedge       bool // started beside attempts still running
}

// StallInfo describes a stalled attempt.
type StallInfo struct {
	Addr    string
	ID      int           // the attempt's Attempt.ID
	Elapsed time.Duration // since the first flight was written
	Window  time.Duration // the stall window that expired
	// Diagnosis is what TCP_INFO showed (ClassUnknown without it).
	Diagnosis pmtu.Diagnosis
}

// AttemptDoneInfo describes a finished attempt.
type AttemptDoneInfo struct {
	Addr    string
	Attempt Attempt
}

// DoneInfo describes a finished dial.
type DoneInfo struct {
	Addr   string
	Report Report
	Err    error
	// ConnectionState is the TLS state of a Dialer's completed handshake
	// (as Conn.ConnectionState); nil for a failed dial and for TCPDialer,
	// whose TLS stack is above it.
	ConnectionState *tls.ConnectionState
}

// Recovered reports whether the dial completed after at least one of its
// attempts stalled or was reset: the path lost or refused what a default
// dial sends, and a clamp or another hello got through. A dial that
// started from remembered sizes (Report.FromCache) and met nothing is not
// a recovery.
func (i DoneInfo) Recovered() bool {
	if i.Err != nil {
		return false
	}
	for _, a := range i.Report.Attempts {
		if a.Outcome == OutcomeStall || a.Outcome == OutcomeReset {
			return true
		}
	}
	return false
}

// MultiTrace returns a Trace that calls the hooks of each of ts in order,
// one after the other, skipping nil Traces and nil hooks. A hook of the
// result is nil when no Trace in ts has it. It returns nil when every
// Trace is nil.
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
		if t.AttemptStart != nil {
			m.AttemptStart = all.attemptStart
		}
		if t.Stall != nil {
			m.Stall = all.stall
		}
		if t.AttemptDone != nil {
			m.AttemptDone = all.attemptDone
		}
		if t.Done != nil {
			m.Done = all.done
		}
	}
	return m
}

type traceKey struct{}

// WithTrace returns a context carrying t. Dials made with that context call
// its hooks in addition to those of the dialer. This is how TCPDialer users
// inside net/http see reports: attach a Trace to the request's context.
// It replaces a Trace ctx already carries; to keep that one too, attach
// MultiTrace(ContextTrace(ctx), t).
func WithTrace(ctx context.Context, t *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

// ContextTrace returns the Trace attached to ctx by WithTrace, or nil.
func ContextTrace(ctx context.Context) *Trace {
	t, _ := ctx.Value(traceKey{}).(*Trace)
	return t
}

// traces is the ordered set of traces of one dial.
type traces []*Trace

func collectTraces(own *Trace, ctx context.Context) traces {
	var ts traces
	if own != nil {
		ts = append(ts, own)
	}
	if t := ContextTrace(ctx); t != nil && t != own {
		ts = append(ts, t)
	}
	return ts
}

func (ts traces) attemptStart(i AttemptStartInfo) {
	for _, t := range ts {
		if t.AttemptStart != nil {
			t.AttemptStart(i)
		}
	}
}

func (ts traces) stall(i StallInfo) {
	for _, t := range ts {
		if t.Stall != nil {
			t.Stall(i)
		}
	}
}

func (ts traces) attemptDone(i AttemptDoneInfo) {
	for _, t := range ts {
		if t.AttemptDone != nil {
			t.AttemptDone(i)
		}
	}
}

func (ts traces) done(i DoneInfo) {
	for _, t := range ts {
		if t.Done != nil {
			t.Done(i)
		}
	}
}
