// Package verdict is the shared conclusion of fitshake's path diagnostics:
// the JSON object the diagnose command prints and the diagnostic page
// shows, and the fix lines for each audience. Both the probe (package
// probe) and the page (package diagpage) build a Summary and call Fixes, so
// that one path gets one wording whoever measured it.
package verdict

import (
	"fmt"
	"strings"

	"github.com/fitshake/fitshake/pmtu"
)

// Classes of a path. They are stable: scripts and tests key on them.
const (
	// Healthy: full-size packets get through both ways.
	Healthy = "healthy"
	// PMTUDWorks: the path MTU is below 1500, and ICMP "fragmentation
	// needed" / "packet too big" reaches the sender, which adapts.
	PMTUDWorks = "pmtud-works"
	// BlackHole, BlackHoleUpstream, BlackHoleDownstream: packets over the
	// limit vanish without ICMP, both ways or one way.
	BlackHole           = "blackhole"
	BlackHoleUpstream   = "blackhole-upstream"
	BlackHoleDownstream = "blackhole-downstream"
	// FragmentsDropped: packets sent with DF clear are fragmented on the
	// way and the fragments are dropped.
	FragmentsDropped = "fragments-dropped"
	// SplitIntolerant: a box fails on a ClientHello split across segments.
	SplitIntolerant = "split-intolerant"
	// HelloIntolerant: a box rejects the ClientHello for its size or
	// content.
	HelloIntolerant = "hello-intolerant"
	// Unknown: measured, but nothing above fits what was seen.
	Unknown = "unknown"
	// CannotMeasure: the measurement's evidence cannot apply to the path
	// (its TCP peer is not the server: a program on this host relays the
	// connection), so no limit is reported.
	CannotMeasure = "cannot-measure"
)

// Summary is what a diagnosis found, as JSON.
type Summary struct {
	// Healthy reports that a default handshake completed without a clamp.
	Healthy bool `json:"healthy"`
	// UpstreamMTU and DownstreamMTU are the largest IP packets that got
	// through client to server and server to client; 0 when not measured.
	UpstreamMTU   int `json:"upstream_mtu"`
	DownstreamMTU int `json:"downstream_mtu"`
	// Class is one of the classes above.
	Class string `json:"class"`
	// Fixes are the changes to ask for, each starting with its audience:
	// "network:", "server:" or "app:".
	Fixes []string `json:"fixes"`
}

// Path is what Fixes needs to know of a path.
type Path struct {
	Class         string
	UpstreamMTU   int  // 0: unknown
	DownstreamMTU int  // 0: unknown
	IPv6          bool // the family measured
	// Flight is the server's handshake flight in bytes (certificates
	// included); 0: unknown.
	Flight int
}

// Fixes returns the fix lines for p, network first. A healthy path has
// none.
func Fixes(p Path) []string {
	var out []string
	limit := limitOf(p)
	switch p.Class {
	case BlackHole, BlackHoleUpstream, BlackHoleDownstream:
		out = append(out, clampLines(limit, p.IPv6)...)
		out = append(out, icmpLine(p.IPv6), tunnelLine(limit))
		if p.Class != BlackHoleUpstream {
			out = append(out, flightLine(p.Flight, limit))
		}
		out = append(out, appClamp)
	case FragmentsDropped:
		out = append(out,
			"network: let IP fragments through the firewall in front of the server, or clamp the MSS:",
		)
		out = append(out, clampLines(limit, p.IPv6)...)
		out = append(out, "app: keep path MTU discovery on (DF set): the sender then learns the MTU from ICMP")
	case PMTUDWorks:
		out = append(out, fmt.Sprintf("network: nothing required (ICMP reaches the sender, which adapts to the %d-byte path MTU); an MSS clamp saves a round trip:", limit))
		out = append(out, clampLines(limit, p.IPv6)...)
	case SplitIntolerant:
		out = append(out,
			"network: update or exempt the TLS inspection of the firewall or IPS on the path so that it reassembles a ClientHello split across TCP segments (Suricata: ssl_state:client_hello; HAProxy: tcp-request inspect-delay before req.ssl_sni); do not clamp the MSS for it",
			"app: "+pmtu.ClassSplitIntolerant.ClientFix())
	case HelloIntolerant:
		out = append(out,
			"network: update or exempt the TLS inspection of the firewall or IPS on the path: it rejects this ClientHello (its size, or extensions such as post-quantum key shares or ML-DSA signature algorithms)",
			"app: "+pmtu.ClassContentIntolerant.ClientFix())
	}
	return out
}

var appClamp = "app: " + pmtu.ClassUpstream.ClientFix()

// limitOf is the path MTU the fixes aim at: the smaller of the measured
// limits, or 1280 when neither was measured (the IPv6 minimum, safe on
// nearly every path).
func limitOf(p Path) int {
	l := 0
	for _, v := range []int{p.UpstreamMTU, p.DownstreamMTU} {
		if v > 0 && (l == 0 || v < l) {
			l = v
		}
	}
	if l == 0 {
		l = 1280
	}
	return l
}

func clampLines(mtu int, ipv6 bool) []string {
	mss := pmtu.MSSForMTU(mtu, ipv6)
	ipt := "iptables"
	if ipv6 {
		ipt = "ip6tables"
	}
	return []string{
		fmt.Sprintf("network: clamp the TCP MSS to %d on the router or tunnel endpoint (nftables): nft add rule inet filter forward tcp flags syn tcp option maxseg size set %d", mss, mss),
		fmt.Sprintf("network: or (iptables): %s -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss %d", ipt, mss),
	}
}

func icmpLine(ipv6 bool) string {
	if ipv6 {
		return "network: let ICMPv6 \"packet too big\" (type 2) through to both ends: ip6tables -A FORWARD -p icmpv6 --icmpv6-type packet-too-big -j ACCEPT"
	}
	return "network: let ICMP \"fragmentation needed\" (type 3 code 4) through to both ends: iptables -A FORWARD -p icmp --icmp-type fragmentation-needed -j ACCEPT"
}

func tunnelLine(mtu int) string {
	return fmt.Sprintf("network: or set the MTU of the tunnel or VPN interface on the path to %d (ip link set dev <tunnel> mtu %d), so that the endpoints send ICMP for what does not fit", mtu, mtu)
}

func flightLine(flight, mtu int) string {
	if flight <= 0 {
		return "server: make the TLS handshake flight smaller (an ECDSA certificate, no unneeded intermediates): fewer full-size packets to lose on the way back"
	}
	return fmt.Sprintf("server: the TLS handshake flight is %d bytes (%d full-size packets over a %d-byte path): shorten the certificate chain (no unneeded intermediates) or use an ECDSA certificate",
		flight, (flight+pmtu.MSSForMTU(mtu, false)-1)/pmtu.MSSForMTU(mtu, false), mtu)
}

// String renders s for people: the class, the limits, then the fixes, one
// per line.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "class: %s (healthy: %t)\n", s.Class, s.Healthy)
	fmt.Fprintf(&b, "upstream MTU: %s, downstream MTU: %s\n", mtuText(s.UpstreamMTU), mtuText(s.DownstreamMTU))
	for _, f := range s.Fixes {
		b.WriteString("  - " + f + "\n")
	}
	return b.String()
}

func mtuText(v int) string {
	if v == 0 {
		return "not measured"
	}
	return fmt.Sprintf("%d bytes", v)
}
