package pmtu

import (
	"net/netip"
	"time"
)

// SetCacheClock makes c read the time from now instead of time.Now.
func SetCacheClock(c *Cache, now func() time.Time) { c.clock = now }

// FakeRoute is what a fake route source says of the way to a destination.
type FakeRoute struct {
	Dev     string
	Gateway netip.Addr
	Src     netip.Addr
	Local   bool // to this host
}

// SetRouteSource makes LocalNetwork ask lookup (nil: no route) and read
// the time from now (nil: time.Now), forgetting the routes it remembers,
// until the returned function restores the platform's.
func SetRouteSource(lookup func(netip.Addr) (FakeRoute, error), now func() time.Time) (restore func()) {
	routes.mu.Lock()
	defer routes.mu.Unlock()
	old, oldClock := routes.lookup, routes.clock
	routes.lookup, routes.clock, routes.m = nil, now, nil
	if lookup != nil {
		routes.lookup = func(dst netip.Addr) (route, error) {
			r, err := lookup(dst)
			return route{dev: r.Dev, gateway: r.Gateway, src: r.Src, local: r.Local}, err
		}
	}
	return func() {
		routes.mu.Lock()
		defer routes.mu.Unlock()
		routes.lookup, routes.clock, routes.m = old, oldClock, nil
	}
}

// DefaultRouteDst is the destination whose route LocalNetwork takes for a
// host name, by family.
var DefaultRouteDst4, DefaultRouteDst6 = defaultDst4, defaultDst6

// FlushArmed reports whether c has a flush armed.
func FlushArmed(c *Cache) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.file != nil && c.file.timer != nil
}
