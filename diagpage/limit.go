package diagpage

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// window is the period of Handler.MaxBytes.
const window = time.Minute

// limiter bounds each client's connections held by the handler and bytes
// exchanged with it per window. Clients are keyed by clientKey.
type limiter struct {
	maxConns   int
	maxBytes   int64
	maxClients int
	now        func() time.Time

	mu      sync.Mutex
	clients map[netip.Prefix]*client
}

type client struct {
	conns int
	start time.Time // of the current window
	bytes int64     // in the current window
}

// admit takes a connection slot for key and reports whether it may be
// served: fewer than maxConns in the handler and the window's bytes under
// maxBytes. The caller must call done once if admit returned true.
func (l *limiter) admit(key netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	c := l.clients[key]
	if c == nil {
		if len(l.clients) >= l.maxClients {
			l.sweepLocked(now)
			if len(l.clients) >= l.maxClients {
				return false
			}
		}
		c = &client{start: now}
		l.clients[key] = c
	}
	if now.Sub(c.start) >= window {
		c.start, c.bytes = now, 0
	}
	if c.conns >= l.maxConns || c.bytes >= l.maxBytes {
		return false
	}
	c.conns++
	return true
}

// charge counts n bytes against key's window.
func (l *limiter) charge(key netip.Prefix, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.clients[key]; c != nil {
		c.bytes += int64(n)
	}
}

// done releases the connection slot admit took.
func (l *limiter) done(key netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.clients[key]; c != nil && c.conns > 0 {
		c.conns--
	}
}

// sweepLocked forgets clients with no connection whose window is over.
func (l *limiter) sweepLocked(now time.Time) {
	for k, c := range l.clients {
		if c.conns == 0 && now.Sub(c.start) >= window {
			delete(l.clients, k)
		}
	}
}

// clientKey is the client a remote address counts as: its IPv4 address,
// or the /64 of its IPv6 address (one host may hold a whole /64). An
// unparsable address counts as one shared client.
func clientKey(remote string) netip.Prefix {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}
