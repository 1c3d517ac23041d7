package steer

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"

	"golang.org/x/net/bpf"

	"github.com/fitshake/fitshake/pmtu"
)

// ErrUnsupported is wrapped by the errors of [Group.SetClamped] where the
// platform cannot steer SYNs (everywhere but Linux).
var ErrUnsupported = errors.New("steer: steering by client prefix not supported on this platform")

// Group is a [net.Listener] made of twin listeners on one address, one of
// them clamped, with the SYNs of chosen client prefixes steered to the
// clamped one. Build it with [Listen]. Its methods are safe for concurrent
// use.
type Group struct {
	lns []*net.TCPListener // by index in the reuseport group: unclamped, then clamped ones
	mss []int              // the clamped twins' TCP_MAXSEG, by index less one

	conns chan accepted
	done  chan struct{}
	wg    sync.WaitGroup // the accept loops, one per twin

	mu       sync.Mutex // serializes SetClamped and Close
	closed   bool
	closeErr error
	prefixes []netip.Prefix
	clamps   map[netip.Prefix]int // prefixes, with the MSS of the twin each is steered to
}

// SharedError is returned by [Listen] when other sockets listen on the
// same address and port: with SO_REUSEPORT they would be in the twins'
// group and shift the indices the program returns.
type SharedError struct {
	Addr   string // the local address, as /proc/net/tcp shows it
	Others int    // listening sockets that are not the twins
}

func (e *SharedError) Error() string {
	return fmt.Sprintf("steer: %d other sockets listen on the address (%s): the twins need a reuseport group of their own", e.Others, e.Addr)
}

// accepted is what an accept loop hands to Accept.
type accepted struct {
	c   net.Conn
	err error
}

// newGroup starts an accept loop for each listener.
func newGroup(lns []*net.TCPListener, mss []int) *Group {
	g := &Group{lns: lns, mss: mss, conns: make(chan accepted), done: make(chan struct{})}
	for _, ln := range lns {
		g.wg.Go(func() { g.acceptLoop(ln) })
	}
	return g
}

// acceptLoop accepts on ln and hands each connection or error to Accept,
// one at a time: a twin never runs ahead of the caller by more than one
// connection, and an error that repeats repeats at the caller's pace.
func (g *Group) acceptLoop(ln *net.TCPListener) {
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		select {
		case g.conns <- accepted{c, err}:
		case <-g.done:
			if c != nil {
				c.Close()
			}
			return
		}
	}
}

// Accept waits for the next connection from either twin and returns it, a
// *net.TCPConn. After Close it returns an error wrapping [net.ErrClosed].
func (g *Group) Accept() (net.Conn, error) {
	select {
	case a := <-g.conns:
		return a.c, a.err
	case <-g.done:
		addr := g.Addr()
		return nil, &net.OpError{Op: "accept", Net: addr.Network(), Addr: addr, Err: net.ErrClosed}
	}
}

// Addr returns the address both twins listen on.
func (g *Group) Addr() net.Addr { return g.lns[0].Addr() }

// MSS returns the TCP_MAXSEG of the (first) clamped twin.
func (g *Group) MSS() int { return g.mss[0] }

// Twins returns the TCP_MAXSEG of each clamped twin, in the order
// ListenTwins was given them.
func (g *Group) Twins() []int { return append([]int(nil), g.mss...) }

// Clamped returns the prefixes steered to the clamped twin now, as
// SetClamped kept them (masked, IPv4-mapped ones as IPv4, covered ones
// dropped).
func (g *Group) Clamped() []netip.Prefix {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]netip.Prefix(nil), g.prefixes...)
}

