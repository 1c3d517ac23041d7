package tlsdial

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fitshake/fitshake/fingerprint"
	"github.com/fitshake/fitshake/internal/utlsconv"
	"github.com/fitshake/fitshake/pmtu"
	utls "github.com/refraction-networking/utls"
)

// Dialer dials TLS connections that survive path-MTU black holes. It is
// shaped like tls.Dialer: the zero value is ready to use, and it is safe to
// call its methods concurrently.
//
// A dial whose ClientHello meets a black hole or a reset is redialed at
// once with a smaller TCP MSS clamp, which fixes both directions and keeps
// the hello; one whose server stays silent gets an attempt with the next
// clamp raced beside it, and the first to get the reply wins. One whose
// hello a box on the path refuses (split across segments, or for its size
// or content) gets the compact post-quantum hello, which fits one segment.
// Only when every clamp failed conclusively or the compact hello was
// refused too, and only if AllowClassical is set, does a classical hello
// follow. Certificate and hostname failures, alerts and
// refused connects are returned at once and never retried. See the package
// documentation for the whole policy.
type Dialer struct {
	// NetDialer dials the TCP connections. Nil means the zero net.Dialer.
	// Its Control or ControlContext still runs, after the MSS clamp. As in
	// tls.Dialer, a non-zero Timeout bounds the whole dial, handshakes and
	// redials included.
	NetDialer *net.Dialer

	// Config is the TLS configuration. Nil means the zero configuration.
	// It is never modified. An empty ServerName is taken from addr's host.
	// ClientSessionCache is not used, so connections do not resume
	// sessions. The full post-quantum hello is crypto/tls's own, sent with
	// this Config held to the ladder's rules (fingerprint.Rung.StdConfig:
	// TLS 1.2 at least, AEAD suites only); the smaller hellos, and the full
	// one where crypto/tls sends no post-quantum share (GODEBUG
	// tlsmlkem=0), are built with utls.
	Config *tls.Config

	// Trace receives the dial's events. Nil means none; a Trace attached
	// to the context with WithTrace is called as well.
	Trace *Trace

	// Logger receives a line per stall and recovery (Info) and per
	// attempt (Debug). Nil means no logging.
	Logger *slog.Logger

	// Cache remembers what worked per destination so that the next dial
	// starts there. Nil means pmtu.DefaultCache.
	Cache *pmtu.Cache

	// AllowClassical allows, after every MSS clamp failed conclusively (a
	// black hole TCP_INFO showed, or a reset) or the compact post-quantum
	// hello was refused too, a ClientHello without the post-quantum
	// (X25519MLKEM768) key share. That is a real downgrade;
	// the Report says when it happened. Silence never leads to it. False
	// means the post-quantum share is always sent.
	AllowClassical bool

	// StallWindow is how long the server may stay silent after the
	// ClientHello before an attempt with the next clamp is raced beside
	// it. Zero means four times the connect round trip, at least 250 ms and
	// at most 3 s. A positive value below MinStallWindow or two connect
	// round trips is raised to that. Negative disables stall detection:
	// one attempt, as crypto/tls.
	StallWindow time.Duration

	// MaxAttempts bounds the attempts of one dial. Zero means one per
	// step of the ladder, which is also the most it can use; negative is
	// an error. Whatever it is, a dial with no attempt left ends by itself
	// (see the package documentation), never only at the caller's
	// deadline.
	MaxAttempts int

	// TimerOnly disables reading TCP_INFO, as on systems without it: only
	// silence past the stall window is seen, and it races the next clamp.
	// False means TCP_INFO is read every millisecond until the reply comes,
	// which tells a black hole within a round trip or two.
	TimerOnly bool
}

