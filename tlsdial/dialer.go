package tlsdial

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"math"
	"net"
	"slices"
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

	// TimerOnly disables reading TCP_INFO: a stall is then declared by the
	// stall window alone, as on systems without TCP_INFO. False means
	// TCP_INFO is polled every millisecond until the first reply, which
	// detects a black hole within a round trip or two and races a clamped
	// attempt when the evidence is ambiguous.
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
	s := newSession(ctx, network, addr, d.Cache, d.Trace, d.Logger)
	maxAttempts := d.MaxAttempts
	if d.StallWindow < 0 {
		maxAttempts = 1
	}
	if err := checkNetwork(network); err != nil {
		return nil, s.failed(err)
	}
	nd := netDialerOr(d.NetDialer)
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
	mtus, hmtu := ladderMTUs()
	s.lad = newLadder(mtus, hmtu, len(rungs), maxAttempts)
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
		c, err := d.round(ctx, s, nd, rungs, st, ucfg, opts)
		if err == nil {
			s.succeeded(c.step)
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

// errSuperseded ends an attempt that lost the race to a parallel one.
var errSuperseded = errors.New("tlsdial: a parallel attempt completed first")

// run is one attempt of a round: a connection and its handshake, running
// in its own goroutine while the round watches it.
type run struct {
	st     step
	a      Attempt
	hello  *fingerprint.Hello
	ctx    context.Context
	cancel context.CancelCauseFunc
	stall  *StallError // set by the round when it declares the stall

	mu  sync.Mutex // guards what the run's goroutine sets once connected
	raw net.Conn
	cc  *countingConn
	mon *monitor
}

type runResult struct {
	r   *run
	err error
}

// round runs the attempt at st, and at most one hedge beside it, until one
// completes the handshake (returned), all stall (an error matching
// ErrStalled) or one fails otherwise (that error, the others closed).
func (d *Dialer) round(ctx context.Context, s *session, nd *net.Dialer, rungs []fingerprint.Rung, st step, ucfg *utls.Config, opts fingerprint.Options) (*Conn, error) {
	results := make(chan runResult, 2)
	var live []*run
	start := func(st step, hedge bool) error {
		r := &run{st: st, a: Attempt{MTU: st.mtu, Rung: rungs[st.rung].Name, Hedge: hedge}}
		hello, err := fingerprint.Build(rungs[st.rung], ucfg.Clone(), opts)
		if err != nil {
			r.a.Outcome, r.a.Err = OutcomeError, err
			s.record(r.a)
			return err
		}
		r.hello, r.a.HelloSize = hello, hello.RecordSize
		r.ctx, r.cancel = context.WithCancelCause(ctx)
		s.attemptStart(st, r.a.HelloSize, hedge)
		live = append(live, r)
		go d.runAttempt(r, s, nd, results)
		return nil
	}
	// finish records a finished run and returns its error, classified.
	finish := func(res runResult) error {
		r, err := res.r, res.err
		r.cancel(nil)
		r.mu.Lock()
		if r.mon != nil {
			r.a.Diagnosis = r.mon.diagnosis()
		}
		r.mu.Unlock()
		switch cause := context.Cause(r.ctx); {
		case err == nil:
			r.a.Outcome = OutcomeOK
		case ctx.Err() != nil:
			err = ctx.Err()
			r.a.Outcome = OutcomeCanceled
		case r.stall != nil:
			err = r.stall
			r.a.Outcome = OutcomeStall
		case cause == errSuperseded:
			err = errSuperseded
			r.a.Outcome = OutcomeSuperseded
		default:
			r.a.Outcome = outcomeOf(ctx, err)
		}
		if err != nil {
			r.a.Err = err
		}
		if r.a.Outcome == OutcomeStall && s.report.Diagnosis.Class == pmtu.ClassUnknown {
			s.report.Diagnosis = r.a.Diagnosis
		}
		s.record(r.a)
		return err
	}
	// closeLive ends the runs still going with cause and records them.
	closeLive := func(cause error) {
		for _, r := range live {
			r.abandon(cause)
		}
		for range live {
			finish(<-results)
		}
		live = nil
	}

	if err := start(st, false); err != nil {
		return nil, err
	}
	hedged := false
	var lastStall error
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for len(live) > 0 {
		select {
		case res := <-results:
			live = slices.DeleteFunc(live, func(r *run) bool { return r == res.r })
			stalled := res.err != nil && res.r.stall != nil && ctx.Err() == nil
			if !stalled {
				// Done either way: the others are recorded first, so that
				// the deciding attempt is the report's last.
				closeLive(errSuperseded)
			}
			err := finish(res)
			if err == nil {
				r := res.r
				return &Conn{uc: r.hello.Conn, raw: r.raw, step: r.st}, nil
			}
			if !stalled {
				return nil, err
			}
			lastStall = err
		case now := <-tick.C:
			for _, r := range live {
				if r.stall != nil {
					continue
				}
				switch r.observe(now) {
				case actStall:
					r.declareStall(s, now)
				case actHedge:
					if hedged {
						continue
					}
					if hst, ok := s.lad.hedge(); ok {
						hedged = true
						if err := start(hst, true); err != nil {
							closeLive(errSuperseded)
							return nil, err
						}
					}
				}
			}
		}
	}
	return nil, lastStall
}

// observe asks the run's monitor what to do now; a run still connecting
// waits.
func (r *run) observe(now time.Time) action {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mon == nil {
		return actWait
	}
	var ti pmtu.TCPInfo
	if r.mon.info {
		var err error
		if ti, err = pmtu.ReadTCPInfo(r.raw); err != nil {
			return actWait // closed under us: the result is on its way
		}
	}
	return r.mon.observe(now, ti, uint64(r.cc.read.Load()))
}

// declareStall closes the run as stalled, with its diagnosis.
func (r *run) declareStall(s *session, now time.Time) {
	r.mu.Lock()
	m := r.mon
	r.mu.Unlock()
	r.stall = &StallError{
		Addr: s.addr, MSS: r.a.MSS, Hello: r.a.HelloSize,
		Elapsed: now.Sub(m.start), Window: m.window, Diagnosis: m.diagnosis(),
	}
	s.traces.stall(StallInfo{Addr: s.addr, Attempt: len(s.report.Attempts) + 1,
		Elapsed: r.stall.Elapsed, Window: m.window, Diagnosis: r.stall.Diagnosis})
	r.abandon(r.stall)
}

// abandon ends the run with cause, resetting its connection: see reset.
func (r *run) abandon(cause error) {
	r.mu.Lock()
	if r.raw != nil {
		reset(r.raw)
	}
	r.mu.Unlock()
	r.cancel(cause)
}

// runAttempt connects and runs the handshake of r, then reports on results.
func (d *Dialer) runAttempt(r *run, s *session, nd *net.Dialer, results chan<- runResult) {
	t0 := time.Now()
	raw, rtt, err := connect(r.ctx, nd, s.network, s.addr, r.st.mtu)
	if err != nil {
		r.a.Duration = time.Since(t0)
		results <- runResult{r, err}
		return
	}
	var base pmtu.TCPInfo
	info := false
	if !d.TimerOnly && d.StallWindow >= 0 {
		base, err = pmtu.ReadTCPInfo(raw)
		info = err == nil
	}
	cc := &countingConn{Conn: raw}
	r.mu.Lock()
	r.raw, r.cc = raw, cc
	if r.st.mtu > 0 {
		r.a.MSS = pmtu.MSSForMTU(r.st.mtu, remoteIsIPv6(raw))
	}
	r.a.ConnectRTT = rtt
	r.a.StallWindow = stallWindow(d.StallWindow, rtt)
	if d.StallWindow >= 0 {
		r.mon = newMonitor(r.a.HelloSize, time.Now(), rtt, r.a.StallWindow, base, info)
	}
	r.mu.Unlock()

	r.hello.Conn.SetUnderlyingConn(cc)
	err = r.hello.Conn.HandshakeContext(r.ctx)
	r.a.Duration = time.Since(t0)
	if err != nil {
		raw.Close()
	}
	results <- runResult{r, err}
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