// SetClamped steers the SYNs of new connections from prefixes to the
// (first) clamped twin, and every other SYN to the unclamped one,
// replacing the previous set atomically: each SYN sees the old program or
// the new one. Connections already accepted, or already in a twin's
// queue, keep their MSS. An empty or nil prefixes clamps no one.
//
// It returns a [*PrefixError] for an invalid prefix, a
// [*TooManyPrefixesError] beyond [MaxPrefixes], an error wrapping
// [ErrUnsupported] outside Linux (for a non-empty set), and an error
// wrapping [net.ErrClosed] after Close; the previous set then stays.
func (g *Group) SetClamped(prefixes []netip.Prefix) error {
	clamps := make(map[netip.Prefix]int, len(prefixes))
	for _, p := range prefixes {
		clamps[p] = g.mss[0]
	}
	return g.SetClamps(clamps)
}

// SetClamps is SetClamped with a clamp for each prefix: the SYNs from a
// prefix go to the twin whose TCP_MAXSEG is its value, one of Twins (an
// error wrapping [*pmtu.MSSError] otherwise). A prefix covered by another
// goes with the one that covers it; a prefix given twice (as written, and
// IPv4-mapped) gets the smaller clamp.
func (g *Group) SetClamps(clamps map[netip.Prefix]int) error {
	ps := make([]netip.Prefix, 0, len(clamps))
	to := make(map[netip.Prefix]int, len(clamps)) // by canon prefix: the twin's index
	for p, mss := range clamps {
		i := slices.Index(g.mss, mss)
		if i < 0 {
			return fmt.Errorf("steer: no twin clamps to %d (the group's: %v): %w", mss, g.mss, &pmtu.MSSError{MSS: mss})
		}
		ps = append(ps, p)
		if p.IsValid() {
			if j, ok := to[canon(p)]; !ok || g.mss[j-1] > mss {
				to[canon(p)] = i + 1
			}
		}
	}
	ps, err := normalize(ps)
	if err != nil {
		return err
	}
	index := make([]uint32, len(ps))
	kept := make(map[netip.Prefix]int, len(ps))
	for i, p := range ps {
		index[i] = uint32(to[p])
		kept[p] = g.mss[to[p]-1]
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		addr := g.Addr()
		return &net.OpError{Op: "setsockopt", Net: addr.Network(), Addr: addr, Err: net.ErrClosed}
	}
	if err := g.attach(ps, index); err != nil {
		return err
	}
	g.prefixes, g.clamps = ps, kept
	return nil
}

// Clamps returns the prefixes steered to clamped twins now, as Clamped
// does, each with its twin's TCP_MAXSEG.
func (g *Group) Clamps() map[netip.Prefix]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return maps.Clone(g.clamps)
}

// Close closes both twins, which resets the connections still in their
// queues, and returns once their accept loops have ended.
func (g *Group) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return g.closeErr
	}
	g.closed = true
	close(g.done)
	var errs []error
	for _, ln := range g.lns {
		errs = append(errs, ln.Close())
	}
	g.wg.Wait()
	g.closeErr = errors.Join(errs...)
	return g.closeErr
}

// assemble returns prog in the kernel's encoding.
func assemble(prog []bpf.Instruction) ([]bpf.RawInstruction, error) {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, err // a bug in program: it only emits what assembles
	}
	if len(raw) > maxInstructions {
		return nil, errors.New("steer: program too long") // MaxPrefixes too high: a bug
	}
	return raw, nil
}

// validate checks ListenTwins's network and mss: at least one, each valid,
// none twice.
func validate(network string, mss []int) error {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return net.UnknownNetworkError(network)
	}
	if len(mss) == 0 {
		return errors.New("steer: no clamped twin: give at least one MSS")
	}
	for i, m := range mss {
		if m == 0 || pmtu.ValidateMSS(m) != nil {
			return fmt.Errorf("steer: the clamped listener needs an MSS of %d..%d: %w", pmtu.MinMSS, pmtu.MaxMSS, &pmtu.MSSError{MSS: m})
		}
		if slices.Contains(mss[:i], m) {
			return fmt.Errorf("steer: two clamped twins of MSS %d", m)
		}
	}
	return nil
}
