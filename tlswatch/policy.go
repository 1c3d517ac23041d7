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
	// shows no evidence either way (its handshakes complete because of
	// the clamp), so time is the only way to learn it recovered.
	TTL time.Duration
	// MaxPrefixes bounds the prefixes clamped at once; 0 means 256. A
	// prefix past the bound waits for one to expire.
	MaxPrefixes int
	// MSS is the clamp the Clamper applies, as the status page reports
	// it; 0 means 1220 (a 1280-byte path, IPv6's minimum, fits IPv4 and
	// IPv6 alike).
	MSS int
}

func (p Policy) after() int            { return cmpOr(p.After, 3) }
func (p Policy) window() time.Duration { return cmpOr(p.Window, 10*time.Minute) }
func (p Policy) ttl() time.Duration    { return cmpOr(p.TTL, time.Hour) }
func (p Policy) maxPrefixes() int      { return cmpOr(p.MaxPrefixes, 256) }

// ClampMSS returns the clamp the policy reports: MSS, or its default.
func (p Policy) ClampMSS() int { return cmpOr(p.MSS, pmtu.MSSForMTU(1280, true)) }

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
	evidence map[netip.Prefix][]time.Time // recent black-hole failures, oldest first
	until    map[netip.Prefix]time.Time   // clamped prefixes: until when
	// sweepAt is when expire next has work: the next clamp's end, or a
	// tenth of the window after the last sweep of stale evidence. It keeps
	// expire, called for every verdict, from walking the maps each time.
	sweepAt time.Time
}

// observe records a connection of class c from pfx at now, and reports
// whether the clamped set changed.
func (s *clamps) observe(pfx netip.Prefix, c Class, now time.Time) bool {
	changed := s.expire(now)
	if !c.BlackHoleClass() {
		return changed
	}
	if _, ok := s.until[pfx]; ok {
		return changed // clamped already: evidence under a clamp is not new
	}
	if s.evidence == nil {
		s.evidence = make(map[netip.Prefix][]time.Time)
		s.until = make(map[netip.Prefix]time.Time)
	}
	ev := append(s.evidence[pfx], now)
	ev = ev[s.stale(ev, now):]
	if len(ev) < s.p.after() || len(s.until) >= s.p.maxPrefixes() {
		s.evidence[pfx] = ev
		return changed
	}
	delete(s.evidence, pfx)
	until := now.Add(s.p.ttl())
	s.until[pfx] = until
	if until.Before(s.sweepAt) {
		s.sweepAt = until
	}
	return true
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
	for pfx, t := range s.until {
		if !now.Before(t) {
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
	for _, t := range s.until {
		if at.IsZero() || t.Before(at) {
			at = t
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