// Dial is DialContext with context.Background.
func (d *Dialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

// config returns a clone of the caller's config with ServerName set.
func (d *Dialer) config(addr string) (*tls.Config, error) {
	var cfg *tls.Config
	if d.Config == nil {
		cfg = &tls.Config{}
	} else {
		cfg = d.Config.Clone()
	}
	if cfg.ServerName == "" {
		host := addr
		if i := strings.LastIndex(addr, ":"); i >= 0 {
			host = addr[:i]
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if host == "" && !cfg.InsecureSkipVerify {
			return nil, errors.New("tls: either ServerName or InsecureSkipVerify must be specified in the tls.Config")
		}
		cfg.ServerName = host
	}
	return cfg, nil
}

// rungs returns the hello rungs this dial may use, with what the machine
// knows of them: each strictly smaller than the one before (with TLS 1.2
// only, "classical" is no smaller than "pq" and would be a wasted
// attempt).
func (d *Dialer) rungs(o fingerprint.Options) ([]fingerprint.Rung, []rungInfo, error) {
	var (
		rungs []fingerprint.Rung
		infos []rungInfo
	)
	prev := math.MaxInt
	for _, r := range fingerprint.Ladder(d.AllowClassical) {
		n, err := r.RecordSize(o)
		if err != nil {
			return nil, nil, err
		}
		if n < prev {
			rungs = append(rungs, r)
			infos = append(infos, rungInfo{name: r.Name, size: n, pq: r.SendsPostQuantum(o), oneSegment: r.Compact})
			prev = n
		}
	}
	return rungs, infos, nil
}

// DialContext connects to addr on the named network ("tcp", "tcp4" or
// "tcp6") and completes a TLS handshake, recovering from path-MTU black
// holes as described on Dialer. The returned net.Conn is a *Conn.
//
// A failed dial returns a *DialError carrying the Report; if ctx ends
// first, errors.Is(err, ctx.Err()) holds.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if ctx == nil {
		panic("tlsdial: nil context")
	}
	dst := newDestination(ctx, network, addr, d.Cache, d.Trace, d.Logger)
	nd := netDialerOr(d.NetDialer)
	if nd.Timeout != 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, nd.Timeout)
		defer cancel()
	}
	drv, cfg, err := d.prepare(ctx, dst, nd)
	if err != nil {
		return nil, dst.failed(err)
	}
	e := newEngine(ctx, dst, cfg, drv)
	e.inline = true
	e.begin()
	if e.first != nil {
		// Here: a healthy dial hands nothing to another goroutine. The
		// engine watches once the hello is out (helloConn).
		drv.attempt(e.first)
	}
	e.watch() // if attempt 1 sent no hello (its connect failed), from here
	<-e.quiet
	w := e.winner()
	if w == nil {
		return nil, e.failure()
	}
	return &Conn{tc: w.val.(tlsConn), raw: w.conn, report: e.report()}, nil
}

// prepare checks the dial's inputs and builds its driver and the
// machine's configuration.
func (d *Dialer) prepare(ctx context.Context, dst destination, nd *net.Dialer) (*dialDriver, machineConfig, error) {
	if err := checkInput(dst.network, d.MaxAttempts); err != nil {
		return nil, machineConfig{}, err
	}
	cfg, err := d.config(dst.addr)
	if err != nil {
		return nil, machineConfig{}, err
	}
	opts := fingerprint.OptionsFrom(cfg, cfg.ServerName)
	rungs, infos, err := d.rungs(opts)
	if err != nil {
		return nil, machineConfig{}, err
	}
	drv := &dialDriver{
		dst: dst, nd: nd, cfg: cfg, opts: opts, rungs: rungs,
		timerOnly: d.TimerOnly || d.StallWindow < 0,
	}
	if std, ok := rungs[0].StdConfig(cfg, opts); ok {
		// crypto/tls sends the first rung's hello: its size is known once
		// written, as TCPDialer's.
		drv.std, infos[0].size = std, 0
	}
	mtus, hmtu := ladderMTUs()
	mc := machineConfig{
		addr:        dst.addr,
		steps:       ladderSteps(mtus, hmtu, infos),
		rungs:       infos,
		maxAttempts: d.MaxAttempts,
		window:      d.StallWindow,
	}
	mc.deadline, _ = ctx.Deadline()
	dst.recall(&mc)
	return drv, mc, nil
}

// dialDriver runs the Dialer's attempts: connect with the step's clamp,
// build the hello (with crypto/tls on the first rung where it can send it,
// else with utls) and complete the handshake.
type dialDriver struct {
	dst       destination
	nd        *net.Dialer
	cfg       *tls.Config // the dial's, ServerName set
	std       *tls.Config // the first rung's, for crypto/tls; nil: utls sends every rung
	stdOff    atomic.Bool // crypto/tls's hello had no post-quantum share: utls sends it
	opts      fingerprint.Options
	rungs     []fingerprint.Rung
	timerOnly bool

	mu    sync.Mutex
	ucfg  *utls.Config               // cfg for utls, made when a utls hello is first built
	built map[int]*fingerprint.Hello // the first hello built per rung
}

// hello builds the ClientHello of rung for an attempt: the dial's first at
// that rung is built afresh; a later one (a clamp redialed or raced) reuses
// its key shares, as TCPDialer's replay does, which saves most of what a
// hello costs (the herd spent a quarter of its CPU building hellos).
func (dr *dialDriver) hello(rung int) (*fingerprint.Hello, error) {
	dr.mu.Lock()
	first := dr.built[rung]
	if dr.ucfg == nil {
		// Here, not per dial: a dial whose hellos are all crypto/tls's
		// needs none.
		dr.ucfg = utlsconv.Config(dr.cfg)
	}
	ucfg := dr.ucfg.Clone()
	dr.mu.Unlock()
	if first != nil {
		return first.Again(ucfg, dr.opts)
	}
	h, err := fingerprint.Build(dr.rungs[rung], ucfg, dr.opts)
	if err != nil {
		return nil, err
	}
	dr.mu.Lock()
	if dr.built == nil {
		dr.built = make(map[int]*fingerprint.Hello)
	}
	if dr.built[rung] == nil {
		dr.built[rung] = h
	}
	dr.mu.Unlock()
	return h, nil
}

