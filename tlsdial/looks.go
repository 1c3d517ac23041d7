package tlsdial

import (
	"sync"
	"time"
)

// The first look. An attempt's first TCP_INFO poll comes one poll interval
// after its hello (pollFrom): a healthy loopback handshake is over by then,
// and a poll during it costs the handshake a timer wake and a read while
// the server computes its reply (1.5–2% of a loopback handshake,
// BENCHMARKS.md). Where the round trip is that short, a black hole shows a
// round trip after the hello, so a dial that waits a whole interval learns
// it late: a fresh process's first recovery through the lab's upstream black
// hole saw its verdict 1.4–1.7 ms after the hello, against 0.3–0.5 ms with
// a look 200 µs in.
//
// So a dial looks sooner where the process has not seen the destination
// answer: its first poll comes firstLookRTTs round trips after the hello
// (at least minFirstLook, at most pollInterval). A look that finds none of
// the hello acknowledged, nor any of it beyond a hole, saw too soon to
// tell: the next comes after as long again (twice as long after the
// hello), until that reaches the interval. A look that finds the hello
// heard has seen what an early look is for (the head-lost hello shows as a
// SACK a round trip after it), and the polls go back to the interval. Once
// a dial's first attempt is answered there, the next dials wait the whole
// interval. This is a hint about timing, never evidence: it changes when
// the machine looks, not what it believes, so a stale entry costs at most
// a late look.
const (
	firstLookRTTs = 2
	// minFirstLook keeps a look from coming before a loopback server's
	// stack has acknowledged anything. 200 µs was 150–220 µs later than
	// the lab's black hole showed (its round trip 13–48 µs).
	minFirstLook = 50 * time.Microsecond
	// answeredMax bounds the destinations remembered; past it, one is
	// forgotten at random for each new one (its next dial looks early).
	answeredMax = 4096
)

// answeredSet holds the destinations whose last dial's first attempt was
// answered. Safe for concurrent use.
//
// By address alone, whatever the dial's Cache: a process that makes a
// Cache per dial (or per client) would otherwise look early at every
// dial, and a hint wrong for one Cache's network costs at most a late
// look.
type answeredSet struct {
	mu sync.Mutex
	m  map[answeredKey]struct{}
}

// answeredKey names a destination in the answeredSet.
type answeredKey struct{ network, addr string }

// answeredKey returns d's key in the answeredSet.
func (d destination) answeredKey() answeredKey { return answeredKey{d.network, d.addr} }

// answered is the process's.
var answered answeredSet

// has reports whether k's last dial's first attempt was answered.
func (s *answeredSet) has(k answeredKey) bool {
	s.mu.Lock()
	_, ok := s.m[k]
	s.mu.Unlock()
	return ok
}

// note records whether k's dial that just completed did so at its first
// attempt's step.
func (s *answeredSet) note(k answeredKey, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok {
		delete(s.m, k)
		return
	}
	if _, had := s.m[k]; had {
		return
	}
	if s.m == nil {
		s.m = make(map[answeredKey]struct{})
	}
	if len(s.m) >= answeredMax {
		for old := range s.m {
			delete(s.m, old)
			break
		}
	}
	s.m[k] = struct{}{}
}

// firstPoll returns how long after attempt id's hello its TCP_INFO is
// first read: the poll interval, or sooner for a dial that looks early
// (machineConfig.lookSoon); 0 when it is never read (pollEvery).
func (m *machine) firstPoll(id int) time.Duration {
	every := m.pollEvery(id)
	if every != pollInterval || !m.cfg.lookSoon {
		return every
	}
	return min(every, max(firstLookRTTs*m.attempt(id).ConnectRTT, minFirstLook))
}

// nextPoll returns how long after a poll at now attempt id is polled
// again: the interval (pollEvery), or, while an early look saw none of the
// hello acknowledged, as long again as the hello has been out, if that is
// shorter.
func (m *machine) nextPoll(id int, now time.Time) time.Duration {
	every := m.pollEvery(id)
	if every != pollInterval || !m.cfg.lookSoon {
		return every
	}
	mon := m.leg(id).mon
	if ev := mon.diag.Evidence; ev.Acked > 0 || ev.SACKed > 0 || ev.Received > 0 {
		return every
	}
	return min(every, max(now.Sub(mon.start), minFirstLook))
}

// answeredFirst reports whether the dial, completed, completed at its
// first attempt's step: the path needed nothing the dial did not start
// with. A failed dial says nothing either way: its caller does not ask.
func (m *machine) answeredFirst() bool {
	return m.leg(m.winner).idx == m.cfg.first
}
