package tlsdial

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/fitshake/fitshake/pmtu"
)

// session is the state of one dial across its attempts, shared by Dialer
// and TCPDialer: where on the ladder it is, what it reports, and its part in
// the destination's discovery.
type session struct {
	network, addr string
	cache         *pmtu.Cache
	key           pmtu.Key
	traces        traces
	log           *slog.Logger
	lad           *ladder
	rungNames     []string // hello rung names by index; nil for TCPDialer
	rungPQ        []bool
	start         time.Time
	report        Report
	flight        *flight // discovery this dial leads, if any
}

// newSession starts the session of one dial. A nil cache means
// pmtu.DefaultCache; a nil logger discards.
func newSession(ctx context.Context, network, addr string, cache *pmtu.Cache, t *Trace, l *slog.Logger) *session {
	if cache == nil {
		cache = pmtu.DefaultCache
	}
	if l == nil {
		l = discard
	}
	return &session{
		network: network,
		addr:    addr,
		cache:   cache,
		key:     pmtu.Key{Remote: network + "|" + addr},
		traces:  collectTraces(t, ctx),
		log:     l,
		start:   time.Now(),
	}
}

// netDialerOr returns nd, or the zero net.Dialer for nil.
func netDialerOr(nd *net.Dialer) *net.Dialer {
	if nd != nil {
		return nd
	}
	return new(net.Dialer)
}

func (s *session) flightKey() flightKey { return flightKey{cache: s.cache, key: s.key} }

// stepOf maps a remembered entry onto this dial's ladder.
func (s *session) stepOf(e pmtu.Entry) step {
	st := step{mtu: e.MTU}
	for i, n := range s.rungNames {
		if n == e.Rung {
			st.rung = i
		}
	}
	return st
}

// prepare positions the ladder before the first attempt: at the remembered
// step if there is one; otherwise this dial leads the destination's
// discovery, or waits for the one in progress and then reads its result.
func (s *session) prepare(ctx context.Context) error {
	e, ok := s.cache.Load(s.key)
	if !ok {
		var err error
		if e, ok, err = s.joinDiscovery(ctx); err != nil {
			return err
		}
	}
	if ok && s.lad.startAt(s.stepOf(e)) {
		s.report.FromCache = true
	}
	return nil
}

// stalled moves down the ladder after a stall and reports whether another
// attempt may follow. A dial that is not leading the discovery waits for
// the leader and joins its result.
func (s *session) stalled(ctx context.Context) (bool, error) {
	more := s.lad.stalled()
	if s.flight != nil {
		return more, nil
	}
	e, ok, err := s.joinDiscovery(ctx)
	if err != nil {
		return false, err
	}
	if ok {
		s.lad.skipTo(s.stepOf(e))
	}
	return more || s.lad.pos < len(s.lad.steps), nil
}

// joinDiscovery makes this dial lead the destination's discovery, or waits
// for the one in progress and returns what it remembered, if anything.
func (s *session) joinDiscovery(ctx context.Context) (pmtu.Entry, bool, error) {
	f, leader := joinFlight(s.flightKey())
	if leader {
		s.flight = f
		return pmtu.Entry{}, false, nil
	}
	if err := f.wait(ctx); err != nil {
		return pmtu.Entry{}, false, err
	}
	e, ok := s.cache.Load(s.key)
	return e, ok, nil
}

// begin starts the next attempt, if the ladder allows one now.
func (s *session) begin(ctx context.Context) (step, bool) {
	dl, _ := ctx.Deadline()
	return s.lad.begin(time.Now(), dl)
}

func (s *session) attemptStart(st step, helloSize int, hedge bool) {
	s.traces.attemptStart(AttemptStartInfo{
		Addr:      s.addr,
		Attempt:   s.lad.attempts,
		MTU:       st.mtu,
		HelloSize: helloSize,
		Rung:      s.rungName(st.rung),
		FromCache: s.report.FromCache && len(s.report.Attempts) == 0,
		Hedge:     hedge,
	})
}

func (s *session) rungName(i int) string {
	if i < len(s.rungNames) {
		return s.rungNames[i]
	}
	return ""
}

