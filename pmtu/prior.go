package pmtu

import (
	"cmp"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// A network's prior: what a new destination on a local network starts with
// when the Cache knows nothing of it but the network has shown that it
// needs a clamp.
//
// A clamp learned for one destination proves little about the local
// network: the black hole may be near that server (its tunnel, its load
// balancer), and TCP_INFO cannot say where on the path a packet was lost.
// What points at the local side is the same need on unrelated paths: so the
// prior needs distinct sites (Cache.NetworkSites, 2 by default), and only
// entries a dial learned from the destination's own evidence count
// (Entry.FromNetwork is false), so that a prior never confirms itself.
//
// A prior is no entry of its own: it is read from the destinations'
// entries, so it is bounded, persisted and expired with them (TTL), and it
// belongs to one Key.Local, so a change of network forgets it. Because
// dials that start from it learn nothing that counts, it is not renewed by
// its own use: it ends one TTL after the evidence that made it, and a
// network that was healed (or was never at fault) is then dialed
// unclamped again.

// DefaultNetworkSites is the NetworkSites of a Cache whose field is zero:
// two sites that share nothing but the local network needing a clamp is
// the least evidence that the fault is on the local side.
const DefaultNetworkSites = 2

func (c *Cache) networkSites() int {
	if c.NetworkSites == 0 {
		return DefaultNetworkSites
	}
	return c.NetworkSites
}

// LoadNetwork returns the prior of the local network local (a Key.Local):
// the clamp that at least NetworkSites distinct sites, dialed from local,
// were each shown to need. Its MTU is the largest that their evidence
// supports: every larger packet size failed at NetworkSites of them. A
// site is the destination's host: an IPv4 address's /24, an IPv6
// address's /48, a name's last two labels (so "a.example.com" and
// "b.example.com" are one site: two names of one operator do not count
// twice). An entry counts only if it has an MTU, has not expired and was
// not itself learned from a prior (Entry.FromNetwork).
//
// The Entry returned has FromNetwork set, no Rung (a prior is a clamp,
// never a smaller hello) and the Learned time of the newest evidence it
// rests on. It returns false for local "" (an unknown network is not one
// network) and when NetworkSites is negative.
func (c *Cache) LoadNetwork(local string) (Entry, bool) {
	need := c.networkSites()
	if local == "" || need <= 0 {
		return Entry{}, false
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.nets[local]) < need {
		return Entry{}, false // and no memo: memos exist only beside evidence
	}
	if m, ok := c.priors[local]; ok && m.need == need && !now.Before(m.at) && (m.until.IsZero() || now.Before(m.until)) {
		return m.entry, m.ok
	}
	m := c.prior(local, need, now)
	if len(c.nets[local]) > 0 { // unless every piece of evidence expired
		if c.priors == nil {
			c.priors = make(map[string]priorMemo)
		}
		c.priors[local] = m
	}
	return m.entry, m.ok
}

// priorMemo is a network's prior as LoadNetwork computed it at time at,
// valid until its first evidence expires (zero: never) or the evidence
// changes (indexNetwork forgets it; other entries leave it be): a process
// dialing many new destinations reads it without walking the entries each
// time.
type priorMemo struct {
	entry     Entry
	ok        bool
	need      int
	at, until time.Time
}

// prior computes local's prior from its evidence. Called with c.mu held.
func (c *Cache) prior(local string, need int, now time.Time) priorMemo {
	m := priorMemo{need: need, at: now}
	// Each site's least reduced need: what it showed for sure.
	sites := make(map[string]Entry, len(c.nets[local]))
	for k := range c.nets[local] {
		el := c.idx[k]
		it := el.Value.(*cacheItem)
		if c.expired(it.entry, now) {
			c.remove(el) // deleting while ranging is allowed
			continue
		}
		if ttl := c.ttl(); ttl > 0 {
			if end := it.entry.Learned.Add(ttl); m.until.IsZero() || end.Before(m.until) {
				m.until = end
			}
		}
		if old, ok := sites[it.site]; !ok || it.entry.MTU > old.MTU {
			sites[it.site] = it.entry
		}
	}
	if len(sites) < need {
		return m
	}
	needs := make([]Entry, 0, len(sites))
	for _, e := range sites {
		needs = append(needs, e)
	}
	slices.SortFunc(needs, func(a, b Entry) int { return cmp.Compare(a.MTU, b.MTU) })
	m.entry, m.ok = Entry{MTU: needs[need-1].MTU, FromNetwork: true}, true
	for _, e := range needs[:need] {
		if e.Learned.After(m.entry.Learned) {
			m.entry.Learned = e.Learned
		}
	}
	return m
}

// evidence reports whether e, stored for k, is evidence about k's local
// network.
func evidence(k Key, e Entry) bool {
	return k.Local != "" && e.MTU > 0 && !e.FromNetwork
}

// indexNetwork keeps c.nets in step with the entry e now stored for k
// (the zero Entry: none), and reports whether e is evidence. Called with
// c.mu held.
func (c *Cache) indexNetwork(k Key, e Entry) bool {
	m := c.nets[k.Local]
	if evidence(k, e) {
		if m == nil {
			if c.nets == nil {
				c.nets = make(map[string]map[Key]struct{})
			}
			m = make(map[Key]struct{})
			c.nets[k.Local] = m
		}
		m[k] = struct{}{}
		delete(c.priors, k.Local)
		return true
	}
	if _, ok := m[k]; ok {
		delete(m, k)
		if len(m) == 0 {
			delete(c.nets, k.Local)
		}
		delete(c.priors, k.Local)
	}
	return false
}

// site names the site of a Key's Remote ("tcp|host:port", or any
// address): see LoadNetwork.
func site(remote string) string {
	_, addr, ok := strings.Cut(remote, "|")
	if !ok {
		addr = remote
	}
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap().WithZone("")
		bits := 48
		if ip.Is4() {
			bits = 24
		}
		p, _ := ip.Prefix(bits)
		return p.String()
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if i := strings.LastIndexByte(host, '.'); i > 0 {
		if j := strings.LastIndexByte(host[:i], '.'); j >= 0 {
			return host[j+1:]
		}
	}
	return host
}
