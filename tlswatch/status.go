package tlswatch

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/fitshake/fitshake/internal/verdict"
	"github.com/fitshake/fitshake/pmtu"
)

// Status is what the watcher knows, as the status page shows it and as
// JSON.
type Status struct {
	// Prefixes are the prefixes with handshakes in the window, most
	// failures first.
	Prefixes []PrefixStatus `json:"prefixes"`
	// Other counts together the handshakes of prefixes past
	// Watcher.MaxPrefixes (and of addresses that are not IP); its Prefix
	// is "other".
	Other PrefixStatus `json:"other"`
	// WindowSeconds is the window the counts cover.
	WindowSeconds float64 `json:"window_seconds"`
}

// PrefixStatus is one prefix's handshakes over the window. The fields up
// to Fixes are a contract: scripts and other code read them.
type PrefixStatus struct {
	Prefix     string `json:"prefix"` // CIDR
	Handshakes int    `json:"handshakes"`
	Completed  int    `json:"completed"`
	// Failed counts the handshakes that failed; idle connections are
	// neither completed nor failed.
	Failed int   `json:"failed"`
	Class  Class `json:"class"`
	// Clamped reports that the self-fix applies to the prefix now, and
	// MSS is its clamp (0: none).
	Clamped bool     `json:"clamped"`
	MSS     int      `json:"mss"`
	Fixes   []string `json:"fixes"`

	// Idle counts the connections that never tried (or went quiet with
	// nothing lost); Recovered the completed handshakes of clients that
	// had failed and came back with a smaller MSS; Fixed the completed
	// handshakes the self-fix's clamp carried (counted in Completed, but
	// not in the class: they tell of the clamp, not of the path).
	Idle      int `json:"idle"`
	Recovered int `json:"recovered"`
	Fixed     int `json:"fixed"`
	// Failing reports that the prefix fails (see Trace.Prefix).
	Failing bool `json:"failing"`
	// Classes counts the handshakes by class.
	Classes map[Class]int `json:"classes"`
	// Evidence is the sentence of the latest failure.
	Evidence string `json:"evidence,omitempty"`
	// Sizes seen from the prefix (0: none seen): the MSS of the
	// clients' SYNs, smallest and largest; the largest segment received;
	// the largest of ours acknowledged; our largest handshake flight; the
	// SYN MSS of the latest recovered client.
	SYNMSSMin    int `json:"syn_mss_min"`
	SYNMSSMax    int `json:"syn_mss_max"`
	MaxReceived  int `json:"max_received_segment"`
	MaxAcked     int `json:"max_acked_segment"`
	Flight       int `json:"flight"`
	RecoveredMSS int `json:"recovered_mss"`
}

// Status returns what the watcher knows now. It also notices prefixes
// whose failures left the window, and logs and traces their recovery.
func (w *Watcher) Status() Status {
	w.init()
	now := w.now()
	var changes []PrefixInfo
	w.mu.Lock()
	ep := w.stats.epoch(now)
	st := Status{Prefixes: []PrefixStatus{}, WindowSeconds: w.window().Seconds()}
	for pfx, s := range w.stats.m {
		if ch := w.stats.update(pfx, s, ep, w.failingAfter()); ch != nil {
			changes = append(changes, *ch)
		}
		c := w.stats.sum(s, ep)
		if c.handshakes() == 0 {
			continue
		}
		ps := w.prefixStatus(pfx.String(), s, c)
		if m := w.clamps.mss(pfx); m > 0 {
			ps.Clamped, ps.MSS = true, m
		}
		ps.Fixes = w.fixes(pfx, ps)
		st.Prefixes = append(st.Prefixes, ps)
	}
	st.Other = w.prefixStatus("other", &w.stats.other, w.stats.sum(&w.stats.other, ep))
	st.Other.Fixes = []string{}
	w.mu.Unlock()
	for _, ch := range changes {
		w.prefixChanged(ch)
	}
	slices.SortFunc(st.Prefixes, func(a, b PrefixStatus) int {
		if a.Failed != b.Failed {
			return b.Failed - a.Failed
		}
		if a.Handshakes != b.Handshakes {
			return b.Handshakes - a.Handshakes
		}
		return strings.Compare(a.Prefix, b.Prefix)
	})
	return st
}

