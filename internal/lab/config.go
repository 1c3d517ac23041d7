package lab

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	"github.com/fitshake/fitshake/pmtu"
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
	SplitIntolerant  Scenario = "split-intolerant"
	SizeIntolerant   Scenario = "size-intolerant"
	Squid            Scenario = "squid"
)

// Scenarios lists the scenarios of the main matrix: those where every
// client and server can be asserted as Config.Lost says (fitshake completes,
// the others exactly where their flights fit). Reset is not one of them: the
// router resets only the sender of a refused packet, so the server keeps
// its side of a connection whose hello was refused (the client's kernel
// answers the server's SACK for it with no reset), and openssl s_server,
// which serves one connection at a time, then waits on it forever: no
// redial can reach it. TestLabReset covers Reset against nginx. Nor are
// the middleboxes, SplitIntolerant and SizeIntolerant: they refuse flows by
// their content, not by packet size (Config.Lost says nothing of them),
// and they too leave the server a connection that waits for the rest of a
// hello; TestLabMiddleboxes covers them against nginx.
func Scenarios() []Scenario {
	return []Scenario{Healthy, PMTUDOK, MTUICMPBlocked, FragmentsDropped, Blackhole}
}

// Middleboxes lists the scenarios of boxes that refuse a flow by what its
// first client segment carries: SplitIntolerant and SizeIntolerant.
func Middleboxes() []Scenario { return []Scenario{SplitIntolerant, SizeIntolerant} }

