package tlsdial

import (
	"context"
	"sync"
	"time"

	"github.com/fitshake/fitshake/pmtu"
)

// Discovery coordination: while one dial finds out what a destination's
// path needs, other dials to it wait for the answer instead of stalling on
// the same black hole. Flights are keyed by cache as well as destination so
// that dialers sharing a cache share discoveries, and dialers with separate
// caches stay independent.

type flightKey struct {
	cache *pmtu.Cache
	key   pmtu.Key
}

// A flight is one discovery in progress. done closes when it ends.
type flight struct {
	k    flightKey
	done chan struct{}
	once sync.Once
}

var flights struct {
	mu sync.Mutex
	m  map[flightKey]*flight
}

// joinFlight returns the discovery in progress for k, or starts one and
// reports leader = true. A leader must call end.
func joinFlight(k flightKey) (f *flight, leader bool) {
	flights.mu.Lock()
	defer flights.mu.Unlock()
	if f := flights.m[k]; f != nil {
		return f, false
	}
	if flights.m == nil {
		flights.m = make(map[flightKey]*flight)
	}
	f = &flight{k: k, done: make(chan struct{})}
	flights.m[k] = f
	return f, true
}

// end finishes the discovery; followers wake up and read the cache. Safe to
// call more than once and on nil.
func (f *flight) end() {
	if f == nil {
		return
	}
	f.once.Do(func() {
		flights.mu.Lock()
		if flights.m[f.k] == f {
			delete(flights.m, f.k)
		}
		flights.mu.Unlock()
		close(f.done)
	})
}

// maxFlightWait bounds how long a dial waits for another's discovery. A
// discovery ends within its ladder's stall windows, but a TCPDialer
// connection whose TLS stack never starts its handshake would hold one
// open until closed; past this, followers go on by themselves.
const maxFlightWait = 5 * time.Second

// wait blocks until the discovery ends, ctx is done, or maxFlightWait
// passes.
func (f *flight) wait(ctx context.Context) error {
	t := time.NewTimer(maxFlightWait)
	defer t.Stop()
	select {
	case <-f.done:
		return nil
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
