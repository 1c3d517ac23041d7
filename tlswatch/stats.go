package tlswatch

import (
	"net/netip"
	"time"
)

// classes are the per-connection classes, in the order of the counts.
var classes = [...]Class{Healthy, Idle, BlackHoleUpstream, BlackHoleDownstream, Reset, TLSError, HelloPartial}

func classIndex(c Class) int {
	for i, k := range classes {
		if k == c {
			return i
		}
	}
	return 1 // Idle: never reached, classify returns only the above
}

// slots is how many parts the window is counted in: it slides by a tenth.
const slots = 10

// slot counts the verdicts of one tenth of the window.
type slot struct {
	epoch     int64 // which tenth (time / tenth); stale when out of the window
	byClass   [len(classes)]int32
	recovered int32
	fixed     int32 // completed under the self-fix's clamp (among byClass's Healthy)
}

// failure is a recent failed handshake from one address, kept to see the
// address recover.
type failure struct {
	addr   netip.Addr
	synMSS int
	at     time.Time
}

// recentFailures is how many failed addresses a prefix remembers.
const recentFailures = 8

// prefixStats are the counts of one prefix.
type prefixStats struct {
	slots    [slots]slot
	failing  bool
	evidence string // the latest failure's sentence
	// Sizes since the prefix's entry was made: the client's SYN MSS
	// (smallest and largest), the largest segment received, the largest
	// of ours acknowledged, the largest flight of ours.
	synMin, synMax, maxRecv, maxAcked, flight int
	recoveredMSS                              int   // SYN MSS of the latest recovered handshake
	hole                                      Class // the latest black-hole class seen
	recent                                    [recentFailures]failure
	next                                      int // where the next failure goes in recent
}

// counts are a prefix's totals over the window.
type counts struct {
	byClass   [len(classes)]int
	recovered int
	fixed     int // completed under the self-fix's clamp
}

func (c counts) handshakes() int {
	n := 0
	for _, v := range c.byClass {
		n += v
	}
	return n
}

func (c counts) completed() int { return c.byClass[0] }
func (c counts) idle() int      { return c.byClass[1] }
func (c counts) failed() int    { return c.handshakes() - c.completed() - c.idle() }

// class is the prefix's verdict: healthy when at least 90% of its tries
// completed, else its most frequent failure (BlackHole when both
// directions lost packets); idle when nothing tried. Handshakes that
// completed under the self-fix's clamp are left out: they tell of the
// clamp, not of the path.
func (c counts) class() Class {
	done, failed := c.completed()-c.fixed, c.failed()
	switch {
	case failed == 0 && done == 0 && c.idle() > 0:
		return Idle
	case failed*10 <= done+failed: // a completion rate of 90% or more
		return Healthy
	case c.byClass[2] > 0 && c.byClass[3] > 0:
		return BlackHole
	}
	best := 2
	for i := 3; i < len(classes); i++ {
		if c.byClass[i] > c.byClass[best] {
			best = i
		}
	}
	return classes[best]
}

// table is the watcher's counts by prefix, bounded. Not safe for
// concurrent use; the watcher guards it.
type table struct {
	bits   [2]int // IPv4, IPv6 prefix lengths
	tenth  time.Duration
	max    int
	m      map[netip.Prefix]*prefixStats
	other  prefixStats // the handshakes of prefixes past max, and of non-IP addresses
	noRoom int64       // the epoch in which the last search for room found none
}

func (t *table) init(bits [2]int, window time.Duration, max int) {
	t.bits, t.tenth, t.max = bits, max64(window/slots, time.Millisecond), max
	t.m = make(map[netip.Prefix]*prefixStats)
	t.noRoom = -1
}

func max64(a, b time.Duration) time.Duration {
	if a < b {
		return b
	}
	return a
}

// prefixOf returns a's prefix; invalid for an invalid address.
func (t *table) prefixOf(a netip.Addr) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	bits := t.bits[0]
	if a.Is6() {
		bits = t.bits[1]
	}
	p, _ := a.Prefix(min(bits, a.BitLen()))
	return p
}

func (t *table) epoch(now time.Time) int64 { return now.UnixNano() / int64(t.tenth) }

// entry returns pfx's counts, making room for them if it must; nil when
// there is none (the handshake goes to other).
func (t *table) entry(pfx netip.Prefix, now time.Time) (*prefixStats, []PrefixInfo) {
	if !pfx.IsValid() {
		return nil, nil
	}
	if s := t.m[pfx]; s != nil {
		return s, nil
	}
	var gone []PrefixInfo
	if len(t.m) >= t.max {
		ep := t.epoch(now)
		if t.noRoom == ep {
			return nil, nil
		}
		for p, s := range t.m {
			if t.sum(s, ep).handshakes() > 0 {
				continue
			}
			// A failing prefix whose window emptied recovered: say so
			// before it is forgotten, as Status would have.
			if ch := t.update(p, s, ep, 1); ch != nil {
				gone = append(gone, *ch)
			}
			delete(t.m, p)
		}
		if len(t.m) >= t.max {
			t.noRoom = ep
			return nil, gone
		}
	}
	s := new(prefixStats)
	t.m[pfx] = s
	return s, gone
}

