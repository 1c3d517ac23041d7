// Package pmtutest emulates a path MTU black hole on loopback, for tests of
// code that must survive one. It needs no privileges.
//
// A [Proxy] listens on loopback and forwards every connection to a target
// TCP server, dropping what would not fit through a path of the configured
// MTU, silently, as a router that sends no ICMP does. It works out the
// packet sizes from the MSS of the connection it accepts, which on Linux
// reflects the client's TCP_MAXSEG: a client that clamps its MSS (see
// [pmtu.DialerWithMTU]) gets through, a stock client does not.
//
// # The model
//
// Without a clamp, a loopback connection would carry 32 KiB segments; the
// proxy instead assumes an Ethernet-like path, with segments of at most
// 1448 bytes of payload (IPv6: 1428), smaller if the client clamped its MSS:
//
//	segment = min(accepted MSS, 1448 or 1428)
//	packet  = segment's bytes + 52 (IPv4: 20 IP + 20 TCP + 12 timestamps)
//	                          + 72 (IPv6: 40 IP + 20 TCP + 12 timestamps)
//
// A sender cuts what it has to send at once into segments of at most the
// MSS, and sends a small write on its own (Go sets TCP_NODELAY). The proxy
// sees the same segments on loopback, where the MSS is larger: after each
// read it asks the kernel (TCP_INFO) whether a segment larger than any
// before arrived (tcpi_rcv_mss grew); if none did, the read's bytes per
// segment (tcpi_data_segs_in), at most the largest before, bound its
// segments. The largest segment of the path is min(that, segment). So
// small writes pass, each as a small packet, however many of them one read
// returns, and a write of more than a segment is sent as full segments,
// which a path too small for them drops. The proxy dials the target with
// the path's segment size, so that the server cuts its writes as on the
// path.
//
// From the first segment over the MTU, nothing more is forwarded in that
// direction, end of stream included: TCP delivers in order, so the lost
// segment blocks the stream for good. The connection stays open and
// silent, exactly like a real black hole: the client sees a timeout, never
// an error. The server obeys the MSS the client announced, so the same
// segment size applies in both directions.
//
// A clamp of 1360 (a 1400-byte IPv4 path) gives 1348-byte segments and
// 1400-byte packets, which pass an MTU of 1400; a stock Go ClientHello
// (about 1500 bytes with its post-quantum key share) does not.
//
// The family that sets the header overhead is the one the proxy listens
// on: 127.0.0.1 for "tcp4", [::1] for "tcp6".
//
// # Limits
//
// The sizes of the segments are the loopback kernel's: a server that writes
// small pieces faster than they leave (a real NIC's queue, a congestion
// window) may have them merged on a real path and not here. The kernel
// lowers the receive MSS after two smaller segments of equal size, so a
// large segment followed by two such in one read is judged by the read's
// bytes per segment. Below the receive MSS's start (536 bytes of payload:
// paths under 588 bytes on IPv4, 608 on IPv6) the bytes per segment
// decide, which may take small writes read together for one larger
// segment.
//
// The proxy emulates what the application sees, not what the kernel sees:
// the client's own TCP stack has its bytes acknowledged by the proxy, so
// TCP_INFO (see [pmtu.ReadTCPInfo]) shows a healthy connection with a
// silent peer, not the lost or SACKed segments of a real black hole. Use
// network namespaces and a dropping router for that. Reading the accepted
// MSS needs Linux; elsewhere [Start] fails with an error wrapping
// [pmtu.ErrUnsupported].
package pmtutest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fitshake/fitshake/pmtu"
)

// Direction selects which way a [Proxy] black-holes large packets.
type Direction uint8

const (
	Upstream   Direction = 1 << iota // client to server: the ClientHello
	Downstream                       // server to client: the certificate flight
	Both       = Upstream | Downstream
)