// record adds a finished attempt to the report and tells the traces.
func (s *session) record(a Attempt) {
	s.report.Attempts = append(s.report.Attempts, a)
	s.traces.attemptDone(AttemptDoneInfo{Addr: s.addr, Attempt: a})
	if a.Outcome == OutcomeStall {
		s.log.Info("tlsdial: handshake stalled",
			"addr", s.addr, "attempt", len(s.report.Attempts), "mss", a.MSS,
			"hello", a.HelloSize, "window", a.StallWindow)
	} else {
		s.log.Debug("tlsdial: attempt done", "addr", s.addr,
			"attempt", len(s.report.Attempts), "mss", a.MSS, "hello", a.HelloSize,
			"outcome", a.Outcome, "err", a.Err)
	}
}

// succeeded completes the report after attempt a at st worked, remembers a
// fallback, and ends any discovery this dial led.
func (s *session) succeeded(st step) {
	a := s.report.Attempts[len(s.report.Attempts)-1]
	s.report.MTU, s.report.MSS = a.MTU, a.MSS
	s.report.HelloSize, s.report.Rung = a.HelloSize, a.Rung
	s.report.SecurityReduced = len(s.rungPQ) > st.rung && s.rungPQ[0] && !s.rungPQ[st.rung]
	s.report.Duration = time.Since(s.start)
	if len(s.report.Attempts) > 1 {
		// Only fallbacks (a stall, or a parallel attempt that won) are
		// remembered: a healthy path needs no entry, and not refreshing
		// on use lets a repaired path be noticed after the TTL.
		s.cache.Store(s.key, pmtu.Entry{MTU: st.mtu, Rung: s.rungName(st.rung)})
		s.log.Info("tlsdial: recovered from stall", "addr", s.addr,
			"mss", a.MSS, "hello", a.HelloSize, "attempts", len(s.report.Attempts))
	}
	s.flight.end()
	s.traces.done(DoneInfo{Addr: s.addr, Report: s.report})
}

// failed wraps err in a DialError carrying the report.
func (s *session) failed(err error) error {
	s.report.Duration = time.Since(s.start)
	s.flight.end()
	de := &DialError{Addr: s.addr, Report: s.report, Err: err}
	s.traces.done(DoneInfo{Addr: s.addr, Report: s.report, Err: de})
	return de
}

// pacing spaces redials. A stall has already waited out its window, so the
// pause is short: it only spreads the redials of many dials that stalled
// together. The ladder, not the backoff, bounds the attempts.
func pacing(ctx context.Context) backoff.BackOffContext {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(200*time.Microsecond),
		backoff.WithMultiplier(2),
		backoff.WithMaxInterval(50*time.Millisecond),
		backoff.WithMaxElapsedTime(0),
	)
	return backoff.WithContext(b, ctx)
}

// remoteIsIPv6 reports whether c's peer is an IPv6 address, which decides
// the MSS a path MTU maps to.
func remoteIsIPv6(c net.Conn) bool {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.To4() == nil
	}
	return false
}

// connectRTT is the round trip seen while connecting: the kernel's SYN RTT
// where TCP_INFO is readable, else the measured connect time (an upper
// bound: it includes name resolution).
func connectRTT(c net.Conn, took time.Duration) time.Duration {
	if ti, err := pmtu.ReadTCPInfo(c); err == nil && ti.RTT > 0 {
		return ti.RTT
	}
	return took
}

// connect dials one TCP connection with the MSS clamped for mtu.
func connect(ctx context.Context, nd *net.Dialer, network, addr string, mtu int) (net.Conn, time.Duration, error) {
	d, err := pmtu.DialerWithMTU(nd, mtu)
	if err != nil {
		return nil, 0, err
	}
	t0 := time.Now()
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, 0, err
	}
	return c, connectRTT(c, time.Since(t0)), nil
}

func checkNetwork(network string) error {
	switch network {
	case "tcp", "tcp4", "tcp6":
		return nil
	}
	return errors.New("unsupported network " + network + ": want tcp, tcp4 or tcp6")
}

var discard = slog.New(slog.DiscardHandler)

// reset makes the next Close of c send an RST instead of a FIN. An
// abandoned attempt's FIN would queue behind its lost bytes, keeping the
// server's side open (and retransmitting) until it times out; a server
// that serves one connection at a time (openssl s_server) would then stay
// stuck on it, and every redial would stall behind it.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
}