// sum totals s over the window ending in epoch ep.
func (t *table) sum(s *prefixStats, ep int64) counts {
	var c counts
	for i := range s.slots {
		sl := &s.slots[i]
		if sl.epoch <= ep-slots || sl.epoch > ep {
			continue
		}
		for k, v := range sl.byClass {
			c.byClass[k] += int(v)
		}
		c.recovered += int(sl.recovered)
		c.fixed += int(sl.fixed)
	}
	return c
}

// classOf is s's class over c: c's, but the class of its latest black hole
// when all it has are handshakes the self-fix's clamp carried.
func (s *prefixStats) classOf(c counts) Class {
	if c.fixed > 0 && c.fixed == c.completed() && c.failed() == 0 && s.hole != "" {
		return s.hole
	}
	return c.class()
}

// added is what add found.
type added struct {
	prefix    netip.Prefix
	tracked   bool // counted apart (not in other)
	recovered bool // see HandshakeInfo.Recovered
	// changes are the prefixes that started failing or recovered: this
	// one, and any failing one forgotten to make room for it.
	changes []PrefixInfo
}

// add counts one verdict from ap at now; fixed reports a handshake that
// completed under the self-fix's clamp.
func (t *table) add(ap netip.AddrPort, c Class, ev Evidence, now time.Time, failingAfter int, fixed bool) added {
	res := added{prefix: t.prefixOf(ap.Addr())}
	s, gone := t.entry(res.prefix, now)
	res.changes = gone
	res.tracked = s != nil
	if s == nil {
		s = &t.other
	}
	ep := t.epoch(now)
	sl := &s.slots[ep%slots]
	if sl.epoch != ep {
		*sl = slot{epoch: ep}
	}
	sl.byClass[classIndex(c)]++
	switch {
	case fixed:
		sl.fixed++
	case c == Healthy:
		res.recovered = s.recover(ap.Addr(), ev.clientMSS(), now, t.tenth*slots)
		if res.recovered {
			sl.recovered++
		}
	case c.Failed():
		s.evidence = ev.Sentence(c)
		s.recent[s.next] = failure{addr: ap.Addr(), synMSS: ev.SYNMSS, at: now}
		s.next = (s.next + 1) % recentFailures
		if c.BlackHoleClass() {
			s.hole = c
		}
	}
	if !fixed { // under the clamp, the SYN MSS seen is the clamp
		s.sizes(ev)
	}
	if res.tracked {
		if ch := t.update(res.prefix, s, ep, failingAfter); ch != nil {
			res.changes = append(res.changes, *ch)
		}
	}
	return res
}

// clientMSS is the SYN MSS the client chose itself: SYNMSS when it is
// below what our SYN-ACK announced (else ours may be what bounds it); 0
// unknown.
func (ev Evidence) clientMSS() int {
	if ev.AdvMSS > 0 && ev.SYNMSS >= ev.AdvMSS {
		return 0
	}
	return ev.SYNMSS
}

// recover reports whether a recent failure from addr had a larger SYN
// MSS than synMSS, and forgets it.
func (s *prefixStats) recover(addr netip.Addr, synMSS int, now time.Time, window time.Duration) bool {
	if synMSS <= 0 {
		return false
	}
	for i := range s.recent {
		f := &s.recent[i]
		if f.addr == addr && f.synMSS > synMSS && now.Sub(f.at) < window {
			*f = failure{}
			s.recoveredMSS = synMSS
			return true
		}
	}
	return false
}

// sizes keeps the largest (and smallest SYN MSS) sizes seen.
func (s *prefixStats) sizes(ev Evidence) {
	if v := ev.SYNMSS; v > 0 {
		if s.synMin == 0 || v < s.synMin {
			s.synMin = v
		}
		s.synMax = max(s.synMax, v)
	}
	s.maxRecv = max(s.maxRecv, ev.MaxReceived)
	s.maxAcked = max(s.maxAcked, ev.MaxAcked)
	s.flight = max(s.flight, ev.Flight)
}

// update sets s's failing state from its counts and returns the change,
// if any.
func (t *table) update(pfx netip.Prefix, s *prefixStats, ep int64, failingAfter int) *PrefixInfo {
	c := t.sum(s, ep)
	class := s.classOf(c)
	// A failing prefix whose handshakes now complete under the clamp has
	// not recovered: it stays failing while they are all it shows.
	failing := class.Failed() && (c.failed() >= failingAfter || s.failing && c.fixed > 0 && c.fixed == c.completed())
	if failing == s.failing {
		return nil
	}
	s.failing = failing
	return &PrefixInfo{
		Prefix: pfx, Failing: failing, Class: class,
		Handshakes: c.handshakes(), Completed: c.completed(), Failed: c.failed(),
		Evidence: s.evidence,
	}
}