func (dr *dialDriver) attempt(l *leg) {
	// Connect first, then build the hello (its keys are most of the
	// cost) while the server accepts the connection, as crypto/tls does:
	// built before the connect, a loopback dial took up to 7% longer.
	conn, rtt, err := connect(l.ctx, dr.nd, dr.dst.network, dr.dst.addr, l.st.mtu)
	if err != nil {
		l.finished(legResult{kind: resFailed, err: err}, nil)
		return
	}
	if l.st.rung == 0 && dr.std != nil && !dr.stdOff.Load() {
		if dr.attemptStd(l, conn, rtt) {
			return
		}
		// crypto/tls here sends no post-quantum share: utls sends the
		// full hello, on this connection, where nothing went out yet.
		dr.stdOff.Store(true)
	}
	hello, err := dr.hello(l.st.rung)
	if err != nil {
		conn.Close()
		l.finished(legResult{kind: resFailed, err: err}, nil)
		return
	}
	cc := &countingConn{Conn: conn}
	// utls writes the hello inside the handshake: report it first.
	if _, _, wanted := l.sendHello(conn, rtt, hello.RecordSize, &cc.read, dr.timerOnly, nil); !wanted {
		conn.Close()
		return
	}
	hello.Conn.SetUnderlyingConn(cc)
	err = hello.Conn.HandshakeContext(dr.handshakeContext(l.ctx))
	if !l.finished(resultOf(err, cc.read.Load() > 0), hello.Conn) {
		conn.Close() // failed, or the dial ended without it
	}
}

// attemptStd runs attempt l's handshake over conn with crypto/tls, which
// builds the hello itself: the first write reports it (helloConn). It
// returns false, with nothing sent and conn open, when that hello has no
// post-quantum share (GODEBUG tlsmlkem=0, FIPS 140-3 mode).
func (dr *dialDriver) attemptStd(l *leg, conn net.Conn, rtt time.Duration) bool {
	hc := &helloConn{countingConn: countingConn{Conn: conn}, l: l, rtt: rtt, timerOnly: dr.timerOnly}
	tc := tls.Client(hc, dr.std)
	err := tc.HandshakeContext(dr.handshakeContext(l.ctx))
	switch {
	case hc.notPQ:
		return false
	case hc.unwanted:
		conn.Close()
	case !l.finished(resultOf(err, hc.read.Load() > 0), tc):
		conn.Close()
	}
	return true
}

var errNotPQ = errors.New("tlsdial: crypto/tls's hello has no post-quantum share")

// helloConn is an attempt's connection under crypto/tls: its first write,
// the ClientHello, is sent and reported by leg.sendHello, and the engine
// starts watching.
type helloConn struct {
	countingConn
	l         *leg
	rtt       time.Duration
	timerOnly bool
	written   bool // the hello was reported
	unwanted  bool // the dial did not want it: the attempt is over
	notPQ     bool // the hello has no post-quantum share: it was not sent
}

func (c *helloConn) Write(b []byte) (int, error) {
	switch {
	case c.notPQ:
		return 0, errNotPQ
	case c.written:
		return c.Conn.Write(b)
	case !fingerprint.HasPostQuantumShare(b):
		c.notPQ = true
		return 0, errNotPQ
	}
	c.written = true
	n, err, wanted := c.l.sendHello(c.Conn, c.rtt, len(b), &c.read, c.timerOnly, func() (int, error) { return c.Conn.Write(b) })
	c.unwanted = !wanted
	return n, err
}

// connectionState is the TLS state of a completed attempt, for the Done
// hook (see stater).
func (dr *dialDriver) connectionState(val any) *tls.ConnectionState {
	tc, ok := val.(tlsConn)
	if !ok {
		return nil
	}
	s := stateOf(tc)
	return &s
}

// handshakeContext returns the context an attempt's handshake runs under:
// ctx's values without its end, unless a GetClientCertificate callback may
// watch it (CertificateRequestInfo.Context). utls v1.8.2 starts a goroutine
// per handshake to watch a context that can end (crypto/tls uses
// context.AfterFunc), which cost a healthy loopback dial up to 5%; the
// engine needs none of it, because it ends a running handshake by closing
// its connection whenever the attempt is abandoned or the dial ends
// (effAbort, including on ctx's end).
func (dr *dialDriver) handshakeContext(ctx context.Context) context.Context {
	if dr.cfg.GetClientCertificate != nil {
		return ctx
	}
	return context.WithoutCancel(ctx)
}

// countingConn counts the bytes the server has sent, so that silence can
// be told from a slow handshake without TCP_INFO.
type countingConn struct {
	net.Conn
	read atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Add(int64(n))
	return n, err
}
