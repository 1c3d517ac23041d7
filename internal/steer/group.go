package steer

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
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
	lns []*net.TCPListener // by index in the reuseport group: unclamped, clamped
	mss int

	conns chan accepted
	done  chan struct{}
	wg    sync.WaitGroup // the accept loops, one per twin

	mu       sync.Mutex // serializes SetClamped and Close
	closed   bool
	closeErr error
	prefixes []netip.Prefix
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
func newGroup(lns []*net.TCPListener, mss int) *Group {
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

// MSS returns the TCP_MAXSEG of the clamped twin.
func (g *Group) MSS() int { return g.mss }

// Clamped returns the prefixes steered to the clamped twin now, as
// SetClamped kept them (masked, IPv4-mapped ones as IPv4, covered ones
// dropped).
func (g *Group) Clamped() []netip.Prefix {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]netip.Prefix(nil), g.prefixes...)
}

// SetClamped steers the SYNs of new connections from prefixes to the
// clamped twin, and every other SYN to the unclamped one, replacing the
// previous set atomically: each SYN sees the old program or the new one.
// Connections already accepted, or already in a twin's queue, keep their
// MSS. An empty or nil prefixes clamps no one.
//
// It returns a [*PrefixError] for an invalid prefix, a
// [*TooManyPrefixesError] beyond [MaxPrefixes], an error wrapping
// [ErrUnsupported] outside Linux (for a non-empty set), and an error
// wrapping [net.ErrClosed] after Close; the previous set then stays.
func (g *Group) SetClamped(prefixes []netip.Prefix) error {
	ps, err := normalize(prefixes)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		addr := g.Addr()
		return &net.OpError{Op: "setsockopt", Net: addr.Network(), Addr: addr, Err: net.ErrClosed}
	}
	if err := g.attach(ps); err != nil {
		return err
	}
	g.prefixes = ps
	return nil
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

// validate checks Listen's network and mss.
func validate(network string, mss int) error {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return net.UnknownNetworkError(network)
	}
	if mss == 0 || pmtu.ValidateMSS(mss) != nil {
		return fmt.Errorf("steer: the clamped listener needs an MSS of %d..%d: %w", pmtu.MinMSS, pmtu.MaxMSS, &pmtu.MSSError{MSS: mss})
	}
	return nil
}
