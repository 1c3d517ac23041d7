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
// listeners on the address (SO_REUSEPORT), the second with TCP_MAXSEG set to
// Policy.ClampMSS(); a classic BPF program attached to them steers the SYNs
// of the prefixes Policy clamps to the clamped twin, so those clients get
// small segments both ways without changing anything, while every other
// client keeps full-size segments. No privilege is needed (Linux); Multipath
// TCP is off on these sockets. Outside Linux it is a plain listener and the
// self-fix logs an error wrapping ErrSelfFixUnsupported when it would clamp.
//
// The listener's machinery is told the clamped set beside Clamp, which
// may stay nil. No other socket may listen on the same address: it would
// join the twins' reuseport group (Listen fails if one already does).
func (w *Watcher) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	w.init()
	g, err := steer.Listen(ctx, network, addr, w.Policy.ClampMSS())
	if err != nil {
		return nil, err
	}
	w.clampMu.Lock()
	w.mu.Lock()
	w.fixers = append(w.fixers, g)
	set := w.clamps.clamped()
	w.mu.Unlock()
	err = g.SetClamped(set) // those clamped already, if any
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

// setClamped tells Clamp and every Listen listener the clamped set, and
// returns the first error. Under clampMu, not mu.
func (w *Watcher) setClamped(set []netip.Prefix) error {
	w.mu.Lock()
	fixes := append([]Clamper(nil), w.fixers...)
	w.mu.Unlock()
	if w.Clamp != nil {
		fixes = append([]Clamper{w.Clamp}, fixes...)
	}
	var first error
	for _, f := range fixes {
		if err := f.SetClamped(set); err != nil && first == nil {
			first = err
		}
	}
	return first
}