// ParseScenario returns the scenario named s: one of Scenarios, Reset,
// one of Middleboxes, or Squid.
func ParseScenario(s string) (Scenario, error) {
	for _, sc := range append(append(Scenarios(), Reset, Squid), Middleboxes()...) {
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

// Reject is how a middlebox scenario refuses a flow it has condemned.
type Reject string

// The ways to refuse. RejectDrop: the flow's later packets vanish, in both
// directions, as behind an inline IPS that drops the flow. RejectReset: the
// client gets a TCP reset from the router, sent in the server's name.
const (
	RejectDrop  Reject = "drop"
	RejectReset Reject = "reset"
)

// DefaultMTU is the N of a Config whose MTU is zero: a VPN or MPLS path.
const DefaultMTU = 1400

// DefaultHelloLimit is the HelloLimit of a SizeIntolerant Config whose
// HelloLimit is zero.
const DefaultHelloLimit = 1400

// Bounds of Config fields.
const (
	// MinMTU is the smallest MTU of Blackhole and Reset, whose N is only a
	// length match in nft: 576, IPv4's minimum reassembly size. For IPv6,
	// whose links carry at least 1280, an N under 1280 is artificial: no
	// real IPv6 link drops such packets, a broken box may.
	MinMTU = 576
	// MinLinkMTU is the smallest MTU of PMTUDOK, MTUICMPBlocked and
	// FragmentsDropped, which set real link or route MTUs: 1280, IPv6's
	// minimum.
	MinLinkMTU = 1280
	// MaxMTU is the largest MTU: the lab's links are Ethernet.
	MaxMTU = 1500
	// MaxHelloLimit is the largest HelloLimit: a TLS record's 5-byte
	// header and 2^14 bytes of plaintext.
	MaxHelloLimit = 5 + 1<<14
)

// Config selects a lab.
type Config struct {
	// Scenario is what the router does; empty means Healthy.
	Scenario Scenario
	// MTU is the N of the scenario: the largest packet that crosses the
	// path. Zero means DefaultMTU. Blackhole and Reset take MinMTU..MaxMTU
	// (576..1500); PMTUDOK, MTUICMPBlocked and FragmentsDropped, which set
	// real link or route MTUs, MinLinkMTU..MaxMTU (1280..1500: IPv6
	// needs links of at least 1280). Healthy and the middleboxes ignore
	// it: their links carry 1500.
	MTU int
	// Direction is what a Blackhole drops or a Reset rejects: Both (the
	// default, also when empty), Upstream or Downstream. Other scenarios
	// ignore it.
	Direction Direction
	// Reject is how SplitIntolerant and SizeIntolerant refuse a flow.
	// Empty means the habit of the box each models: RejectDrop for
	// SplitIntolerant (Suricata's drop), RejectReset for SizeIntolerant
	// (a threat signature's reset). Other scenarios ignore it.
	Reject Reject
	// HelloLimit is the largest TLS handshake record, in bytes with its
	// 5-byte header (as fingerprint's RecordSize counts), that a
	// SizeIntolerant box lets through in a flow's first client segment.
	// Zero means DefaultHelloLimit; it must be in 6..MaxHelloLimit.
	// Other scenarios ignore it.
	HelloLimit int
	// Squid configures the Squid scenario's proxy, resolver and far
	// side; other scenarios ignore it.
	Squid SquidConfig
}

// SquidConfig is what the Squid scenario's proxy does beyond peeking at
// every intercepted hello and splicing it through (see the package
// documentation). The zero value is a healthy Squid: no name refused,
// answers at once, nothing dropped beyond it.
type SquidConfig struct {
	// Block lists server names (SNI) that Squid refuses after peeking at
	// the whole ClientHello (acl ssl::server_name, ssl_bump terminate):
	// it closes the client's connection, with no alert, as an SNI
	// blocklist does. Names contain no white space.
	Block []string
	// ResolverDelay is how long the lab's DNS server in the router
	// namespace holds its answer to each of Squid's A and AAAA queries
	// for ServerName and the names under it. Squid looks up the server
	// name of every intercepted hello before it connects to the server,
	// and lets every connection waiting on the same name go when the
	// answer comes: with a delay, Squid holds each new connection for it
	// and releases them together. Squid caches an answer for at least a
	// minute, so only a name's first connections wait: use a fresh name
	// under ServerName (the lab's certificates cover *.ServerName) for
	// each wait wanted. Zero answers at once; it must not be negative.
	ResolverDelay time.Duration
	// FarMTU, when not zero, makes the router silently drop every packet
	// longer than FarMTU bytes on Squid's far side, between Squid and the
	// server, both ways (nft output and input chains on the router's
	// server-side interface), with no ICMP: a black hole beyond a box
	// that acknowledges the client's data itself. MinMTU..MaxMTU.
	FarMTU int
}

// String names the Squid configuration for Config.String: "", or
// "-block", "-resolver-900ms", "-far-1400" in that order.
func (s SquidConfig) String() string {
	var b strings.Builder
	if len(s.Block) > 0 {
		b.WriteString("-block")
	}
	if s.ResolverDelay > 0 {
		b.WriteString("-resolver-" + s.ResolverDelay.String())
	}
	if s.FarMTU > 0 {
		fmt.Fprintf(&b, "-far-%d", s.FarMTU)
	}
	return b.String()
}

func (s SquidConfig) validate() error {
	for _, n := range s.Block {
		if n == "" || strings.ContainsAny(n, " \t\r\n#\"") {
			return fmt.Errorf("lab: Squid.Block: bad server name %q", n)
		}
	}
	if s.ResolverDelay < 0 {
		return fmt.Errorf("lab: Squid.ResolverDelay %v is negative", s.ResolverDelay)
	}
	if s.FarMTU != 0 && (s.FarMTU < MinMTU || s.FarMTU > MaxMTU) {
		return fmt.Errorf("lab: Squid.FarMTU %d out of range %d..%d", s.FarMTU, MinMTU, MaxMTU)
	}
	return nil
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
	c.Reject, c.HelloLimit = c.normMiddlebox()
	if c.Scenario == Healthy || c.Scenario == Squid || c.middlebox() {
		c.MTU = MaxMTU
	}
	if c.Scenario != Squid {
		c.Squid = SquidConfig{}
	}
	return c
}

// normMiddlebox returns Reject and HelloLimit normalized: defaults where
// the scenario uses them, zero where it does not.
func (c Config) normMiddlebox() (Reject, int) {
	switch c.Scenario {
	case SplitIntolerant:
		return cmp.Or(c.Reject, RejectDrop), 0
	case SizeIntolerant:
		return cmp.Or(c.Reject, RejectReset), cmp.Or(c.HelloLimit, DefaultHelloLimit)
	}
	return "", 0
}

// directed reports whether the scenario honours Direction.
func (c Config) directed() bool { return c.Scenario == Blackhole || c.Scenario == Reset }

// middlebox reports whether the scenario is one of Middleboxes.
func (c Config) middlebox() bool {
	return c.Scenario == SplitIntolerant || c.Scenario == SizeIntolerant
}

// mtuRange returns the MTUs the scenario accepts.
func (c Config) mtuRange() (lo, hi int) {
	switch c.Scenario {
	case Blackhole, Reset:
		return MinMTU, MaxMTU
	case PMTUDOK, MTUICMPBlocked, FragmentsDropped:
		return MinLinkMTU, MaxMTU
	}
	return MaxMTU, MaxMTU // set by norm
}

// Validate reports whether c describes a lab that can be built.
func (c Config) Validate() error {
	n := c.norm()
	if _, err := ParseScenario(string(n.Scenario)); err != nil {
		return err
	}
	if lo, hi := n.mtuRange(); n.MTU < lo || n.MTU > hi {
		return fmt.Errorf("lab: MTU %d out of range %d..%d for %s", c.MTU, lo, hi, n.Scenario)
	}
	switch n.Direction {
	case "", Both, Upstream, Downstream:
	default:
		return fmt.Errorf("lab: unknown direction %q", c.Direction)
	}
	switch n.Reject {
	case "", RejectDrop, RejectReset:
	default:
		return fmt.Errorf("lab: unknown reject %q", c.Reject)
	}
	if n.Scenario == SizeIntolerant && (n.HelloLimit < 6 || n.HelloLimit > MaxHelloLimit) {
		return fmt.Errorf("lab: HelloLimit %d out of range 6..%d", c.HelloLimit, MaxHelloLimit)
	}
	return n.Squid.validate()
}

// String names the lab for test names and tables: "healthy",
// "pmtud-ok-1400", "blackhole-upstream-1400", "reset-both-1400",
// "split-intolerant-drop", "size-intolerant-reset-1400" (the HelloLimit),
// "squid", "squid-resolver-900ms-far-1400".
func (c Config) String() string {
	n := c.norm()
	var b strings.Builder
	b.WriteString(string(n.Scenario))
	for _, s := range []string{string(n.Direction), string(n.Reject)} {
		if s != "" {
			b.WriteString("-" + s)
		}
	}
	switch {
	case n.Scenario == SizeIntolerant:
		fmt.Fprintf(&b, "-%d", n.HelloLimit)
	case n.Scenario == Squid:
		b.WriteString(n.Squid.String())
	case n.Scenario != Healthy && !n.middlebox():
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
// Resets). The middleboxes lose no packet for its size: they condemn
// flows by content (see Refuses).
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
// FIN, at close, gets one). For the middleboxes, see Refuses and Reject.
func (c Config) Resets(d Direction, size int) bool {
	return c.norm().Scenario == Reset && d == Upstream && c.Lost(IPv4, d, size)
}

// Refuses reports whether a middlebox scenario condemns a flow whose first
// client data segment carries segment bytes of TCP payload and starts a
// TLS handshake record of record bytes (its 5-byte header included):
// SplitIntolerant when the record is longer than the segment, whatever its
// size; SizeIntolerant when the record is over HelloLimit, whatever the
// segmentation. The client then sees silence (RejectDrop) or a reset
// (RejectReset). Other scenarios refuse nothing by content (see Lost).
func (c Config) Refuses(record, segment int) bool {
	n := c.norm()
	switch n.Scenario {
	case SplitIntolerant:
		return record > segment
	case SizeIntolerant:
		return record > n.HelloLimit
	}
	return false
}

// MaxMSS is the largest TCP_MAXSEG whose packets fit the lab's path:
// N − 40 on IPv4, N − 60 on IPv6 (pmtu.MSSForMTU).
func (c Config) MaxMSS(f Family) int { return pmtu.MSSForMTU(c.N(), f == IPv6) }

// FirstPacket returns the size of the largest IP packet that carries a
// flight of payload bytes on a fresh, unclamped connection over 1500-byte
// links: TCP segments of at most 1448 (IPv4) or 1428 (IPv6) bytes plus 52
// or 72 bytes of headers (timestamps on).
func FirstPacket(f Family, payload int) int {
	return min(payload, MaxSegment(f)) + pmtu.HeaderBytes(f == IPv6, true)
}

// MaxSegment returns the TCP payload of a full-size segment on a fresh,
// unclamped connection over 1500-byte links, timestamps on: 1448 bytes on
// IPv4, 1428 on IPv6.
func MaxSegment(f Family) int {
	if f == IPv6 {
		return 1428
	}
	return 1448
}
