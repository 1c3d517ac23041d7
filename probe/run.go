package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/fitshake/fitshake/fingerprint"
	"github.com/fitshake/fitshake/internal/reset"
	"github.com/fitshake/fitshake/internal/verdict"
	"github.com/fitshake/fitshake/pmtu"
	utls "github.com/refraction-networking/utls"
)

// run is one Run: its settings, what it found so far, and the prober.
type run struct {
	res       Result
	cfg       *tls.Config
	nd        *net.Dialer
	network   string // "tcp4" or "tcp6"
	addr      string // IP literal and port
	ipv4      bool
	hellos    hellos
	prober    prober
	progress  func(Step)
	maxConns  int
	start     time.Time
	lastDial  time.Time
	rtt       time.Duration
	ttfb      time.Duration // the server's time to its first byte; 0 if unknown
	flight    int           // the largest flight a probe received
	fragments bool          // IPv4 fragments are dropped (DF clear by default)
	healthy   bool
	certErr   error // the first handshake's certificate verification failure
	// local, when not empty, says that the connection stays on this host
	// (see onThisHost): what the kernel sees is no path.
	local string
}

// hellos are the ClientHello records the probes send.
type hellos struct {
	full    []byte // fitshake's full post-quantum hello: two segments at any clamp
	compact []byte // one segment on a 1500-byte path
	small   []byte // the classical hello: one segment at any clamp
}

// pace is the least time between two connections of a Run.
const pace = 5 * time.Millisecond

func newRun(ctx context.Context, addr string, o Options) (*run, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	network := o.Network
	if network == "" {
		network = "tcp"
	}
	if network != "tcp" && network != "tcp4" && network != "tcp6" {
		return nil, fmt.Errorf("probe: unsupported network %q: want tcp, tcp4 or tcp6", network)
	}
	ip, err := resolve(ctx, network, host)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, addr, err)
	}
	r := &run{cfg: tlsConfig(o.Config, host), nd: o.NetDialer, progress: o.Progress, maxConns: o.MaxConns, start: time.Now()}
	if r.nd == nil {
		r.nd = &net.Dialer{}
	}
	if r.maxConns <= 0 {
		r.maxConns = DefaultMaxConns
	}
	r.ipv4 = ip.Is4()
	r.network, r.res.Family = "tcp6", "ipv6"
	if r.ipv4 {
		r.network, r.res.Family = "tcp4", "ipv4"
	}
	r.addr = net.JoinHostPort(ip.String(), port)
	r.res.Addr = addr
	if r.hellos, err = buildHellos(r.cfg); err != nil {
		return nil, err
	}
	r.prober = dialProber(r.nd, r.network, r.addr, !r.ipv4)
	return r, nil
}

// resolve returns the first address of host in the family network asks
// for: every probe then goes to the same address.
func resolve(ctx context.Context, network, host string) (netip.Addr, error) {
	ips, err := net.DefaultResolver.LookupNetIP(ctx, map[string]string{"tcp": "ip", "tcp4": "ip4", "tcp6": "ip6"}[network], host)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(ips) == 0 {
		return netip.Addr{}, errors.New("no address")
	}
	return ips[0].Unmap(), nil
}

// tlsConfig is a copy of c, with host as ServerName when it has none.
func tlsConfig(c *tls.Config, host string) *tls.Config {
	if c == nil {
		c = &tls.Config{}
	}
	c = c.Clone()
	if c.ServerName == "" {
		c.ServerName = host
	}
	return c
}

func buildHellos(cfg *tls.Config) (hellos, error) {
	o := fingerprint.OptionsFrom(cfg, cfg.ServerName)
	if o.NextProtos == nil {
		o.NextProtos = []string{"h2", "http/1.1"}
	}
	var hs hellos
	for _, r := range fingerprint.Ladder(true) {
		// The full hello is crypto/tls's where tlsdial.Dialer sends that.
		if std, ok := r.StdConfig(cfg, o); ok {
			std.NextProtos = o.NextProtos // StdConfig's is a clone
			rec, err := fingerprint.StdHello(std)
			if err != nil {
				return hellos{}, fmt.Errorf("probe: building the %s hello: %w", r.Name, err)
			}
			if fingerprint.HasPostQuantumShare(rec) {
				hs.full = rec
				continue
			}
		}
		h, err := fingerprint.Build(r, &utls.Config{InsecureSkipVerify: true}, o)
		if err != nil {
			return hellos{}, fmt.Errorf("probe: building the %s hello: %w", r.Name, err)
		}
		raw := h.Conn.HandshakeState.Hello.Raw
		rec := append([]byte{22, 3, 1, byte(len(raw) >> 8), byte(len(raw))}, raw...)
		switch r.Name {
		case fingerprint.NamePostQuantum:
			hs.full = rec
		case fingerprint.NameCompact:
			hs.compact = rec
		default:
			hs.small = rec
		}
	}
	return hs, nil
}