func (d Direction) String() string {
	switch d {
	case Upstream:
		return "upstream"
	case Downstream:
		return "downstream"
	case Both:
		return "both"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// DefaultMTU is the path MTU of a [Config] whose MTU is 0.
const DefaultMTU = 1400

// Segment payloads and header overheads of the emulated path, with TCP
// timestamps as Linux uses them.
const (
	ipv4MaxSeg = 1460 - 12 // Ethernet MSS less timestamps
	ipv6MaxSeg = 1440 - 12

	timestampBytes = 12 // TCP's timestamp option, which Linux uses on loopback

	// initialRcvMSS is where Linux starts tcpi_rcv_mss (TCP_MSS_DEFAULT),
	// or lower for a smaller MSS.
	initialRcvMSS = 536
)

// Config configures a [Proxy]. Only Target is required.
type Config struct {
	// Target is the address of the TCP server to forward to.
	Target string

	// MTU is the emulated path MTU. 0 means DefaultMTU (1400). It must be
	// one that pmtu.ValidateMTU accepts.
	MTU int

	// Direction is which way large packets are black-holed. 0 means Both.
	Direction Direction

	// Network is where the proxy listens: "tcp4" (the default) on
	// 127.0.0.1, or "tcp6" on [::1]. Its family sets the header overhead.
	Network string

	// Delay holds back the server's first reply bytes, to emulate a slow
	// server (or a long round trip). 0 means none.
	Delay time.Duration
}

// Stats counts what a [Proxy] has done. Flights are chunks of bytes read
// from one side; a dropped flight is never delivered.
type Stats struct {
	Conns       int   // connections accepted
	UpDropped   int   // flights dropped client to server
	DownDropped int   // flights dropped server to client
	MSS         []int // MSS of each accepted connection, in the order accepted
}

// Proxy is a loopback TCP proxy that emulates a path MTU black hole. Its
// methods are safe for concurrent use.
type Proxy struct {
	cfg      Config
	overhead int
	maxSeg   int
	ln       net.Listener
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	stats  Stats
	closed bool
	err    error // from closing the listener
}

// Start starts a proxy listening on loopback and forwarding to
// cfg.Target. Close it when done.
func Start(cfg Config) (*Proxy, error) {
	if runtime.GOOS != "linux" && runtime.GOOS != "android" {
		return nil, fmt.Errorf("pmtutest: reading the accepted MSS: %w", pmtu.ErrUnsupported)
	}
	if cfg.Target == "" {
		return nil, errors.New("pmtutest: Config.Target is required")
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if err := pmtu.ValidateMTU(cfg.MTU); err != nil {
		return nil, fmt.Errorf("pmtutest: %w", err)
	}
	if cfg.Direction == 0 {
		cfg.Direction = Both
	}
	if cfg.Direction&^Both != 0 {
		return nil, fmt.Errorf("pmtutest: invalid %v", cfg.Direction)
	}
	if cfg.Delay < 0 {
		return nil, fmt.Errorf("pmtutest: negative Delay %v", cfg.Delay)
	}

	p := &Proxy{conns: make(map[net.Conn]struct{})}
	var addr string
	switch cfg.Network {
	case "", "tcp4":
		cfg.Network = "tcp4"
		addr, p.overhead, p.maxSeg = "127.0.0.1:0", pmtu.HeaderBytes(false, true), ipv4MaxSeg
	case "tcp6":
		addr, p.overhead, p.maxSeg = "[::1]:0", pmtu.HeaderBytes(true, true), ipv6MaxSeg
	default:
		return nil, fmt.Errorf("pmtutest: Network %q: want tcp4 or tcp6", cfg.Network)
	}
	ln, err := net.Listen(cfg.Network, addr)
	if err != nil {
		return nil, fmt.Errorf("pmtutest: %w", err)
	}
	p.cfg, p.ln = cfg, ln
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Go(p.accept)
	return p, nil
}

// NewProxy starts a proxy emulating a black hole of the given MTU (0 means
// DefaultMTU) in both directions in front of target, and closes it when
// the test ends. It fails the test on error and skips it where the
// platform cannot run a proxy.
func NewProxy(t testing.TB, target string, mtu int) *Proxy {
	t.Helper()
	p, err := Start(Config{Target: target, MTU: mtu})
	if errors.Is(err, pmtu.ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Addr returns the address clients dial, such as "127.0.0.1:41223".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops the proxy: it closes the listener and every proxied
// connection, both ends, and waits for all of its goroutines to return.
// Later calls do nothing and return the first call's error.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return p.err
	}
	p.closed = true
	p.err = p.ln.Close()
	p.cancel()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return p.err
}

// Stats returns a snapshot of the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.MSS = slices.Clone(s.MSS)
	return s
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// A temporary failure such as EMFILE: back off, as net/http does.
			select {
			case <-time.After(10 * time.Millisecond):
				continue
			case <-p.ctx.Done():
				return
			}
		}
		if !p.track(c) {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// track registers c to be closed by Close, or closes it and reports false
// if the proxy is already closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	mss, err := pmtu.EffectiveMSS(client)
	if err != nil {
		p.untrack(client)
		return
	}
	p.mu.Lock()
	p.stats.Conns++
	p.stats.MSS = append(p.stats.MSS, mss)
	p.mu.Unlock()

	seg := min(mss, p.maxSeg)
	// The server's segments are cut as on the path: it obeys the MSS the
	// client announced (the kernel deducts the timestamps again).
	var d net.Dialer
	if pmtu.ValidateMSS(seg+timestampBytes) == nil {
		d.Control = pmtu.ClampMSS(seg+timestampBytes, nil)
	}
	server, err := d.DialContext(p.ctx, "tcp", p.cfg.Target)
	if err != nil {
		p.untrack(client) // the client sees its connection closed
		return
	}
	if !p.track(server) {
		p.untrack(client)
		return
	}
	defer p.untrack(client, server)

	var wg sync.WaitGroup
	wg.Go(func() {
		if !p.pump(client, server, Downstream, seg, p.cfg.Delay) {
			client.Close()
			server.Close()
		}
	})
	if !p.pump(server, client, Upstream, seg, 0) {
		client.Close()
		server.Close()
	}
	wg.Wait()
}

// pump copies src to dst, black-holing dir from the first segment that
// does not fit the MTU. It reports false if the pair must be torn down: an
// error other than the end of src, or a failed write.
func (p *Proxy) pump(dst, src net.Conn, dir Direction, seg int, delay time.Duration) bool {
	buf := make([]byte, 64<<10)
	holes := p.cfg.Direction&dir != 0
	blocked := false
	sizes := newSegmentSizes()
	for {
		n, err := src.Read(buf)
		if n > 0 && !blocked && holes && min(sizes.largest(src, n), seg)+p.overhead > p.cfg.MTU {
			blocked = true
		}
		if n > 0 && blocked {
			p.drop(dir)
		}
		if n > 0 && !blocked {
			if delay > 0 && !p.sleep(delay) {
				return false
			}
			delay = 0
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return false
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return false
			}
			if !blocked {
				// Pass the FIN on. A blocked stream keeps it: it comes
				// after the lost segment.
				closeWrite(dst)
			}
			return true
		}
	}
}

// segmentSizes follows the largest segment a connection receives through
// TCP_INFO: its receive MSS, which the kernel raises to the size of any
// segment larger than it (tcp_measure_rcv_mss), and its count of segments.
type segmentSizes struct {
	rcvMSS uint32 // tcpi_rcv_mss at the last read
	segs   uint32 // tcpi_data_segs_in at the last read
	read   uint64 // bytes read so far
	unread uint64 // bytes received but not read, at the last read
	ok     bool   // the last TCP_INFO was read
}

// newSegmentSizes returns the sizes of a new connection. It takes no
// TCP_INFO: the first segments may be in already.
func newSegmentSizes() segmentSizes {
	return segmentSizes{rcvMSS: initialRcvMSS, ok: true}
}

// largest returns the size of the largest segment among the n bytes just
// read from c: the receive MSS if it grew with them (or with the next
// segments, which the stream then reaches). If it did not, no segment was
// larger than the receive MSS before, which bounds the bytes per segment
// of the read. Without TCP_INFO it is n, as if one segment.
func (s *segmentSizes) largest(c net.Conn, n int) int {
	prev := *s
	s.read += uint64(n)
	ti, err := pmtu.ReadTCPInfo(c)
	if s.ok = err == nil; s.ok {
		s.rcvMSS, s.segs = ti.RcvMSS, ti.DataSegsIn
		s.unread = ti.BytesReceived - min(s.read, ti.BytesReceived)
	}
	if !prev.ok || !s.ok {
		return n
	}
	if s.rcvMSS > prev.rcvMSS {
		return int(s.rcvMSS)
	}
	// Segments that arrived after the last read, before its TCP_INFO, are
	// counted there and read here.
	k := int(s.segs - prev.segs)
	if prev.unread > 0 {
		k++
	}
	perSeg := n
	if k > 1 {
		perSeg = (n + k - 1) / k
	}
	return min(perSeg, int(prev.rcvMSS))
}

func (p *Proxy) drop(dir Direction) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if dir == Upstream {
		p.stats.UpDropped++
	} else {
		p.stats.DownDropped++
	}
}

// sleep waits for d, or reports false if the proxy is closed first.
func (p *Proxy) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.ctx.Done():
		return false
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}
