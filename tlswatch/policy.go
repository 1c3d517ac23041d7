package tlswatch

import (
	"net/netip"
	"slices"
	"time"

	"github.com/fitshake/fitshake/pmtu"
)

// Clamper is the self-fix: the listener machinery that makes new
// connections from chosen prefixes use a clamped MSS (a twin listener with
// TCP_MAXSEG and a steering program, say). The watcher calls SetClamped
// with the whole set each time it changes, one call at a time (so that an
// older set never overwrites a newer one), never with the lock of its
// counts held; an error is logged and the set is offered again at the
// next change.
type Clamper interface {
	SetClamped(prefixes []netip.Prefix) error
}

// Policy decides which prefixes the self-fix clamps. The zero value is
// ready: every field's zero means its default.
type Policy struct {
	// After is how many connections from a prefix must show a black hole
	// (BlackHoleUpstream or BlackHoleDownstream), within Window, for the
	// prefix to be clamped; 0 means 3. A single lost handshake is no
	// evidence: a client that gave up, a flaky moment.
	After int
	// Window is how far back the evidence counts; 0 means 10 minutes.
	Window time.Duration
	// TTL is how long a clamp lasts; 0 means 1 hour. Then the prefix is
	// un-clamped: if its path recovered, its connections complete at full
	// size; if not, After more failures clamp it again. A clamped prefix
	// whose handshakes complete shows no evidence either way (they
	// complete because of the clamp), so time is the only way to learn it
	// recovered: completions under the clamp neither un-clamp it nor
	// make it healthy on the status page.
	TTL time.Duration
	// MaxPrefixes bounds the prefixes clamped at once; 0 means 256. A
	// prefix past the bound waits for one to expire.
	MaxPrefixes int
	// MSS, if not 0, is the one clamp, for both families: what a Clamper
	// applies, and what Listen's listeners and the status page use. 0
	// means the Ladder, each family's own MSS for each rung.
	MSS int
	// Ladder is the path MTUs the clamp of a prefix steps down through,
	// when MSS is 0: a prefix is clamped to the first; After connections
	// lost to a black hole under that clamp (within Window) take it to
	// the next, and so on to the last. Each is clamped to its family's
	// MSS for it (pmtu.MSSForMTU: 1360 on IPv4, 1340 on IPv6 for 1400).
	// nil means 1400 then 1280, the rungs of fitshake's own dialer: 1400
	// fits the common tunnel and VPN overheads, 1280 is IPv6's minimum
	// link MTU. A Clamper (Watcher.Clamp) is told only which prefixes
	// are clamped, and applies its own MSS; Listen's listeners follow the
	// ladder.
	Ladder []int
}

func (p Policy) after() int            { return cmpOr(p.After, 3) }
func (p Policy) window() time.Duration { return cmpOr(p.Window, 10*time.Minute) }
func (p Policy) ttl() time.Duration    { return cmpOr(p.TTL, time.Hour) }
func (p Policy) maxPrefixes() int      { return cmpOr(p.MaxPrefixes, 256) }

// defaultLadder is Policy.Ladder's default: tlsdial's rungs below the
// full size.
var defaultLadder = []int{1400, 1280}

// ClampMSS returns the smallest clamp the policy applies: MSS, or the
// IPv6 MSS of the ladder's last rung (1220 by default), which fits both
// families.
func (p Policy) ClampMSS() int {
	if p.MSS > 0 {
		return p.MSS
	}
	return p.mss(len(p.ladder())-1, true)
}

func (p Policy) ladder() []int {
	if p.MSS > 0 {
		return []int{0} // one rung: MSS
	}
	if len(p.Ladder) == 0 {
		return defaultLadder
	}
	return p.Ladder
}

// mss returns the clamp of a rung for a family.
func (p Policy) mss(rung int, ipv6 bool) int {
	if p.MSS > 0 {
		return p.MSS
	}
	return pmtu.MSSForMTU(p.ladder()[rung], ipv6)
}

