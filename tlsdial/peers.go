package tlsdial

import (
	"sync"

	"github.com/fitshake/fitshake/pmtu"
)

// Dials to one destination learn from each other while they run, without
// ever waiting for each other: every dial starts its first attempt at once
// (from the cache, if it remembers the destination), and what one finds —
// a step that stalled, a step that worked — reaches the others still
// waiting for a reply (machine.peer). A dial joins at its first event
// other than its first attempt's reply (engine.enlist: a healthy dial
// never joins, and tells what worked with tellGroup). A group exists only
// while a dial that joined runs: the last to leave deletes it. Groups are
// keyed by cache as well as destination, so that dialers sharing a cache
// share news, and dialers with separate caches stay independent; not by
// local network (the cache key's Local): dials running at once leave from
// one.

type groupKey struct {
	cache         *pmtu.Cache
	network, addr string
}

// groupKey returns the key of d's group.
func (d destination) groupKey() groupKey { return groupKey{d.cache, d.network, d.addr} }

// group is the set of running dials to one destination, the news its
// members told (each piece told once, and to every dial that joins), and
// the destination's budget of hedged attempts.
type group struct {
	k      groupKey
	subs   map[*engine]struct{} // guarded by groups.mu
	known  map[news]bool        // guarded by groups.mu
	budget hedgeBudget          // guarded by groups.mu
}

var groups struct {
	mu sync.Mutex
	m  map[groupKey]*group
}

// joinGroup adds e to the group of k and returns it with the news its
// members have learned so far. The caller must leave it. Lock order:
// engine, then groups.mu.
func joinGroup(k groupKey, e *engine) (*group, []news) {
	groups.mu.Lock()
	defer groups.mu.Unlock()
	g := groups.m[k]
	if g == nil {
		if groups.m == nil {
			groups.m = make(map[groupKey]*group)
		}
		g = &group{k: k, subs: make(map[*engine]struct{}), known: make(map[news]bool)}
		groups.m[k] = g
	}
	g.subs[e] = struct{}{}
	var known []news
	for n := range g.known {
		known = append(known, n)
	}
	return g, known
}

// leave removes e from g, and g from the registry when it was the last.
func (g *group) leave(e *engine) {
	groups.mu.Lock()
	defer groups.mu.Unlock()
	delete(g.subs, e)
	if len(g.subs) == 0 && groups.m[g.k] == g {
		delete(groups.m, g.k)
	}
}

// tell gives n to every member but from, the first time it is told: in a
// herd of 500 dials through one black hole, every stall told by every dial
// was 250 000 deliveries, 15% of the herd's CPU. It is called with no lock
// held (from an engine's queue) and takes each member's lock in turn,
// never two at once.
func (g *group) tell(from *engine, n news) {
	groups.mu.Lock()
	if g.known[n] {
		groups.mu.Unlock()
		return
	}
	g.known[n] = true
	to := make([]*engine, 0, len(g.subs))
	for e := range g.subs {
		if e != from {
			to = append(to, e)
		}
	}
	groups.mu.Unlock()
	for _, e := range to {
		e.hear(n)
	}
}

// tellGroup tells n to the group of k, if it exists, for a dial that is
// not a member (see engine.enlist).
func tellGroup(k groupKey, from *engine, n news) {
	groups.mu.Lock()
	g := groups.m[k]
	groups.mu.Unlock()
	if g != nil {
		g.tell(from, n)
	}
}

// groupCount returns the number of live groups, for tests.
func groupCount() int {
	groups.mu.Lock()
	defer groups.mu.Unlock()
	return len(groups.m)
}

// acquire takes a hedge from the destination's budget (hedger). The
// caller holds its engine's lock: lock order engine, then groups.mu.
func (g *group) acquire() bool {
	groups.mu.Lock()
	defer groups.mu.Unlock()
	return g.budget.acquire(len(g.subs))
}

// release returns a hedge to the destination's budget.
func (g *group) release() {
	groups.mu.Lock()
	defer groups.mu.Unlock()
	g.budget.release()
}
