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

	"github.com/cenkalti/backoff/v4"
	"github.com/fitshake/fitshake/fingerprint"
	"github.com/fitshake/fitshake/internal/utlsconv"
	"github.com/fitshake/fitshake/pmtu"
	utls "github.com/refraction-networking/utls"
)

// Dialer dials TLS connections that survive path-MTU black holes. It is
// shaped like tls.Dialer: the zero value is ready to use, and it is safe to
// call its methods concurrently.
//
// A dial that stalls (TCP connected, ClientHello sent, the server silent
// past the stall window) is closed and redialed down the ladder: first with
// smaller TCP MSS clamps, which fix both directions and keep the hello; then,
// only if AllowClassical is set, with smaller hellos. Any other failure
// (refused, reset, certificate or hostname mismatch, alert) is returned at
// once and never retried with a weaker hello.
type Dialer struct {
	// NetDialer dials the TCP connections. Nil means the zero net.Dialer.
	// Its Control or ControlContext still runs, after the MSS clamp. As in
	// tls.Dialer, a non-zero Timeout bounds the whole dial, handshakes and
	// redials included.
	NetDialer *net.Dialer

	// Config is the TLS configuration. Nil means the zero configuration.
	// It is never modified. An empty ServerName is taken from addr's host.
	// ClientSessionCache is not used (utls has its own session types), so
	// connections do not resume sessions.
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

	// AllowClassical allows, after every MSS clamp has stalled, a
	// ClientHello without the post-quantum (X25519MLKEM768) key share.
	// That is a real downgrade; the Report says when it happened. False
	// means the post-quantum share is always sent.
	AllowClassical bool

	// StallWindow is how long the server may stay silent after the
	// ClientHello before the attempt is declared stalled. Zero means four
	// times the connect round trip, at least 250 ms and at most 3 s.
	// Negative disables stall detection: one attempt, as crypto/tls.
	StallWindow time.Duration

	// MaxAttempts bounds the attempts of one dial. Zero means one per
	// step of the ladder.
	MaxAttempts int
}

// Dial is DialContext with context.Background.
func (d *Dialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

func (d *Dialer) netDialer() *net.Dialer {
	if d.NetDialer != nil {
		return d.NetDialer
	}
	return new(net.Dialer)
}

func (d *Dialer) cache() *pmtu.Cache {
	if d.Cache != nil {
		return d.Cache
	}
	return pmtu.DefaultCache
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

// rungs returns the hello rungs this dial may use: each strictly smaller
// than the one before (with TLS 1.2 only, "classical" is no smaller than
// "pq" and would be a wasted attempt).
func (d *Dialer) rungs(o fingerprint.Options) ([]fingerprint.Rung, error) {
	var rungs []fingerprint.Rung
	prev := math.MaxInt
	for _, r := range fingerprint.Ladder(d.AllowClassical) {
		n, err := r.RecordSize(o)
		if err != nil {
			return nil, err
		}
		if n < prev {
			rungs = append(rungs, r)
			prev = n
		}
	}
	return rungs, nil
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
	s := &session{
		network: network,
		addr:    addr,
		cache:   d.cache(),
		key:     cacheKey(network, addr),
		traces:  collectTraces(d.Trace, ctx),
		log:     loggerOr(d.Logger),
		start:   time.Now(),
	}
	maxAttempts := d.MaxAttempts
	if d.StallWindow < 0 {
		maxAttempts = 1
	}
	s.lad = newLadder(defaultMTUs, 1, maxAttempts)
	if err := checkNetwork(network); err != nil {
		return nil, s.failed(err)
	}
	nd := d.netDialer()
	if nd.Timeout != 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, nd.Timeout)
		defer cancel()
	}
	cfg, err := d.config(addr)
	if err != nil {
		return nil, s.failed(err)
	}
	opts := fingerprint.OptionsFrom(cfg, cfg.ServerName)
	rungs, err := d.rungs(opts)
	if err != nil {
		return nil, s.failed(err)
	}
	for _, r := range rungs {
		s.rungNames = append(s.rungNames, r.Name)
		s.rungPQ = append(s.rungPQ, r.SendsPostQuantum(opts))
	}
	s.lad = newLadder(defaultMTUs, len(rungs), maxAttempts)
	ucfg := utlsconv.Config(cfg)
	if err := s.prepare(ctx); err != nil {
		return nil, s.failed(err)
	}

	var last error
	op := func() (*Conn, error) {
		st, ok := s.begin(ctx)
		if !ok {
			if last == nil {
				last = ctx.Err()
			}
			return nil, backoff.Permanent(last)
		}
		c, err := d.attempt(ctx, s, nd, rungs[st.rung], st, ucfg.Clone(), opts)
		if err == nil {
			s.succeeded(st)
			c.report = s.report
			return c, nil
		}
		last = err
		if !errors.Is(err, ErrStalled) {
			return nil, backoff.Permanent(err)
		}
		more, werr := s.stalled(ctx)
		if werr != nil {
			return nil, backoff.Permanent(werr)
		}
		if !more {
			return nil, backoff.Permanent(err)
		}
		return nil, err
	}
	c, err := backoff.RetryNotifyWithData(op, pacing(ctx), nil)
	if err != nil {
		return nil, s.failed(err)
	}
	return c, nil
}