// budget reports whether another connection is allowed.
func (r *run) budget() bool { return r.res.Conns < r.maxConns }

// dialing accounts for a connection about to be made: the budget, the
// pace, the progress report.
func (r *run) dialing(ctx context.Context, what string) error {
	if !r.budget() {
		return errBudget
	}
	if wait := time.Until(r.lastDial.Add(pace)); wait > 0 {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(wait):
		}
	}
	r.lastDial = time.Now()
	r.res.Conns++
	if r.progress != nil {
		r.progress(Step{N: r.res.Conns, What: what})
	}
	return nil
}

var errBudget = errors.New("probe: connection budget spent")

// probe runs one probe connection and records it.
func (r *run) probe(ctx context.Context, what string, s spec) (obs, error) {
	if err := r.dialing(ctx, what); err != nil {
		if errors.Is(err, errBudget) {
			r.unmeasured("the rest of the search: MaxConns reached")
			return obs{outcome: timedOut}, nil
		}
		return obs{}, err
	}
	t0 := time.Now()
	o, err := r.prober(ctx, s)
	if err != nil {
		return obs{}, fmt.Errorf("probe: %s: %w", what, err)
	}
	if o.rtt > 0 && r.rtt == 0 {
		r.rtt = o.rtt
	}
	r.res.Probes = append(r.res.Probes, Probe{What: what, Outcome: o.outcome.String(), Packet: o.packet, Ms: ms(time.Since(t0))})
	return o, nil
}

func (r *run) unmeasured(what string) {
	for _, u := range r.res.Unmeasured {
		if u == what {
			return
		}
	}
	r.res.Unmeasured = append(r.res.Unmeasured, what)
}

// waitUp is how long an upstream probe waits for any sign: a lost head
// shows within a round trip (the tail's SACK) or at the kernel's
// tail-loss probe.
func (r *run) waitUp() time.Duration { return max(300*time.Millisecond, 8*r.rtt) }

// waitDown is how long a downstream probe waits for the server's flight:
// its time to answer, twice, and a few round trips.
func (r *run) waitDown() time.Duration {
	if r.ttfb == 0 {
		return time.Second
	}
	return min(max(300*time.Millisecond, 2*r.ttfb+8*r.rtt), 3*time.Second)
}

// noteFlight learns the server's time to answer, and the size of its
// flight, from a probe that got it.
func (r *run) noteFlight(o obs) {
	if o.firstByte > 0 && r.ttfb == 0 {
		r.ttfb = o.firstByte
	}
	r.flight = max(r.flight, o.received)
}

// measure runs the handshakes and both searches, then concludes.
func (r *run) measure(ctx context.Context) (*Result, error) {
	// Downstream first: the other probes may teach the kernel a smaller
	// path MTU (ICMP), which lowers the MSS this host announces and so
	// hides what the server could send.
	if err := r.connect(ctx); err != nil {
		return nil, err
	}
	if r.local != "" {
		return r.measureLocal(ctx)
	}
	var up, down limit
	var err error
	if measures {
		if down, err = r.searchDown(ctx); err != nil {
			return nil, err
		}
	}
	if err := r.stockHandshake(ctx); err != nil {
		return nil, err
	}
	if measures {
		if up, err = r.searchUp(ctx); err != nil {
			return nil, err
		}
	} else {
		r.unmeasured("the packet limits: this system has no TCP_INFO")
	}
	if r.fragments, err = r.droppedFragments(ctx, up); err != nil {
		return nil, err
	}
	class, err := r.helloClass(ctx, up, down)
	if err != nil {
		return nil, err
	}
	r.fitshakeHandshake(ctx)
	r.conclude(up, down, class)
	return &r.res, nil
}