// twins returns every clamp the policy may apply, each once: the TCP_MAXSEG
// of Listen's clamped twins.
func (p Policy) twins() []int {
	var out []int
	for r := range p.ladder() {
		for _, v6 := range []bool{false, true} {
			if m := p.mss(r, v6); !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	return out
}

func cmpOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// clamps is the state of a Policy: pure, with time passed in. Not safe
// for concurrent use; the watcher guards it.
type clamps struct {
	p        Policy
	evidence map[netip.Prefix][]time.Time // recent black-hole failures (under the prefix's clamp, if any), oldest first
	until    map[netip.Prefix]clamp       // clamped prefixes
	// sweepAt is when expire next has work: the next clamp's end, or a
	// tenth of the window after the last sweep of stale evidence. It keeps
	// expire, called for every verdict, from walking the maps each time.
	sweepAt time.Time
}

// clamp is a clamped prefix's state.
type clamp struct {
	until time.Time
	rung  int // index in Policy.ladder()
}

// observe records a connection of class c from pfx at now, whose SYN-ACK
// announced advMSS (tcpi_advmss; 0 unknown), and reports whether the
// clamped set, or a clamp, changed. A black hole on a connection of a
// clamped prefix is evidence only when the clamp applied to it (advMSS at
// most the clamp): then After of them step the clamp down the ladder.
func (s *clamps) observe(pfx netip.Prefix, c Class, advMSS int, now time.Time) bool {
	changed := s.expire(now)
	if !c.BlackHoleClass() {
		return changed
	}
	cl, clamped := s.until[pfx]
	if clamped && !s.under(pfx, advMSS) {
		return changed // accepted before the clamp, or not under it: not new
	}
	if s.evidence == nil {
		s.evidence = make(map[netip.Prefix][]time.Time)
		s.until = make(map[netip.Prefix]clamp)
	}
	ev := append(s.evidence[pfx], now)
	ev = ev[s.stale(ev, now):]
	switch {
	case len(ev) < s.p.after(),
		!clamped && len(s.until) >= s.p.maxPrefixes(),
		clamped && cl.rung+1 >= len(s.p.ladder()): // the last rung: nowhere further to go
		s.evidence[pfx] = ev
		return changed
	case clamped:
		cl.rung++
	}
	delete(s.evidence, pfx)
	cl.until = now.Add(s.p.ttl())
	s.until[pfx] = cl
	if cl.until.Before(s.sweepAt) {
		s.sweepAt = cl.until
	}
	return true
}

// under reports whether a connection from pfx whose SYN-ACK announced
// advMSS was clamped by pfx's clamp.
func (s *clamps) under(pfx netip.Prefix, advMSS int) bool {
	m := s.mss(pfx)
	return m > 0 && advMSS > 0 && advMSS <= m
}

// mss returns pfx's clamp; 0 when it is not clamped.
func (s *clamps) mss(pfx netip.Prefix) int {
	cl, ok := s.until[pfx]
	if !ok {
		return 0
	}
	return s.p.mss(cl.rung, pfx.Addr().Is6())
}

// clampMap returns the clamped prefixes with their clamps.
func (s *clamps) clampMap() map[netip.Prefix]int {
	m := make(map[netip.Prefix]int, len(s.until))
	for pfx := range s.until {
		m[pfx] = s.mss(pfx)
	}
	return m
}

// stale returns how many of ev, oldest first, are out of the window.
func (s *clamps) stale(ev []time.Time, now time.Time) int {
	i := 0
	for i < len(ev) && !ev[i].After(now.Add(-s.p.window())) {
		i++
	}
	return i
}

// expire un-clamps the prefixes whose TTL passed and forgets stale
// evidence; it reports whether the clamped set changed.
func (s *clamps) expire(now time.Time) bool {
	if now.Before(s.sweepAt) {
		return false
	}
	changed := false
	for pfx, cl := range s.until {
		if !now.Before(cl.until) {
			delete(s.until, pfx)
			changed = true
		}
	}
	for pfx, ev := range s.evidence {
		if ev = ev[s.stale(ev, now):]; len(ev) == 0 {
			delete(s.evidence, pfx)
		} else {
			s.evidence[pfx] = ev
		}
	}
	s.sweepAt = now.Add(s.p.window() / 10)
	if next := s.next(); !next.IsZero() && next.Before(s.sweepAt) {
		s.sweepAt = next
	}
	return changed
}

// clamped returns the clamped prefixes, sorted.
func (s *clamps) clamped() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(s.until))
	for pfx := range s.until {
		out = append(out, pfx)
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

// isClamped reports whether pfx is clamped.
func (s *clamps) isClamped(pfx netip.Prefix) bool {
	_, ok := s.until[pfx]
	return ok
}

// next returns when the next clamp expires; zero when none is set.
func (s *clamps) next() time.Time {
	var at time.Time
	for _, cl := range s.until {
		if at.IsZero() || cl.until.Before(at) {
			at = cl.until
		}
	}
	return at
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