func (w *Watcher) prefixStatus(name string, s *prefixStats, c counts) PrefixStatus {
	ps := PrefixStatus{
		Prefix: name, Handshakes: c.handshakes(), Completed: c.completed(), Failed: c.failed(),
		Class: s.classOf(c), Idle: c.idle(), Recovered: c.recovered, Fixed: c.fixed, Failing: s.failing,
		Classes: map[Class]int{}, Evidence: s.evidence,
		SYNMSSMin: s.synMin, SYNMSSMax: s.synMax, MaxReceived: s.maxRecv, MaxAcked: s.maxAcked,
		Flight: s.flight, RecoveredMSS: s.recoveredMSS,
	}
	for i, n := range c.byClass {
		if n > 0 {
			ps.Classes[classes[i]] = n
		}
	}
	if ps.Class == Healthy || ps.Class == Idle {
		ps.Evidence = ""
	}
	return ps
}

// fixes returns the fix lines of a prefix, for each party: the network
// (the clamp and ICMP lines of fitshake's diagnose), the server, the app.
func (w *Watcher) fixes(pfx netip.Prefix, ps PrefixStatus) []string {
	ipv6 := pfx.Addr().Is6()
	switch ps.Class {
	case Healthy, Idle:
		return []string{}
	case TLSError:
		return []string{"server: not the path: clients or the server send TLS alerts — check the certificate chain (expired, wrong name, an intermediate missing) and the TLS versions and ciphers offered"}
	case Reset:
		return []string{
			"network: " + pmtu.Diagnosis{Class: pmtu.ClassReset}.Fix(),
			"app: " + pmtu.ClassReset.ClientFix(),
		}
	case HelloPartial:
		// The hello's head came and its tail never did, nothing out of
		// order: a box that cut the flow on a split ClientHello, as the
		// client's diagnosis words it.
		return verdict.Fixes(verdict.Path{Class: verdict.SplitIntolerant, IPv6: ipv6})
	}
	// A black hole. The limit that worked is the larger of the SYN MSS of
	// a client that recovered and the self-fix's clamp that carried
	// handshakes; unknown otherwise (verdict then aims at 1280).
	mtu := 0
	if ps.RecoveredMSS > 0 {
		mtu = ps.RecoveredMSS + pmtu.HeaderBytes(ipv6, false)
	}
	if ps.Clamped && ps.Fixed > 0 {
		mtu = max(mtu, ps.MSS+pmtu.HeaderBytes(ipv6, false))
	}
	p := verdict.Path{Class: string(ps.Class), IPv6: ipv6, Flight: ps.Flight}
	if ps.Class != BlackHoleDownstream {
		p.UpstreamMTU = mtu
	}
	if ps.Class != BlackHoleUpstream {
		p.DownstreamMTU = mtu
	}
	lines := verdict.Fixes(p)
	mss := pmtu.MSSForMTU(cmpOr(mtu, 1280), ipv6)
	server := []string{fmt.Sprintf("server: or announce a smaller MSS to that network from the server (root): ip route add %s via <gateway> advmss %d", pfx, mss)}
	switch {
	case ps.Clamped:
		server = append(server, fmt.Sprintf("server: the watcher's self-fix clamps new connections from %s to MSS %d now", pfx, ps.MSS))
	case w.selfFixing():
		server = append(server, fmt.Sprintf("server: the watcher's self-fix clamps %s after %d connections lost this way", pfx, w.Policy.after()))
	default:
		server = append(server, fmt.Sprintf("server: or let the listener clamp it by itself: listen with tlswatch.Watcher.Listen (a twin listener with TCP_MAXSEG %d for that prefix)", mss))
	}
	i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "app:") })
	if i < 0 {
		i = len(lines)
	}
	return slices.Concat(lines[:i], server, lines[i:])
}
