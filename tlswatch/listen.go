package tlswatch

import (
	"context"
	"errors"
	"net"
	"net/netip"

	"github.com/fitshake/fitshake/internal/steer"
)

// ErrSelfFixUnsupported is wrapped by the error a Listen listener's self-fix
// returns where the platform cannot steer connections by client prefix
// (everywhere but Linux); the listener itself works there, unclamped.
var ErrSelfFixUnsupported = steer.ErrUnsupported

// Listen announces on the local network address ("tcp", "tcp4" or "tcp6"),
// as net.ListenConfig.Listen does, with the self-fix built in, and returns
// the listener already wrapped (see Wrap). Its connections come from twin
// listeners on the address (SO_REUSEPORT): one unclamped, and one with
// TCP_MAXSEG set to each clamp Policy may apply (each family's MSS for each
// rung of its Ladder, or its one MSS); a classic BPF program attached to
// them steers the SYNs of each prefix Policy clamps to the twin of its
// clamp, so those clients get small segments both ways without changing
// anything, while every other client keeps full-size segments. No
// privilege is needed (Linux); Multipath TCP is off on these sockets.
// Outside Linux it is a plain listener and the self-fix logs an error
// wrapping ErrSelfFixUnsupported when it would clamp.
//
// The listener's machinery is told the clamped set beside Clamp, which
// may stay nil. No other socket may listen on the same address: it would
// join the twins' reuseport group (Listen fails if one already does).
func (w *Watcher) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	w.init()
	g, err := steer.ListenTwins(ctx, network, addr, w.Policy.twins())
	if err != nil {
		return nil, err
	}
	w.clampMu.Lock()
	w.mu.Lock()
	w.fixers = append(w.fixers, g)
	m := w.clamps.clampMap()
	w.mu.Unlock()
	err = g.SetClamps(m) // those clamped already, if any
	w.clampMu.Unlock()
	if err != nil && !errors.Is(err, steer.ErrUnsupported) {
		g.Close()
		return nil, err
	}
	return &selfFixListener{Listener: w.Wrap(g), w: w, g: g}, nil
}

// selfFixListener is a Listen listener: closing it stops telling its
// machinery the clamped set.
type selfFixListener struct {
	net.Listener
	w *Watcher
	g *steer.Group
}

func (l *selfFixListener) Close() error {
	l.w.clampMu.Lock()
	l.w.mu.Lock()
	for i, f := range l.w.fixers {
		if f == l.g {
			l.w.fixers = append(l.w.fixers[:i:i], l.w.fixers[i+1:]...)
			break
		}
	}
	l.w.mu.Unlock()
	l.w.clampMu.Unlock()
	return l.Listener.Close()
}

// selfFixing reports whether anything applies the clamped set: Clamp or a
// Listen listener. Under w.mu.
func (w *Watcher) selfFixing() bool { return w.Clamp != nil || len(w.fixers) > 0 }

// selfFixingNow is selfFixing for callers without w.mu.
func (w *Watcher) selfFixingNow() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.selfFixing()
}

// fixer is the machinery of a Listen listener (a *steer.Group): it
// applies each prefix's own clamp.
type fixer interface {
	SetClamps(map[netip.Prefix]int) error
}

// setClamped tells Clamp the clamped set and every Listen listener the
// clamps, and returns the first error. Under clampMu, not mu.
func (w *Watcher) setClamped(set []netip.Prefix, clamps map[netip.Prefix]int) error {
	w.mu.Lock()
	fixers := append([]fixer(nil), w.fixers...)
	w.mu.Unlock()
	var errs []error
	if w.Clamp != nil {
		errs = append(errs, w.Clamp.SetClamped(set))
	}
	for _, f := range fixers {
		errs = append(errs, f.SetClamps(clamps))
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
