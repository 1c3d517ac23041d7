package diagpage

import (
	"fmt"

	"github.com/fitshake/fitshake/internal/verdict"
)

// How a direction's 1500-byte probe fared.
const (
	howWhole = "whole" // it arrived in one packet: full size gets through
	howSplit = "split" // it arrived, in smaller packets: path-MTU discovery (or a smaller MSS) at work
	howLost  = "lost"  // it never arrived: Limit is the largest size that did
)

// direction is what the page found in one direction.
type direction struct {
	// Limit is the largest packet seen to get through whole (How lost or
	// whole), or the size the sender's kernel split to (split); 0: not
	// measured.
	Limit int
	How   string // howWhole, howSplit, howLost; "": not measured
}

// valid reports whether d is a measurement the page can have made.
func (d direction) valid() bool {
	switch d.How {
	case howWhole:
		return d.Limit == maxPacket
	case howSplit, howLost:
		return d.Limit >= 68 && d.Limit < maxPacket
	}
	return false
}

// summarize classes a path from what the page found each way.
//
// A direction that lost its full-size probe is a black hole there; one
// whose probe arrived split works through path-MTU discovery (the sender's
// kernel learned a smaller MTU, from ICMP or from the other end's MSS).
// Healthy is true when a default handshake completes without a clamp:
// healthy and pmtud-works paths.
func summarize(up, down direction, ipv6 bool) verdict.Summary {
	class := verdict.Unknown
	switch {
	case !up.valid() || !down.valid():
	case up.How == howLost && down.How == howLost:
		class = verdict.BlackHole
	case up.How == howLost:
		class = verdict.BlackHoleUpstream
	case down.How == howLost:
		class = verdict.BlackHoleDownstream
	case up.How == howSplit || down.How == howSplit:
		class = verdict.PMTUDWorks
	default:
		class = verdict.Healthy
	}
	if !up.valid() {
		up = direction{}
	}
	if !down.valid() {
		down = direction{}
	}
	s := verdict.Summary{
		Healthy:       class == verdict.Healthy || class == verdict.PMTUDWorks,
		UpstreamMTU:   up.Limit,
		DownstreamMTU: down.Limit,
		Class:         class,
		Fixes: verdict.Fixes(verdict.Path{
			Class: class, UpstreamMTU: up.Limit, DownstreamMTU: down.Limit, IPv6: ipv6,
		}),
	}
	if s.Fixes == nil {
		s.Fixes = []string{}
	}
	return s
}

// explain says s in words for the person at the browser: a headline and
// one line per direction, then what the server could not measure.
func explain(s verdict.Summary, up, down direction, ipv6 bool, caps capabilities) (string, []string) {
	var head string
	switch s.Class {
	case verdict.Healthy:
		head = "Your network carries full-size packets both ways: nothing on this path should stall a TLS handshake for its size."
	case verdict.PMTUDWorks:
		head = fmt.Sprintf("The path between you and this server carries packets of at most %d bytes, and it says so: both ends adapt by themselves, and TLS handshakes work.", minPositive(s.UpstreamMTU, s.DownstreamMTU))
	case verdict.BlackHole:
		head = fmt.Sprintf("Packets over %d bytes from you to this server, and over %d bytes back, vanish on the way without a word (a path-MTU black hole): connections open, then large TLS handshakes hang.", s.UpstreamMTU, s.DownstreamMTU)
	case verdict.BlackHoleUpstream:
		head = fmt.Sprintf("Packets over %d bytes from you to this server vanish on the way without a word (a path-MTU black hole): your browser's and apps' large TLS ClientHellos (1.5 KB or more with post-quantum key shares) never arrive, and their connections hang.", s.UpstreamMTU)
	case verdict.BlackHoleDownstream:
		head = fmt.Sprintf("Packets over %d bytes from this server to you vanish on the way without a word (a path-MTU black hole): servers' certificates never arrive, so TLS handshakes hang, and large downloads stall.", s.DownstreamMTU)
	default:
		head = "The page could not finish its measurements, so it cannot say what is wrong with this path."
	}
	fam := "IPv4"
	if ipv6 {
		fam = "IPv6"
	}
	lines := []string{
		fmt.Sprintf("Measured over %s between your browser and this server.", fam),
		"From you to the server: " + directionText(up),
		"From the server to you: " + directionText(down),
	}
	if !caps.tcpInfo {
		lines = append(lines, "This server cannot read TCP_INFO on its platform: sizes assume TCP timestamps (within 12 bytes), and a path-MTU discovery at work looks like a clean path.")
	}
	if len(s.Fixes) > 0 {
		lines = append(lines, "Show the lines below to your network team (and the server's operator): they say what to change, and where.")
	}
	return head, lines
}

func directionText(d direction) string {
	switch d.How {
	case howWhole:
		return "full-size packets (1500 bytes) get through."
	case howSplit:
		return fmt.Sprintf("packets of at most %d bytes get through; the sender learns so and sends smaller ones (fine).", d.Limit)
	case howLost:
		return fmt.Sprintf("packets of at most %d bytes get through; larger ones are silently lost.", d.Limit)
	}
	return "not measured."
}

func minPositive(a, b int) int {
	switch {
	case a <= 0:
		return b
	case b <= 0 || a < b:
		return a
	}
	return b
}