// connect makes a plain TCP connection: whether the server is reachable
// at all, and the round trip.
func (r *run) connect(ctx context.Context) error {
	c, err := r.dialPlain(ctx, "TCP connect")
	if err != nil {
		return err
	}
	defer reset.Close(c)
	ti, err := pmtu.ReadTCPInfo(c)
	if err == nil {
		r.rtt = ti.RTT
	}
	r.local = onThisHost(c.LocalAddr(), c.RemoteAddr(), int(ti.PMTU))
	return nil
}

// measureLocal diagnoses a server reached over this host's loopback,
// where the kernel carries packets of any size and sees no loss: the
// probes would only measure the loopback. crypto/tls's handshake alone
// tells: completed, the path is healthy; failed, something on this host
// that relays the connection (a proxy that terminates TCP) failed it
// beyond the kernel's sight, and the path cannot be measured from here.
func (r *run) measureLocal(ctx context.Context) (*Result, error) {
	if err := r.stockHandshake(ctx); err != nil {
		return nil, err
	}
	if r.healthy {
		r.unmeasured("the packet limits: " + r.local)
		r.fitshakeHandshake(ctx)
		r.conclude(limit{}, limit{}, "")
		return &r.res, nil
	}
	r.res.Fitshake = "not tried: the path cannot be measured"
	r.res.CannotMeasure = r.local + ", yet crypto/tls's handshake failed (" + strings.TrimPrefix(r.res.Handshake, "failed: ") +
		"): what fails it is a program on this host that relays the connection (a proxy that terminates TCP), beyond the kernel's sight; probe the server's own address from a host on its path"
	r.conclude(limit{}, limit{}, verdict.CannotMeasure)
	return &r.res, nil
}

// onThisHost describes a connection from local to remote that stays on
// this host (the remote address is a loopback one, or this host's own),
// and returns "" for one that leaves it. pmtu is the kernel's path MTU
// for it (TCP_INFO), 0 if unknown.
func onThisHost(local, remote net.Addr, pmtu int) string {
	l, ok := local.(*net.TCPAddr)
	r, ok2 := remote.(*net.TCPAddr)
	if !ok || !ok2 || !(r.IP.IsLoopback() || r.IP.Equal(l.IP)) {
		return ""
	}
	s := r.IP.String() + " is on this host: the connection goes over the loopback"
	if pmtu > 0 {
		s += " (path MTU " + itoa(pmtu) + ")"
	}
	return s + ", where no packet is too large and the kernel sees no loss"
}

// dialPlain accounts for a connection (dialing) and makes it, unclamped;
// a failed connect is ErrUnreachable.
func (r *run) dialPlain(ctx context.Context, what string) (net.Conn, error) {
	if err := r.dialing(ctx, what); err != nil {
		return nil, err
	}
	c, err := r.nd.DialContext(ctx, r.network, r.addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, r.res.Addr, err)
	}
	return c, nil
}

// conclude fills the verdict.
func (r *run) conclude(up, down limit, class string) {
	res := &r.res
	res.Healthy = r.healthy
	res.UpstreamMTU, res.UpstreamAtLeast = up.mtu, up.atLeast
	res.DownstreamMTU, res.DownstreamAtLeast = down.mtu, down.atLeast
	res.PMTUD = up.icmp
	res.RTTMs = ms(r.rtt)
	if res.Flight == 0 {
		res.Flight = r.flight // crypto/tls's handshake did not complete
	}
	if class == "" {
		class = r.classify(up, down)
	}
	res.Class = class
	res.Fixes = verdict.Fixes(verdict.Path{Class: class, UpstreamMTU: up.mtu, DownstreamMTU: down.mtu, IPv6: !r.ipv4, Flight: res.Flight})
	if r.certErr != nil {
		res.Fixes = append(res.Fixes, certFix(r.certErr))
	}
	if res.Fixes == nil {
		res.Fixes = []string{}
	}
	res.Seconds = time.Since(r.start).Seconds()
}

func (r *run) classify(up, down limit) string {
	switch {
	case r.fragments:
		return verdict.FragmentsDropped
	case up.broken && down.broken:
		return verdict.BlackHole
	case up.broken:
		return verdict.BlackHoleUpstream
	case down.broken:
		return verdict.BlackHoleDownstream
	case up.icmp || down.icmp:
		return verdict.PMTUDWorks
	case r.healthy:
		return verdict.Healthy
	}
	return verdict.Unknown
}
