package tlswatch

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/fitshake/fitshake/internal/tcppoll"
)

// Watcher watches the TLS handshakes of the listeners it wraps and keeps,
// per client prefix, what became of them. The zero value is ready to use;
// set the fields before the first Wrap and leave them alone after. It is
// safe to call Watcher's methods concurrently.
type Watcher struct {
	// IPv4Bits and IPv6Bits are the lengths of the client prefixes
	// handshakes are counted by; 0 means 24 and 48.
	IPv4Bits, IPv6Bits int
	// Window is how far back the counts go; 0 means 10 minutes.
	Window time.Duration
	// MaxPrefixes bounds the prefixes counted apart; 0 means 1024. The
	// handshakes of the others are counted together (Status.Other), and
	// a prefix whose window emptied makes room for a new one.
	MaxPrefixes int
	// FailingAfter is how many failed handshakes in the window, with a
	// completion rate under 90%, make a prefix failing (a log line, a
	// Trace.Prefix call); 0 means 3.
	FailingAfter int
	// StallAfter is how long a handshake may take before it is judged on
	// what the kernel shows then, its connection left open (the TLS
	// stack's own timeout may be much longer); 0 means 5 seconds, a
	// negative value waits for the connection's end. A handshake that
	// completes later is not counted again.
	StallAfter time.Duration
	// Logger gets a line when a prefix starts failing and when it
	// recovers, and when the self-fix changes; nil means slog.Default().
	Logger *slog.Logger
	// Trace, if not nil, is called on each judged connection and on each
	// change of a prefix's state.
	Trace *Trace
	// Clamp, if not nil, is the self-fix: it is told the prefixes Policy
	// decides to clamp each time they change.
	Clamp Clamper
	// Policy decides what Clamp is told.
	Policy Policy

	// now is time.Now, for tests.
	now func() time.Time

	once  sync.Once
	polls tcppoll.Poller

	mu      sync.Mutex
	stats   table
	clamps  clamps
	expiry  *time.Timer // fires when the next clamp expires
	clampMu sync.Mutex  // serializes calls to Clamp
	clampN  uint64      // generation of the clamped set, under mu
	clampAt uint64      // the generation Clamp was last told, under clampMu
	fixers  []fixer     // the machinery of Listen's listeners, under mu (changed under clampMu too)
}

// pollGap and pollBudget bound the stall checks: at most 100 wakes and
// 3200 TCP_INFO reads a second however many handshakes wait (each
// connection is checked once, StallAfter after its accept).
const (
	pollGap    = 10 * time.Millisecond
	pollBudget = 32
)

func (w *Watcher) init() {
	w.once.Do(func() {
		w.polls = tcppoll.Poller{Gap: pollGap, Budget: pollBudget}
		w.stats.init(w.bits(), w.window(), w.maxPrefixes())
		w.clamps.p = w.Policy
		if w.now == nil {
			w.now = time.Now
		}
	})
}

func (w *Watcher) window() time.Duration { return cmpOr(w.Window, 10*time.Minute) }
func (w *Watcher) maxPrefixes() int      { return cmpOr(w.MaxPrefixes, 1024) }
func (w *Watcher) failingAfter() int     { return cmpOr(w.FailingAfter, 3) }
func (w *Watcher) bits() [2]int          { return [2]int{cmpOr(w.IPv4Bits, 24), cmpOr(w.IPv6Bits, 48)} }

func (w *Watcher) stallAfter() time.Duration {
	if w.StallAfter < 0 {
		return 0
	}
	return cmpOr(w.StallAfter, 5*time.Second)
}

func (w *Watcher) logger() *slog.Logger {
	if w.Logger != nil {
		return w.Logger
	}
	return slog.Default()
}

// Wrap returns a listener whose Accept returns ln's connections under
// watch. Put it under the TLS stack: tls.NewListener(w.Wrap(ln), cfg),
// srv.ServeTLS(w.Wrap(ln), …), grpcServer.Serve(w.Wrap(ln)). The
// connections keep ln's own (pmtu.ReadTCPInfo and the like reach them
// through NetConn). Wrap only listeners whose connections speak TLS from
// their first byte: on any other, every connection is a tls-error.
func (w *Watcher) Wrap(ln net.Listener) net.Listener {
	w.init()
	return &listener{Listener: ln, w: w}
}

type listener struct {
	net.Listener
	w *Watcher
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	return l.w.watch(c), nil
}

// watch puts c under watch.
func (w *Watcher) watch(c net.Conn) net.Conn {
	wc := &conn{Conn: c, w: w, accepted: time.Now()}
	if d := w.stallAfter(); d > 0 {
		w.polls.Set(wc, wc.accepted.Add(d))
	}
	return wc
}

// Pending returns how many connections wait for their verdict.
func (w *Watcher) Pending() int {
	w.init()
	return w.polls.Len()
}

