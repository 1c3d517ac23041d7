package pmtu

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// What is learned about a path belongs to the local network it was learned
// on: a laptop whose office VPN black-holes large packets works at a café,
// and a clamp learned at the office must not follow it there (nor the
// café's silence come back to the office). KeyFor scopes a Cache's entries
// by LocalNetwork, which names the route a dial takes.

// routeCacheTTL is how long LocalNetwork trusts a route it looked up: a
// change of network is noticed within this long, and a process dialing
// many times a second asks the kernel once per destination per period.
const routeCacheTTL = 2 * time.Second

// routeCacheMax bounds the routes remembered; the memory is dropped whole
// when it is full.
const routeCacheMax = 256

// Addresses whose route is the default route of their family: documentation
// prefixes (RFC 5737, RFC 3849), which no network routes specifically.
var (
	defaultDst4 = netip.MustParseAddr("203.0.113.1")
	defaultDst6 = netip.MustParseAddr("2001:db8::1")
)

// route is what the kernel says of the way to a destination.
type route struct {
	dev     string     // the outgoing interface's name
	gateway netip.Addr // the next hop; invalid when the destination is on-link
	src     netip.Addr // the source address a socket would get
	local   bool       // the destination is this host: no network at all
}

// name is the route's name as a Key's Local: the interface, gateway and
// source address. An IPv6 source is shortened to its /64, the network's
// prefix: the host part changes daily with privacy addresses (RFC 8981)
// while the network does not.
func (r route) name() string {
	if r.local {
		return ""
	}
	var b strings.Builder
	b.WriteString("dev ")
	b.WriteString(r.dev)
	if r.gateway.IsValid() {
		b.WriteString(" via ")
		b.WriteString(r.gateway.WithZone("").String())
	}
	if r.src.IsValid() {
		b.WriteString(" src ")
		if r.src.Is6() && !r.src.Is4In6() {
			p, _ := r.src.WithZone("").Prefix(64)
			b.WriteString(p.String())
		} else {
			b.WriteString(r.src.String())
		}
	}
	return b.String()
}

// routes remembers recent lookups, by destination. lookup is the
// platform's (network_linux.go, network_other.go) unless a test replaced
// it; nil means none.
var routes struct {
	mu     sync.Mutex
	lookup func(dst netip.Addr) (route, error)
	clock  func() time.Time // nil: time.Now
	m      map[netip.Addr]routeMemo
}

type routeMemo struct {
	name string
	ok   bool // there is a route
	at   time.Time
}

func init() { routes.lookup = lookupRoute }

// LocalNetwork names the local network that a dial to address (host:port,
// or a bare host) over network ("tcp", "tcp4", "tcp6", …) leaves from:
// the route to it, as "dev IFACE via GATEWAY src SOURCE" (IPv6 sources as
// their /64). A different interface, gateway or source address is a
// different network. It returns "" (unknown: one network for all) where
// the route cannot be read, which is everywhere but Linux, where it asks
// the kernel with an unprivileged rtnetlink RTM_GETROUTE, as "ip route get"
// does; and for destinations on this host itself (loopback), whose path
// no network changes.
//
// A host name is not resolved (a dial resolves it anyway, and a second
// lookup would cost a round trip on every dial): it is scoped by the
// default route of the family network allows (IPv4 first for "tcp"),
// which is the route of every public address unless a VPN routes only some
// prefixes. A change of network changes the default route too, so a name
// never carries what was learned to another network; a name whose
// addresses take a more specific route than the default shares its scope
// with every other name, a coarser key but not a wrong one.
//
// Routes are remembered for two seconds, so a change of network is noticed
// within two seconds. It is safe for concurrent use.
func LocalNetwork(network, address string) string {
	host := address
	if h, _, err := net.SplitHostPort(address); err == nil {
		host = h
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return routeName(ip.Unmap())
	}
	switch {
	case strings.HasSuffix(network, "6"):
		return routeName(defaultDst6)
	case strings.HasSuffix(network, "4"):
		return routeName(defaultDst4)
	}
	if name, ok := routeNameOK(defaultDst4); ok {
		return name
	}
	return routeName(defaultDst6)
}

// KeyFor returns the Key that dialers use for a dial to address over
// network: Local is LocalNetwork(network, address), Remote is network and
// address joined by "|", such as "tcp|example.com:443".
func KeyFor(network, address string) Key {
	return Key{Local: LocalNetwork(network, address), Remote: network + "|" + address}
}

func routeName(dst netip.Addr) string {
	name, _ := routeNameOK(dst)
	return name
}

// routeNameOK returns the name of the route to dst, and whether there is
// one.
func routeNameOK(dst netip.Addr) (string, bool) {
	routes.mu.Lock()
	now := time.Now()
	if routes.clock != nil {
		now = routes.clock()
	}
	if m, ok := routes.m[dst]; ok && now.Sub(m.at) < routeCacheTTL && now.Sub(m.at) >= 0 {
		routes.mu.Unlock()
		return m.name, m.ok
	}
	lookup := routes.lookup
	routes.mu.Unlock()
	if lookup == nil {
		return "", false
	}
	r, err := lookup(dst)
	name := ""
	if err == nil {
		name = r.name()
	}
	routes.mu.Lock()
	defer routes.mu.Unlock()
	if len(routes.m) >= routeCacheMax || routes.m == nil {
		routes.m = make(map[netip.Addr]routeMemo)
	}
	routes.m[dst] = routeMemo{name: name, ok: err == nil, at: now}
	return name, err == nil
}
