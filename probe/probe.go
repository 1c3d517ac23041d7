package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/fitshake/fitshake/internal/verdict"
)

// DefaultMaxConns bounds the connections of a Run whose Options leave
// MaxConns zero.
const DefaultMaxConns = 32

// DefaultTimeout bounds a Run whose context has no deadline.
const DefaultTimeout = 30 * time.Second

// Options configure Run. The zero value probes over "tcp" with the system
// roots and no progress reports.
type Options struct {
	// Network is "tcp" (the default when empty), "tcp4" or "tcp6".
	Network string
	// Config is the TLS configuration of the handshakes (RootCAs,
	// ServerName, NextProtos). Nil means the zero Config with the host of
	// addr as ServerName. A handshake that fails only on the certificate
	// still shows that the path carries TLS: the Result says so in its
	// Certificate field, and measures the path all the same.
	Config *tls.Config
	// NetDialer dials every connection. Nil means the zero net.Dialer.
	// Its Control or ControlContext runs on every socket, after the
	// probe's MSS clamp.
	NetDialer *net.Dialer
	// Progress, if not nil, is called before each step with what it
	// tries, from Run's goroutine.
	Progress func(Step)
	// MaxConns bounds the connections Run makes. Zero means
	// DefaultMaxConns; a search that would need more stops early and says
	// so in the Result.
	MaxConns int
}

// Step is what Run is about to try, for a progress display.
type Step struct {
	N    int    // 1 for the first connection
	What string // "upstream, clamp 1038", "crypto/tls handshake", …
}

// Result is what Run measured. Its first five fields are the JSON object
// of `diagnose -json` and the diagnostic page.
type Result struct {
	// Healthy reports that crypto/tls's own handshake completed without a
	// clamp (a certificate error counts: the path carried the handshake).
	Healthy bool `json:"healthy"`
	// UpstreamMTU and DownstreamMTU are the largest IP packets that got
	// through client to server and back; 0 when not measured.
	UpstreamMTU   int `json:"upstream_mtu"`
	DownstreamMTU int `json:"downstream_mtu"`
	// Class names what is wrong; see the package verdict classes:
	// "healthy", "pmtud-works", "blackhole", "blackhole-upstream",
	// "blackhole-downstream", "fragments-dropped", "split-intolerant",
	// "hello-intolerant", "unknown", and "cannot-measure" (see
	// CannotMeasure).
	Class string `json:"class"`
	// Fixes are the changes to ask for, each starting with its audience:
	// "network:", "server:" or "app:".
	Fixes []string `json:"fixes"`

	Addr   string  `json:"addr"`   // the address probed
	Family string  `json:"family"` // "ipv4" or "ipv6"
	RTTMs  float64 `json:"rtt_ms"` // the connect round trip
	// UpstreamAtLeast and DownstreamAtLeast say a limit is only a lower
	// bound: nothing larger could be sent or shown.
	UpstreamAtLeast   bool `json:"upstream_at_least"`
	DownstreamAtLeast bool `json:"downstream_at_least"`
	// PMTUD reports that ICMP "fragmentation needed" / "packet too big"
	// reached this host: the kernel learned a smaller path MTU.
	PMTUD bool `json:"pmtud"`
	// Flight is the server's handshake flight in bytes; 0 if unknown.
	Flight int `json:"flight"`
	// Handshake and Fitshake say how crypto/tls's handshake and
	// fitshake's Dialer fared: "ok", "ok up to the certificate, …", or
	// the failure.
	Handshake string `json:"handshake"`
	Fitshake  string `json:"fitshake"`
	// Certificate, when not empty, says that the server's certificate
	// failed verification with Options.Config (its roots, its ServerName)
	// in crypto/tls's handshake or fitshake's: x509's reason, such as
	// "x509: certificate signed by unknown authority". The path carried
	// the handshake up to the certificate, so Class, Healthy and the
	// limits stand; Fixes ends with the change that makes it verify.
	Certificate string `json:"certificate,omitempty"`
	// CannotMeasure, when not empty, says why this host's kernel cannot
	// see the path, and Class is "cannot-measure": the limits stay 0
	// rather than describe a TCP peer that is not the server. Err returns
	// it as a *CannotMeasureError.
	CannotMeasure string `json:"cannot_measure,omitempty"`
	// Unmeasured lists what this platform or path could not show.
	Unmeasured []string `json:"unmeasured,omitempty"`
	Conns      int      `json:"conns"`
	Seconds    float64  `json:"seconds"`
	// Probes is every probe connection, in order.
	Probes []Probe `json:"probes"`
}

// Probe is one probe connection.
type Probe struct {
	What    string  `json:"what"`
	Outcome string  `json:"outcome"` // "passed", "lost", "reset", "silent"
	Packet  int     `json:"packet"`  // the IP packet size it sent or received
	Ms      float64 `json:"ms"`
}