// record counts one verdict and tells whoever listens.
func (w *Watcher) record(addr net.Addr, o observation) {
	class, ev := classify(o)
	ap := addrPort(addr)
	now := w.now()
	w.mu.Lock()
	// Completed under the self-fix's clamp: the clamp's success, not the
	// path's.
	fixed := class == Healthy && w.clamps.under(w.stats.prefixOf(ap.Addr()), ev.AdvMSS)
	res := w.stats.add(ap, class, ev, now, w.failingAfter(), fixed)
	var clampChanged bool
	if res.tracked && w.selfFixing() {
		clampChanged = w.clamps.observe(res.prefix, class, ev.AdvMSS, now)
	} else {
		clampChanged = w.clamps.expire(now)
	}
	if clampChanged {
		w.clampN++
	}
	w.mu.Unlock()

	info := HandshakeInfo{Addr: ap, Prefix: res.prefix, Class: class, Recovered: res.recovered, Evidence: ev}
	if class == Healthy {
		info.Duration = ev.Elapsed
	}
	if t := w.Trace; t != nil && t.Handshake != nil {
		t.Handshake(info)
	}
	for _, ch := range res.changes {
		w.prefixChanged(ch)
	}
	if clampChanged {
		w.applyClamps()
	}
}

// prefixChanged logs and traces a prefix that started failing or
// recovered.
func (w *Watcher) prefixChanged(p PrefixInfo) {
	if p.Failing {
		w.logger().LogAttrs(context.Background(), slog.LevelWarn, "tlswatch: prefix failing",
			slog.String("prefix", p.Prefix.String()), slog.String("class", string(p.Class)),
			slog.Int("handshakes", p.Handshakes), slog.Int("completed", p.Completed), slog.Int("failed", p.Failed),
			slog.String("evidence", p.Evidence))
	} else {
		w.logger().LogAttrs(context.Background(), slog.LevelInfo, "tlswatch: prefix recovered",
			slog.String("prefix", p.Prefix.String()),
			slog.Int("handshakes", p.Handshakes), slog.Int("completed", p.Completed), slog.Int("failed", p.Failed))
	}
	if t := w.Trace; t != nil && t.Prefix != nil {
		t.Prefix(p)
	}
}

// applyClamps tells Clamp the clamped set, if it changed since Clamp was
// last told, and arms the timer of the next expiry. Calls to Clamp are
// serialized by clampMu, so that an older set never overwrites a newer
// one; the Trace hook runs after it is released.
func (w *Watcher) applyClamps() {
	info, ok := w.tellClamp()
	if !ok {
		return
	}
	attrs := []slog.Attr{slog.Any("prefixes", info.Prefixes), slog.Any("mss", clampMSSes(info))}
	switch {
	case info.Err != nil:
		w.logger().LogAttrs(context.Background(), slog.LevelError, "tlswatch: self-fix failed", append(attrs, slog.Any("err", info.Err))...)
	case w.selfFixingNow():
		w.logger().LogAttrs(context.Background(), slog.LevelInfo, "tlswatch: self-fix clamps", attrs...)
	}
	if t := w.Trace; t != nil && t.Clamp != nil {
		t.Clamp(info)
	}
}

// tellClamp tells Clamp the newest clamped set, unless it was told it
// already; ok reports that it was told.
func (w *Watcher) tellClamp() (info ClampInfo, ok bool) {
	w.clampMu.Lock()
	defer w.clampMu.Unlock()
	w.mu.Lock()
	gen, set, m := w.clampN, w.clamps.clamped(), w.clamps.clampMap()
	w.armExpiry()
	w.mu.Unlock()
	if gen == w.clampAt {
		return info, false
	}
	w.clampAt = gen
	info = ClampInfo{Prefixes: set, MSS: w.Policy.ClampMSS(), Clamps: m}
	info.Err = w.setClamped(set, m)
	if info.Err != nil {
		w.clampAt = 0 // offer it again at the next change
	}
	return info, true
}

// armExpiry sets the timer to the next clamp's expiry. Under w.mu.
func (w *Watcher) armExpiry() {
	at := w.clamps.next()
	if at.IsZero() {
		return
	}
	d := at.Sub(w.now())
	if w.expiry == nil {
		w.expiry = time.AfterFunc(d, w.expire)
		return
	}
	w.expiry.Reset(d)
}

// expire un-clamps what expired with no connection to trigger it.
func (w *Watcher) expire() {
	w.mu.Lock()
	changed := w.clamps.expire(w.now())
	if changed {
		w.clampN++
	}
	w.mu.Unlock()
	if changed {
		w.applyClamps()
	}
}

// Clamped returns the prefixes the self-fix clamps now, sorted.
func (w *Watcher) Clamped() []netip.Prefix {
	w.init()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.clamps.clamped()
}

// addrPort returns the client's address, IPv4-mapped IPv6 unmapped.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		if a != nil {
			ap, _ = netip.ParseAddrPort(a.String())
		}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
