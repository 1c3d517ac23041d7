package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// OtherClient is the namespace of the lab's second client network, PREFIXo,
// which AddOtherClient builds: another client prefix on a healthy path to
// the same server.
//
//	 PREFIXo (other client)        PREFIXr (router)
//	+--------------------+      +--------------------+
//	|  o0                |------|  r2                |
//	|  198.18.2.2/24     | veth |  198.18.2.1        |
//	|  fd00:198:19::2/64 |      |  fd00:198:19::1    |
//	+--------------------+      +--------------------+
//
// Its packets cross the router as the client's do, but no rule of the
// scenario touches them: a server sees two client networks, one behind the
// scenario, one healthy.
const OtherClient Side = "o"

// Addresses of the second client network (fd00:198:19::/48 is the second
// /48 of the lab's fd00:198:18::/47).
var (
	otherIPv4   = netip.MustParseAddr("198.18.2.2")
	otherR4     = netip.MustParseAddr("198.18.2.1")
	otherIPv6   = netip.MustParseAddr("fd00:198:19::2")
	otherR6     = netip.MustParseAddr("fd00:198:19::1")
	otherMAC    = "02:f1:00:00:02:02" // o0
	otherRouter = "02:f1:00:00:02:01" // r2
)

// createdSides are the namespaces a lab may create, in teardown order: its
// three, and the second client network's.
var createdSides = []Side{Client, Router, Server, OtherClient}

// AddOtherClient builds the lab's second client network (see OtherClient):
// the namespace PREFIXo, a veth o0–r2 to the router, static neighbours,
// offloads off, and rules at the head of the scenario's nft forward chain
// that accept whatever enters or leaves the router through r2. Only the
// scenarios whose rules are the router's forward chain have one (Healthy,
// Blackhole, Reset); for others it returns an error. Close removes the
// namespace with the lab's own.
func (l *Lab) AddOtherClient() error {
	switch l.cfg.Scenario {
	case Healthy, Blackhole, Reset:
	default:
		return fmt.Errorf("lab: no second client network in the %s scenario", l.cfg.Scenario)
	}
	ns := l.Namespace(OtherClient)
	if err := ip("netns", "add", ns); err != nil {
		return err
	}
	l.mu.Lock()
	l.created[OtherClient] = true
	l.mu.Unlock()
	steps := [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"link", "add", "o0", "netns", ns, "address", otherMAC, "type", "veth",
			"peer", "name", "r2", "netns", l.Namespace(Router), "address", otherRouter},
	}
	for _, st := range steps {
		if err := ip(st...); err != nil {
			return err
		}
	}
	if err := l.sysctls(OtherClient, map[string]string{
		"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0",
		"net.ipv4.tcp_no_metrics_save": "1", "net.ipv4.tcp_mtu_probing": "0",
	}); err != nil {
		return err
	}
	links := [][2]string{{ns, "o0"}, {l.Namespace(Router), "r2"}}
	for _, lk := range links {
		if err := l.runNS(lk[0], "ethtool", "-K", lk[1], "tso", "off", "gso", "off", "gro", "off"); err != nil {
			return err
		}
	}
	rns := l.Namespace(Router)
	steps = [][]string{
		{"-n", ns, "addr", "add", otherIPv4.String() + "/24", "dev", "o0"},
		{"-n", ns, "addr", "add", otherIPv6.String() + "/64", "dev", "o0", "nodad"},
		{"-n", rns, "addr", "add", otherR4.String() + "/24", "dev", "r2"},
		{"-n", rns, "addr", "add", otherR6.String() + "/64", "dev", "r2", "nodad"},
		{"-n", ns, "link", "set", "o0", "up"},
		{"-n", rns, "link", "set", "r2", "up"},
		{"-n", ns, "neigh", "replace", otherR4.String(), "lladdr", otherRouter, "dev", "o0", "nud", "permanent"},
		{"-n", ns, "neigh", "replace", otherR6.String(), "lladdr", otherRouter, "dev", "o0", "nud", "permanent"},
		{"-n", rns, "neigh", "replace", otherIPv4.String(), "lladdr", otherMAC, "dev", "r2", "nud", "permanent"},
		{"-n", rns, "neigh", "replace", otherIPv6.String(), "lladdr", otherMAC, "dev", "r2", "nud", "permanent"},
		{"-n", ns, "-4", "route", "add", "default", "via", otherR4.String(), "dev", "o0"},
		{"-n", ns, "-6", "route", "add", "default", "via", otherR6.String(), "dev", "o0"},
	}
	for _, st := range steps {
		if err := ip(st...); err != nil {
			return err
		}
	}
	if l.nftRules() == nil {
		return nil // nothing to keep it from
	}
	// insert puts a rule at the head of the chain: the second one ends
	// first.
	for _, rule := range []string{`oifname "r2" accept`, `iifname "r2" accept`} {
		args := append([]string{"insert", "rule", "inet", "fitlab", "forward"}, strings.Fields(rule)...)
		if err := l.run(Router, toolPath("nft"), args...); err != nil {
			return err
		}
	}
	return nil
}

// otherIP is the second client network's address in family f.
func otherIP(f Family) netip.Addr {
	if f == IPv6 {
		return otherIPv6
	}
	return otherIPv4
}

// DialFrom is Dial from the namespace of side s (Client or OtherClient).
func (l *Lab) DialFrom(ctx context.Context, s Side, client string, args DialArgs) (DialResult, error) {
	var res DialResult
	raw, err := l.RunIn(ctx, s, client, args)
	if err != nil {
		return res, err
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return res, fmt.Errorf("lab: decoding %s result: %w", client, err)
	}
	return res, nil
}

// BrowseFrom is Browse from the namespace of side s (Client or
// OtherClient).
func (l *Lab) BrowseFrom(ctx context.Context, s Side, args BrowseArgs) (BrowseResult, error) {
	var res BrowseResult
	raw, err := l.RunIn(ctx, s, browserClient, args)
	if err != nil {
		return res, err
	}
	err = json.Unmarshal(raw, &res)
	return res, err
}