// attempt makes one connection at st and runs the handshake, watching for a
// stall.
func (d *Dialer) attempt(ctx context.Context, s *session, nd *net.Dialer, rung fingerprint.Rung, st step, ucfg *utls.Config, opts fingerprint.Options) (*Conn, error) {
	t0 := time.Now()
	a := Attempt{MTU: st.mtu, Rung: rung.Name}
	hello, err := fingerprint.Build(rung, ucfg, opts)
	if err != nil {
		a.Outcome, a.Err = OutcomeError, err
		s.record(a)
		return nil, err
	}
	a.HelloSize = hello.RecordSize
	s.attemptStart(st, a.HelloSize)

	raw, rtt, err := connect(ctx, nd, s.network, s.addr, st.mtu)
	if err != nil {
		a.Duration = time.Since(t0)
		a.Outcome, a.Err = outcomeOf(ctx, err), err
		s.record(a)
		return nil, err
	}
	if st.mtu > 0 {
		a.MSS = pmtu.MSSForMTU(st.mtu, remoteIsIPv6(raw))
	}
	a.ConnectRTT = rtt
	a.StallWindow = stallWindow(d.StallWindow, rtt)

	cc := &countingConn{Conn: raw}
	hello.Conn.SetUnderlyingConn(cc)
	hctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var w *watchdog
	if d.StallWindow >= 0 {
		w = watch(cc, a.StallWindow, func(silent time.Duration) {
			serr := &StallError{Addr: s.addr, MSS: a.MSS, Hello: a.HelloSize, Elapsed: silent, Window: a.StallWindow}
			s.traces.stall(StallInfo{Addr: s.addr, Attempt: s.lad.attempts, Elapsed: silent,
				Window: a.StallWindow, BytesReceived: cc.read.Load()})
			cancel(serr)
		})
	}
	err = hello.Conn.HandshakeContext(hctx)
	w.stop()
	a.Duration = time.Since(t0)
	if err != nil {
		raw.Close()
		var serr *StallError
		if errors.As(context.Cause(hctx), &serr) && ctx.Err() == nil {
			err = serr
			a.Outcome = OutcomeStall
		} else {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			a.Outcome = outcomeOf(ctx, err)
		}
		a.Err = err
		s.record(a)
		return nil, err
	}
	a.Outcome = OutcomeOK
	s.record(a)
	return &Conn{uc: hello.Conn, raw: raw}, nil
}

func outcomeOf(ctx context.Context, err error) Outcome {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return OutcomeCanceled
	}
	return OutcomeError
}

// countingConn counts the bytes the server has sent, so a watchdog can tell
// a silent server from a slow handshake.
type countingConn struct {
	net.Conn
	read atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Add(int64(n))
	return n, err
}

// watchdog fires when a countingConn receives nothing for a whole window.
// Progress restarts the window, so a slow handshake that is moving is
// never cut; a server that went silent mid-flight (a black-holed tail of
// its certificate flight) is.
type watchdog struct {
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func watch(c *countingConn, window time.Duration, fire func(silent time.Duration)) *watchdog {
	w := &watchdog{}
	last := c.read.Load()
	since := time.Now()
	var check func()
	check = func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.stopped {
			return
		}
		if n := c.read.Load(); n != last {
			last, since = n, time.Now()
			w.t.Reset(window)
			return
		}
		w.stopped = true
		fire(time.Since(since))
	}
	w.mu.Lock()
	w.t = time.AfterFunc(window, check)
	w.mu.Unlock()
	return w
}

// stop disarms the watchdog; after it returns, fire is not running and will
// not run. Safe on nil.
func (w *watchdog) stop() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.t.Stop()
}