// ErrUnreachable is matched (errors.Is) by Run's error when no TCP
// connection to the address could be made.
var ErrUnreachable = errors.New("probe: cannot connect")

// ErrCannotMeasure is matched (errors.Is) by a [Result]'s Err when the
// path could not be measured: see [CannotMeasureError].
var ErrCannotMeasure = errors.New("probe: cannot measure")

// CannotMeasureError is a [Result]'s Err when the probe's evidence, this
// host's TCP_INFO, cannot apply to the path: the server's address is on
// this host (loopback), so the kernel sees no link that could drop a
// packet, and a handshake that fails there fails in a program relaying the
// connection (a proxy that terminates TCP, such as package pmtutest's),
// whose far side is out of sight. It unwraps to [ErrCannotMeasure].
type CannotMeasureError struct {
	Reason string // why, as Result.CannotMeasure says it
}

func (e *CannotMeasureError) Error() string { return "probe: cannot measure: " + e.Reason }

func (e *CannotMeasureError) Unwrap() error { return ErrCannotMeasure }

// Err returns a [*CannotMeasureError] when the path could not be measured
// (r.CannotMeasure is set), and nil when r is a measurement.
func (r *Result) Err() error {
	if r.CannotMeasure == "" {
		return nil
	}
	return &CannotMeasureError{Reason: r.CannotMeasure}
}

// Run measures the path to addr ("host:port"). It fails only when it
// cannot start or finish: bad input, no TCP connection (ErrUnreachable),
// or ctx ending (DefaultTimeout when ctx has no deadline); a broken path
// is a Result.
func Run(ctx context.Context, addr string, o Options) (*Result, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	r, err := newRun(ctx, addr, o)
	if err != nil {
		return nil, err
	}
	return r.measure(ctx)
}

func itoa(n int) string { return strconv.Itoa(n) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// String renders the result for people: what works, what breaks, in which
// direction, at which size, and the fixes.
func (r *Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): %s\n", r.Addr, r.Family, r.headline())
	if r.Certificate != "" {
		fmt.Fprintf(&b, "  CERTIFICATE NOT TRUSTED: %s\n", r.Certificate)
	}
	fmt.Fprintf(&b, "  TCP connects, round trip %.1f ms\n", r.RTTMs)
	fmt.Fprintf(&b, "  crypto/tls handshake: %s\n", r.Handshake)
	fmt.Fprintf(&b, "  fitshake handshake:   %s\n", r.Fitshake)
	if r.UpstreamMTU == 0 && r.DownstreamMTU == 0 && (r.Healthy || r.CannotMeasure != "") {
		b.WriteString("  packet limits: not measured\n")
	} else {
		fmt.Fprintf(&b, "  largest packet to the server:   %s\n", limitText(r.UpstreamMTU, r.UpstreamAtLeast))
		fmt.Fprintf(&b, "  largest packet from the server: %s\n", limitText(r.DownstreamMTU, r.DownstreamAtLeast))
	}
	if r.PMTUD {
		b.WriteString("  ICMP \"fragmentation needed\" / \"packet too big\" reaches this host: path MTU discovery works\n")
	}
	for _, u := range r.Unmeasured {
		b.WriteString("  not measured: " + u + "\n")
	}
	if len(r.Fixes) > 0 {
		b.WriteString("fixes:\n")
		for _, f := range r.Fixes {
			b.WriteString("  - " + f + "\n")
		}
	}
	fmt.Fprintf(&b, "(%d connections, %.1f s)\n", r.Conns, r.Seconds)
	return b.String()
}

func (r *Result) headline() string {
	switch r.Class {
	case verdict.Healthy:
		return "healthy: full-size packets get through both ways"
	case verdict.PMTUDWorks:
		return "the path MTU is below 1500, and ICMP tells the senders: it works, one round trip slower"
	case verdict.BlackHole:
		return "BLACK HOLE both ways: large packets vanish, no ICMP comes back"
	case verdict.BlackHoleUpstream:
		return "BLACK HOLE towards the server: large packets vanish, no ICMP comes back"
	case verdict.BlackHoleDownstream:
		return "BLACK HOLE from the server: its large packets vanish, no ICMP reaches it"
	case verdict.FragmentsDropped:
		return "FRAGMENTS DROPPED: this host sends large packets with DF clear, and their fragments are dropped"
	case verdict.SplitIntolerant:
		return "a box on the path fails on a ClientHello split across two segments"
	case verdict.HelloIntolerant:
		return "a box on the path rejects the ClientHello itself (its size or content)"
	case verdict.CannotMeasure:
		return "CANNOT MEASURE: " + r.CannotMeasure
	}
	return "no clear verdict: see the probes"
}

func limitText(v int, atLeast bool) string {
	switch {
	case v == 0:
		return "not measured, or below 576 bytes"
	case atLeast:
		return fmt.Sprintf("at least %d bytes (nothing larger could be shown)", v)
	}
	return fmt.Sprintf("%d bytes", v)
}
