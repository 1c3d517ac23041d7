package probe

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/fitshake/fitshake/internal/dialctl"
	"github.com/fitshake/fitshake/internal/reset"
	"github.com/fitshake/fitshake/pmtu"
)

// dir is the direction a probe measures.
type dir uint8

const (
	up   dir = iota + 1 // the hello's head segment reaches the server
	down                // the server's flight comes back
)

// spec is one probe connection: the packet size its MSS clamp allows (0:
// no clamp), the hello it sends, what it measures, and whether it forces
// DF on (IPv4: path MTU discovery, whatever the system default).
type spec struct {
	packet  int
	hello   []byte
	dir     dir
	forceDF bool
	wait    time.Duration // how long silence may last before it counts
	// chunk, if not 0, writes the hello in pieces of at most chunk bytes,
	// so that its segments fit the smallest path (Go's sockets have
	// Nagle off: a write is a segment).
	chunk int
}

// outcome is what a probe's connection showed.
type outcome int

const (
	passed   outcome = iota + 1 // packets of the size got through
	lost                        // they vanished
	refused                     // reset or closed before any reply
	timedOut                    // nothing conclusive before spec.wait
)

func (o outcome) String() string {
	switch o {
	case passed:
		return "passed"
	case lost:
		return "lost"
	case refused:
		return "reset"
	case timedOut:
		return "silent"
	}
	return "?"
}

// obs is what one probe saw. packet is the largest IP packet that the probe
// actually sent (up) or received (down), headers included; for a probe
// that failed, the size that did not get through.
type obs struct {
	outcome    outcome
	packet     int
	rtt        time.Duration
	firstByte  time.Duration // until the server's first byte; 0 if none
	received   int           // in-order bytes from the server
	pmtu       int           // the kernel's path MTU at the end
	pmtuShrank bool          // ICMP lowered it, during the probe or before
	allowed    int           // the largest packet this host's announced MSS allows
	ifMTU      int           // the local interface's MTU; 0 if unknown
	segments   int           // segments the hello took
	headAcked  bool
}

// prober runs one probe. The real one dials; tests use a model of a path.
type prober func(ctx context.Context, s spec) (obs, error)

// dialProber returns the prober that dials network/addr with nd.
func dialProber(nd *net.Dialer, network, addr string, ipv6 bool) prober {
	return func(ctx context.Context, s spec) (obs, error) {
		c, err := dialSpec(ctx, nd, network, addr, s)
		if err != nil {
			return obs{}, err
		}
		defer reset.Close(c)
		return watch(ctx, c, s, ipv6)
	}
}

// dialSpec dials network/addr with nd, clamped to s.packet (pmtu's clamp,
// composed with nd's own Control or ControlContext) and with DF forced on
// if s asks.
func dialSpec(ctx context.Context, nd *net.Dialer, network, addr string, s spec) (net.Conn, error) {
	d, err := pmtu.DialerWithMTU(nd, s.packet)
	if err != nil {
		return nil, err
	}
	if s.forceDF {
		d = dialctl.First(d, forceDF)
	}
	return d.DialContext(ctx, network, addr)
}

// watch writes s.hello on c and reads TCP_INFO every millisecond until the
// probe's question is answered.
func watch(ctx context.Context, c net.Conn, s spec, ipv6 bool) (obs, error) {
	base, err := pmtu.ReadTCPInfo(c)
	if err != nil {
		return obs{}, err
	}
	t0 := time.Now()
	if err := write(c, s.hello, s.chunk); err != nil {
		return obs{outcome: refused}, nil
	}
	rd := startReader(c)
	j := judge{s: s, base: base, ipv6: ipv6, ifMTU: ifaceMTU(c.LocalAddr())}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return obs{}, context.Cause(ctx)
		case <-tick.C:
		}
		cur, err := pmtu.ReadTCPInfo(c)
		if err != nil {
			return obs{}, err
		}
		if o, done := j.look(cur, time.Since(t0), rd.cut()); done {
			return o, nil
		}
	}
}

// ifaceMTU returns the MTU of the local interface that holds addr's IP, or
// 0 when none does.
func ifaceMTU(addr net.Addr) int {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return 0
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return 0
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ta.IP) {
				return ifc.MTU
			}
		}
	}
	return 0
}

// write writes b in pieces of at most chunk bytes (0: at once).
func write(c net.Conn, b []byte, chunk int) error {
	if chunk <= 0 {
		chunk = len(b)
	}
	for len(b) > 0 {
		n := min(chunk, len(b))
		if _, err := c.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// reader drains what the server sends, so that a reset or an end of
// stream is noticed.
type reader struct{ done chan error }

func startReader(c net.Conn) *reader {
	r := &reader{done: make(chan error, 1)}
	go func() {
		_, err := io.Copy(io.Discard, c)
		if err == nil {
			err = io.EOF
		}
		r.done <- err
	}()
	return r
}

// cut reports whether the connection was reset or closed by the other end.
func (r *reader) cut() bool {
	select {
	case err := <-r.done:
		r.done <- err
		return !errors.Is(err, net.ErrClosed)
	default:
		return false
	}
}
