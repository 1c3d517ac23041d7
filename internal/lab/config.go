package lab

import (
	"fmt"
	"strings"
)

// Scenario names what the router does to the path.
type Scenario string

// The scenarios; see the package documentation.
const (
	Healthy          Scenario = "healthy"
	PMTUDOK          Scenario = "pmtud-ok"
	MTUICMPBlocked   Scenario = "mtu-icmp-blocked"
	FragmentsDropped Scenario = "fragments-dropped"
	Blackhole        Scenario = "blackhole"
	Reset            Scenario = "reset"
)

// Scenarios lists the scenarios of the main matrix: those where every
// client and server can be asserted as Config.Lost says (fitshake completes,
// the others exactly where their flights fit). Reset is not one of them: the
// router resets only the sender of a refused packet, so the server keeps
// its side of a connection whose hello was refused (the client's kernel
// answers the server's SACK for it with no reset), and openssl s_server,
// which serves one connection at a time, then waits on it forever: no
// redial can reach it. TestLabReset covers Reset against nginx.
func Scenarios() []Scenario {
	return []Scenario{Healthy, PMTUDOK, MTUICMPBlocked, FragmentsDropped, Blackhole}
}

// ParseScenario returns the scenario named s: one of Scenarios, or Reset.
func ParseScenario(s string) (Scenario, error) {
	for _, sc := range append(Scenarios(), Reset) {
		if string(sc) == s {
			return sc, nil
		}
	}
	return "", fmt.Errorf("lab: unknown scenario %q", s)
}

// Direction is a direction of travel on the path.
type Direction string

// Directions. Upstream is client to server (the ClientHello), downstream is
// server to client (the server's flight).
const (
	Both       Direction = "both"
	Upstream   Direction = "upstream"
	Downstream Direction = "downstream"
)

// Family is an address family.
type Family string

// The families; every scenario runs on both.
const (
	IPv4 Family = "ipv4"
	IPv6 Family = "ipv6"
)

// Families lists both families.
func Families() []Family { return []Family{IPv4, IPv6} }

// DefaultMTU is the N of a Config whose MTU is zero: a VPN or MPLS path.
const DefaultMTU = 1400

// Config selects a lab.
type Config struct {
	// Scenario is what the router does; empty means Healthy.
	Scenario Scenario
	// MTU is the N of the scenario: the largest packet that crosses the
	// path. Zero means DefaultMTU. It must be in 1280..1500 (IPv6 needs
	// links of at least 1280). Healthy ignores it.
	MTU int
	// Direction is what a Blackhole drops or a Reset rejects: Both (the
	// default, also when empty), Upstream or Downstream. Other scenarios
	// ignore it.
	Direction Direction
}

func (c Config) norm() Config {
	if c.Scenario == "" {
		c.Scenario = Healthy
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if !c.directed() {
		c.Direction = ""
	} else if c.Direction == "" {
		c.Direction = Both
	}
	if c.Scenario == Healthy {
		c.MTU = 1500
	}
	return c
}

// directed reports whether the scenario honours Direction.
func (c Config) directed() bool { return c.Scenario == Blackhole || c.Scenario == Reset }

// Validate reports whether c describes a lab that can be built.
func (c Config) Validate() error {
	n := c.norm()
	if _, err := ParseScenario(string(n.Scenario)); err != nil {
		return err
	}
	if n.MTU < 1280 || n.MTU > 1500 {
		return fmt.Errorf("lab: MTU %d out of range 1280..1500", c.MTU)
	}
	switch n.Direction {
	case "", Both, Upstream, Downstream:
	default:
		return fmt.Errorf("lab: unknown direction %q", c.Direction)
	}
	return nil
}

// String names the lab for test names and tables: "healthy",
// "pmtud-ok-1400", "blackhole-upstream-1400", "reset-both-1400".
func (c Config) String() string {
	n := c.norm()
	var b strings.Builder
	b.WriteString(string(n.Scenario))
	if n.Direction != "" {
		b.WriteString("-" + string(n.Direction))
	}
	if n.Scenario != Healthy {
		fmt.Fprintf(&b, "-%d", n.MTU)
	}
	return b.String()
}

// N returns the path MTU of the lab (1500 when healthy).
func (c Config) N() int { return c.norm().MTU }

// ClearDF reports whether clients clear DF in this scenario
// (fragments-dropped): Go clients should use ClearDF as their
// net.Dialer.Control.
func (c Config) ClearDF() bool { return c.norm().Scenario == FragmentsDropped }

// Lost reports whether an IP packet of size bytes (headers included) sent
// in direction d (Upstream or Downstream) on family f is lost for good: no
// retransmission of it ever arrives and the kernel gets no ICMP it could
// act on. Packets the kernel recovers by path-MTU discovery are not lost.
// A Reset loses its packets too, and their connection with them (see
// Resets).
func (c Config) Lost(f Family, d Direction, size int) bool {
	n := c.norm()
	if size <= n.MTU {
		return false
	}
	switch n.Scenario {
	case MTUICMPBlocked:
		return true
	case Blackhole, Reset:
		return n.Direction == Both || n.Direction == d
	case FragmentsDropped:
		// The router fragments the client's DF-clear IPv4 packets and the
		// server drops the fragments; the server's packets keep DF and
		// get ICMP; IPv6 gets packet-too-big.
		return f == IPv4 && d == Upstream
	}
	return false
}

// Resets reports whether a client sees a TCP reset, rather than silence,
// when it or the server sends a packet of size bytes in direction d: in the
// Reset scenario the router answers the packet's sender with a reset
// instead of forwarding it, so only Upstream packets reset the client.
// Downstream, the server's connection is reset and the client is left as by
// a black hole (Lost): the reply's tail arrives out of order, its head
// never does, and Linux answers the client's SACK, a pure ACK that finds
// only the listening socket, with no reset (measured on 6.18; the client's
// FIN, at close, gets one).
func (c Config) Resets(d Direction, size int) bool {
	return c.norm().Scenario == Reset && d == Upstream && c.Lost(IPv4, d, size)
}

// MaxMSS is the largest TCP_MAXSEG whose packets fit the lab's path:
// N − 40 on IPv4, N − 60 on IPv6.
func (c Config) MaxMSS(f Family) int {
	if f == IPv6 {
		return c.N() - 60
	}
	return c.N() - 40
}

// FirstPacket returns the size of the largest IP packet that carries a
// flight of payload bytes on a fresh, unclamped connection over 1500-byte
// links: TCP segments of at most 1448 (IPv4) or 1428 (IPv6) bytes plus 52
// or 72 bytes of headers (timestamps on).
func FirstPacket(f Family, payload int) int {
	mss, hdr := 1448, 52
	if f == IPv6 {
		mss, hdr = 1428, 72
	}
	return min(payload, mss) + hdr
}
