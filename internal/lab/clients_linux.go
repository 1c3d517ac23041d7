package lab

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fitshake/fitshake/fingerprint"
	"github.com/fitshake/fitshake/internal/utlsconv"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlsdial"
	"golang.org/x/sys/unix"
)

// The package's own client functions, for Lab.Dial.
const (
	// StockTLS is crypto/tls's tls.Dialer, as a user would write it.
	StockTLS = "stock-tls"
	// StockTLSNoMLKEM is StockTLS in a process run with
	// GODEBUG=tlsmlkem=0: crypto/tls offers no post-quantum group and
	// sends a ~300-byte hello, as does a user who switched post-quantum
	// off to get past a middlebox.
	StockTLSNoMLKEM = "stock-tls-nomlkem"
	// FitshakeDialer is tlsdial.Dialer.
	FitshakeDialer = "fitshake-dialer"
	// FitshakeDialerUTLS is FitshakeDialer in a process run with
	// GODEBUG=tlsmlkem=0: crypto/tls would send no post-quantum share, so
	// the Dialer builds its full hello with utls (fingerprint.Build), a
	// few dozen bytes smaller than crypto/tls's.
	FitshakeDialerUTLS = "fitshake-dialer-utls"
	// FitshakeTCP is tlsdial.TCPDialer under crypto/tls (tls.Client on
	// the returned connection, then HandshakeContext).
	FitshakeTCP = "fitshake-tcpdialer"
	// FitshakeHTTP is net/http over tlsdial.TCPDialer
	// (ForceAttemptHTTP2): GET / and read the body.
	FitshakeHTTP = "fitshake-http"
	// FingerprintRung is one ClientHello of package fingerprint alone:
	// the rung of fingerprint.Ladder named DialArgs.Rung, built with
	// fingerprint.Build and sent by utls over a plain net.Dialer (no
	// clamp, no retry, no tlsdial), to see what a server makes of that
	// hello. Its run's Report has only Rung and HelloSize.
	FingerprintRung = "fingerprint-rung"
)

// DialArgs are the arguments of the package's clients.
type DialArgs struct {
	Addr       string // host:port, e.g. Lab.Addr(IPv4, PortNginxSmall)
	Path       string // FitshakeHTTP's URL path; "" means "/"
	ServerName string // "" means ServerName
	CAFile     string // the lab's CA (PKI().CAFile); verification is always on
	// Timeout bounds each dial (HTTP: the whole request); zero means 10 s.
	Timeout time.Duration
	// ClearDF sets IP_MTU_DISCOVER / IPV6_MTU_DISCOVER to "don't" with
	// ClearDF as the net.Dialer's Control (fitshake's clamp runs first).
	// Use Config().ClearDF().
	ClearDF bool
	// Runs is how many dials to make, one after another, each with a fresh
	// dialer and a fresh pmtu.Cache (so each is cold) unless ShareCache.
	// Zero means 1.
	Runs int
	// ShareCache makes the runs use one dialer with one pmtu.Cache, as a
	// long-lived process does: later runs start from what earlier ones
	// learned (a clamp, a slow server's silence) and, while they overlap
	// (Parallel), hear each other's news. FitshakeHTTP still makes a new
	// http.Transport per run, so that every run dials. No run resumes a
	// TLS session (the client keeps no session cache).
	ShareCache bool
	// StoreFile, if set, makes every run use one file-backed cache
	// (pmtu.OpenFileCache of that path, closed before the client process
	// exits) instead of a fresh pmtu.Cache each: the client starts from
	// what earlier processes learned and leaves what it learns for later
	// ones, as a short-lived command with a persisted store does.
	StoreFile string
	// Parallel, once a run has hit Timeout, makes the remaining runs at
	// once rather than one after another (for benchmarks: a client that
	// never completes costs two timeouts, not Runs of them).
	Parallel bool
	// NextProtos is the ALPN offer; nil means h2 and http/1.1.
	NextProtos []string
	// MinVersion is tls.Config.MinVersion; zero means crypto/tls's default.
	// With TLS 1.3 and an IP address as ServerName (no SNI),
	// FitshakeDialerUTLS's post-quantum hello fits one 1448-byte segment:
	// the "nothing acked" black hole rather than "head lost, tail SACKed".
	MinVersion uint16
	// AllowClassical sets tlsdial.Dialer.AllowClassical, so that a test
	// can check that a weaker hello is not used when it is allowed.
	AllowClassical bool
	// Rung names the rung FingerprintRung sends (fingerprint.NamePostQuantum,
	// …); the other clients ignore it.
	Rung string
}

// DialResult is what a client function returns: one DialRun per run.
type DialResult struct {
	Runs []DialRun
}

// DialRun is one dial.
type DialRun struct {
	OK       bool
	Err      string `json:",omitempty"`
	TimedOut bool   `json:",omitempty"` // the dial hit Timeout
	// Elapsed is the time to a completed handshake, from the start of the
	// dial (HTTP: to the TLSHandshakeDone trace event).
	Elapsed time.Duration
	// Total is the time to the end of the run (HTTP: the body read).
	Total   time.Duration
	Version string `json:",omitempty"` // "TLS 1.3"
	// Group is the key exchange's group ("X25519MLKEM768", "X25519").
	Group  string `json:",omitempty"`
	ALPN   string `json:",omitempty"`
	Proto  string `json:",omitempty"` // HTTP response protocol
	Status int    `json:",omitempty"`
	Body   string `json:",omitempty"`
	// HelloRejected: the dial's error matches tlsdial.ErrHelloRejected,
	// fitshake's verdict that a box on the path refuses the ClientHello
	// itself.
	HelloRejected bool `json:",omitempty"`
	// ErrClass is the class (pmtu.Class's String) of the diagnosis in the
	// dial's error: a *tlsdial.HelloError's or *tlsdial.StallError's;
	// empty for other errors.
	ErrClass string `json:",omitempty"`
	// ErrFix is the client-side Fix of a *tlsdial.HelloError in the
	// dial's error; ErrNetworkFix the Fix() of the error's diagnosis (a
	// HelloError's or StallError's): the change to ask of the network.
	ErrFix        string `json:",omitempty"`
	ErrNetworkFix string `json:",omitempty"`
	Report        *Report
}

// Report is a JSON-friendly tlsdial.Report.
type Report struct {
	MSS, MTU, HelloSize int
	Rung                string `json:",omitempty"`
	FromCache           bool
	SecurityReduced     bool
	Duration            time.Duration
	// Class and Diagnosis are Report.Diagnosis's class and explanation:
	// why the dial fell back. Class is "unknown" when nothing stalled or
	// reset, and also when an attempt stalled with nothing acknowledged;
	// Diagnosis is empty only when nothing stalled or reset.
	Class     string
	Diagnosis string `json:",omitempty"`
	// OvertakenBy is the diagnosis's Evidence.OvertakenBy: the MSS of the
	// attempt that got the reply while the diagnosed one waited; 0: none.
	OvertakenBy int `json:",omitempty"`
	// FromNetwork: the first attempt's settings came from the local
	// network's prior (tlsdial.Report.FromNetwork).
	FromNetwork bool `json:",omitempty"`
	Attempts    []Attempt
}

// Attempt is a JSON-friendly tlsdial.Attempt.
type Attempt struct {
	ID                  int
	MTU, MSS, HelloSize int
	Rung                string `json:",omitempty"`
	Outcome             string
	Hedge               bool // started beside the attempts still running
	StallWindow         time.Duration
	Duration            time.Duration
	// Class is the attempt's Diagnosis.Class; OvertakenBy its
	// Evidence.OvertakenBy.
	Class       string
	OvertakenBy int    `json:",omitempty"`
	Err         string `json:",omitempty"`
}

// String formats the report as tlsdial.Report does.
func (r *Report) String() string {
	if r == nil {
		return "(no report)"
	}
	var b strings.Builder
	for _, a := range r.Attempts {
		mss := "default"
		if a.MSS > 0 {
			mss = strconv.Itoa(a.MSS)
		}
		fmt.Fprintf(&b, "attempt %d: mss=%s hello=%dB", a.ID, mss, a.HelloSize)
		if a.Hedge {
			b.WriteString(" (in parallel)")
		}
		fmt.Fprintf(&b, " %s after %v", a.Outcome, a.Duration.Round(10*time.Microsecond))
		if a.Outcome == "stall" && a.Class != "unknown" {
			fmt.Fprintf(&b, ": %s", a.Class)
		}
		if a.OvertakenBy > 0 {
			fmt.Fprintf(&b, " (overtaken by mss=%d)", a.OvertakenBy)
		}
		if a.Err != "" && (a.Outcome == "error" || a.Outcome == "canceled" || a.Outcome == "reset") {
			fmt.Fprintf(&b, ": %s", a.Err)
		}
		b.WriteString("; ")
	}
	if r.FromCache {
		b.WriteString("(sizes from memory); ")
	}
	if r.FromNetwork {
		b.WriteString("(sizes from the network's memory); ")
	}
	return strings.TrimSuffix(b.String(), "; ")
}

func toReport(r tlsdial.Report) *Report {
	out := &Report{MSS: r.MSS, MTU: r.MTU, HelloSize: r.HelloSize, Rung: r.Rung,
		FromCache: r.FromCache, FromNetwork: r.FromNetwork, SecurityReduced: r.SecurityReduced, Duration: r.Duration,
		Class: r.Diagnosis.Class.String(), OvertakenBy: r.Diagnosis.Evidence.OvertakenBy}
	for _, a := range r.Attempts {
		at := Attempt{ID: a.ID, MTU: a.MTU, MSS: a.MSS, HelloSize: a.HelloSize, Rung: a.Rung,
			Outcome: a.Outcome.String(), Hedge: a.Hedge, StallWindow: a.StallWindow, Duration: a.Duration,
			Class: a.Diagnosis.Class.String(), OvertakenBy: a.Diagnosis.Evidence.OvertakenBy}
		if a.Err != nil {
			at.Err = a.Err.Error()
		}
		// tlsdial sets Report.Diagnosis at the first stall or reset,
		// whatever its class.
		if a.Outcome == tlsdial.OutcomeStall || a.Outcome == tlsdial.OutcomeReset {
			out.Diagnosis = r.Diagnosis.String()
		}
		out.Attempts = append(out.Attempts, at)
	}
	return out
}

// Dial runs one of the package's clients (StockTLS, StockTLSNoMLKEM,
// FitshakeDialer, FitshakeDialerUTLS, FitshakeTCP, FitshakeHTTP) in the client namespace. A dial that fails
// is not an error: see DialRun.OK and Err.
func (l *Lab) Dial(ctx context.Context, client string, args DialArgs) (DialResult, error) {
	return l.DialFrom(ctx, Client, client, args)
}

// GoHelloSize returns the size in bytes of the ClientHello record that
// crypto/tls sends with cfg: the size TCPDialer carries for StockTLS's
// Config under crypto/tls or net/http. It depends on the toolchain that
// built this binary (the one the lab re-executes), so tests read it rather
// than assume one. cfg needs ServerName or InsecureSkipVerify.
func GoHelloSize(cfg *tls.Config) (int, error) {
	hello, err := fingerprint.StdHello(cfg)
	if err != nil {
		return 0, fmt.Errorf("lab: building crypto/tls's ClientHello: %w", err)
	}
	return len(hello), nil
}

// ClearDF is a net.Dialer.Control that clears DF: IP_MTU_DISCOVER =
// IP_PMTUDISC_DONT on IPv4, IPV6_MTU_DISCOVER = IPV6_PMTUDISC_DONT on IPv6
// (the kernel then fragments; routers may too, on IPv4).
func ClearDF(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if strings.HasSuffix(network, "6") {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DONT)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
		}
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return os.NewSyscallError("setsockopt", serr)
	}
	return nil
}

// clientGODEBUG is the GODEBUG setting a package client's process runs
// with, by client name.
var clientGODEBUG = map[string]string{StockTLSNoMLKEM: "tlsmlkem=0", FitshakeDialerUTLS: "tlsmlkem=0"}

func init() {
	RegisterClient(StockTLS, dialClient(newStock))
	RegisterClient(StockTLSNoMLKEM, dialClient(newStock))
	RegisterClient(FitshakeDialer, dialClient(newFitshake))
	RegisterClient(FitshakeDialerUTLS, dialClient(newFitshake))
	RegisterClient(FitshakeTCP, dialClient(newTCPDialer))
	RegisterClient(FitshakeHTTP, dialClient(newHTTP))
	RegisterClient(FingerprintRung, dialClient(newRung))
}

// A newRun builds a client's dialer from cfg (which the dials must not
// modify), nd and cache, and returns its dial.
type (
	newRun  func(a *DialArgs, cfg *tls.Config, nd *net.Dialer, cache *pmtu.Cache) runFunc
	runFunc func(ctx context.Context) DialRun
)

// dialClient wraps a client into a client function that makes a.Runs
// dials: with one dialer for all of them (ShareCache), or one each.
func dialClient(build newRun) ClientFunc {
	return func(ctx context.Context, raw json.RawMessage) (any, error) {
		var a DialArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		if a.ServerName == "" {
			a.ServerName = ServerName
		}
		if a.Timeout <= 0 {
			a.Timeout = 10 * time.Second
		}
		if a.Runs <= 0 {
			a.Runs = 1
		}
		if a.NextProtos == nil {
			a.NextProtos = []string{"h2", "http/1.1"}
		}
		pem, err := os.ReadFile(a.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", a.CAFile)
		}
		cfg := &tls.Config{RootCAs: pool, ServerName: a.ServerName, NextProtos: a.NextProtos, MinVersion: a.MinVersion}
		var stored *pmtu.Cache
		if a.StoreFile != "" {
			if stored, err = pmtu.OpenFileCache(a.StoreFile, nil); err != nil {
				return nil, err
			}
			defer stored.Close()
		}
		dialer := func() runFunc {
			nd := &net.Dialer{}
			if a.ClearDF {
				nd.Control = ClearDF
			}
			cache := stored
			if cache == nil {
				cache = &pmtu.Cache{}
			}
			return build(&a, cfg, nd, cache)
		}
		var shared runFunc
		if a.ShareCache {
			shared = dialer()
		}
		one := func() DialRun {
			run := shared
			if run == nil {
				run = dialer()
			}
			dctx, cancel := context.WithTimeout(ctx, a.Timeout)
			defer cancel()
			r := run(dctx)
			if !r.OK && dctx.Err() != nil && ctx.Err() == nil {
				r.TimedOut = true
			}
			return r
		}
		res := DialResult{Runs: make([]DialRun, 0, a.Runs)}
		for len(res.Runs) < a.Runs {
			r := one()
			res.Runs = append(res.Runs, r)
			if r.TimedOut && a.Parallel {
				rest := make([]DialRun, a.Runs-len(res.Runs))
				var wg sync.WaitGroup
				for i := range rest {
					wg.Go(func() { rest[i] = one() })
				}
				wg.Wait()
				res.Runs = append(res.Runs, rest...)
			}
			if ctx.Err() != nil {
				break
			}
		}
		return res, nil
	}
}

// done fills r from a completed handshake's state.
func done(r DialRun, cs tls.ConnectionState) DialRun {
	r = negotiated(r, cs)
	r.OK = cs.HandshakeComplete
	return r
}

// negotiated records the handshake's version, ALPN protocol and group in r.
func negotiated(r DialRun, cs tls.ConnectionState) DialRun {
	r.Version, r.ALPN, r.Group = tls.VersionName(cs.Version), cs.NegotiatedProtocol, groupName(cs.CurveID)
	return r
}

// groupName names a key exchange group; "" for none (TLS 1.2 RSA key
// exchange, resumption without one).
func groupName(id tls.CurveID) string {
	if id == 0 {
		return ""
	}
	return id.String()
}

func fail(r DialRun, err error) DialRun {
	r.OK = false
	r.Err = err.Error()
	r.HelloRejected = errors.Is(err, tlsdial.ErrHelloRejected)
	if d, ok := errDiagnosis(err); ok {
		r.ErrClass, r.ErrNetworkFix = d.Class.String(), d.Fix()
	}
	var he *tlsdial.HelloError
	if errors.As(err, &he) {
		r.ErrFix = he.Fix
	}
	return r
}

// errDiagnosis returns the diagnosis err carries: a *tlsdial.HelloError's
// or *tlsdial.StallError's.
func errDiagnosis(err error) (pmtu.Diagnosis, bool) {
	var (
		he *tlsdial.HelloError
		se *tlsdial.StallError
	)
	switch {
	case errors.As(err, &he):
		return he.Diagnosis, true
	case errors.As(err, &se):
		return se.Diagnosis, true
	}
	return pmtu.Diagnosis{}, false
}

func newStock(a *DialArgs, cfg *tls.Config, nd *net.Dialer, _ *pmtu.Cache) runFunc {
	d := &tls.Dialer{NetDialer: nd, Config: cfg} // crypto/tls only reads cfg
	return func(ctx context.Context) DialRun {
		t0 := time.Now()
		c, err := d.DialContext(ctx, "tcp", a.Addr)
		r := DialRun{Elapsed: time.Since(t0)}
		r.Total = r.Elapsed
		if err != nil {
			return fail(r, err)
		}
		defer c.Close()
		return done(r, c.(*tls.Conn).ConnectionState())
	}
}

func newFitshake(a *DialArgs, cfg *tls.Config, nd *net.Dialer, cache *pmtu.Cache) runFunc {
	// It clones cfg per dial; the trace is per dial, on the context.
	d := &tlsdial.Dialer{NetDialer: nd, Config: cfg, Cache: cache, AllowClassical: a.AllowClassical}
	return func(ctx context.Context) DialRun {
		var (
			mu   sync.Mutex
			rep  tlsdial.Report
			have bool
		)
		ctx = tlsdial.WithTrace(ctx, &tlsdial.Trace{Done: func(i tlsdial.DoneInfo) {
			mu.Lock()
			rep, have = i.Report, true
			mu.Unlock()
		}})
		t0 := time.Now()
		c, err := d.DialContext(ctx, "tcp", a.Addr)
		r := DialRun{Elapsed: time.Since(t0)}
		r.Total = r.Elapsed
		if err != nil {
			mu.Lock()
			if have {
				r.Report = toReport(rep)
			}
			mu.Unlock()
			return fail(r, err)
		}
		defer c.Close()
		tc := c.(*tlsdial.Conn)
		r.Report = toReport(tc.Report())
		return done(r, tc.ConnectionState())
	}
}

func newTCPDialer(a *DialArgs, cfg *tls.Config, nd *net.Dialer, cache *pmtu.Cache) runFunc {
	td := &tlsdial.TCPDialer{NetDialer: nd, Cache: cache}
	return func(ctx context.Context) DialRun {
		t0 := time.Now()
		raw, err := td.DialContext(ctx, "tcp", a.Addr)
		if err != nil {
			r := DialRun{Elapsed: time.Since(t0)}
			return fail(r, err)
		}
		defer raw.Close()
		tc := tls.Client(raw, cfg.Clone())
		err = tc.HandshakeContext(ctx)
		r := DialRun{Elapsed: time.Since(t0)}
		r.Total = r.Elapsed
		if c, ok := raw.(*tlsdial.TCPConn); ok {
			r.Report = toReport(c.Report())
		}
		if err != nil {
			return fail(r, err)
		}
		return done(r, tc.ConnectionState())
	}
}

func newHTTP(a *DialArgs, cfg *tls.Config, nd *net.Dialer, cache *pmtu.Cache) runFunc {
	td := &tlsdial.TCPDialer{NetDialer: nd, Cache: cache}
	return func(ctx context.Context) DialRun {
		var (
			mu   sync.Mutex
			rep  *Report
			hsAt time.Time
			cs   tls.ConnectionState
		)
		// A Transport per run, so that every run dials.
		tr := &http.Transport{DialContext: td.DialContext, ForceAttemptHTTP2: true, TLSClientConfig: cfg.Clone()}
		defer tr.CloseIdleConnections()
		ctx = tlsdial.WithTrace(ctx, &tlsdial.Trace{Done: func(i tlsdial.DoneInfo) {
			mu.Lock()
			rep = toReport(i.Report)
			mu.Unlock()
		}})
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			TLSHandshakeDone: func(s tls.ConnectionState, err error) {
				if err == nil {
					mu.Lock()
					hsAt, cs = time.Now(), s
					mu.Unlock()
				}
			},
		})
		path := a.Path
		if path == "" {
			path = "/"
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+a.Addr+path, nil)
		if err != nil {
			return fail(DialRun{}, err)
		}
		req.Host = a.ServerName
		t0 := time.Now()
		resp, err := (&http.Client{Transport: tr}).Do(req)
		var r DialRun
		if err == nil {
			var body []byte
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			r.Proto, r.Status, r.Body = resp.Proto, resp.StatusCode, string(bytes.TrimSpace(body))
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %s", resp.Status)
			}
		}
		r.Total = time.Since(t0)
		mu.Lock()
		r.Report = rep
		if !hsAt.IsZero() {
			r.Elapsed = hsAt.Sub(t0)
			r = negotiated(r, cs)
		} else {
			r.Elapsed = r.Total
		}
		mu.Unlock()
		if err != nil {
			return fail(r, err)
		}
		r.OK = true
		return r
	}
}

// rungNamed returns the rung of fingerprint.Ladder named name.
func rungNamed(name string) (fingerprint.Rung, error) {
	for _, r := range fingerprint.Ladder(true) {
		if r.Name == name {
			return r, nil
		}
	}
	return fingerprint.Rung{}, fmt.Errorf("lab: fingerprint.Ladder has no rung %q", name)
}

func newRung(a *DialArgs, cfg *tls.Config, nd *net.Dialer, _ *pmtu.Cache) runFunc {
	return func(ctx context.Context) DialRun {
		t0 := time.Now()
		cs, rep, err := handshakeRung(ctx, a, cfg, nd)
		r := DialRun{Elapsed: time.Since(t0), Report: rep}
		r.Total = r.Elapsed
		if err != nil {
			return fail(r, err)
		}
		return done(r, cs)
	}
}

// handshakeRung dials a.Addr and completes a handshake with the hello of
// rung a.Rung, built from cfg.
func handshakeRung(ctx context.Context, a *DialArgs, cfg *tls.Config, nd *net.Dialer) (tls.ConnectionState, *Report, error) {
	rung, err := rungNamed(a.Rung)
	if err != nil {
		return tls.ConnectionState{}, nil, err
	}
	h, err := fingerprint.Build(rung, utlsconv.Config(cfg), fingerprint.OptionsFrom(cfg, cfg.ServerName))
	if err != nil {
		return tls.ConnectionState{}, nil, err
	}
	rep := &Report{Rung: rung.Name, HelloSize: h.RecordSize}
	raw, err := nd.DialContext(ctx, "tcp", a.Addr)
	if err != nil {
		return tls.ConnectionState{}, rep, err
	}
	defer raw.Close()
	h.Conn.SetUnderlyingConn(raw)
	if err := h.Conn.HandshakeContext(ctx); err != nil {
		return tls.ConnectionState{}, rep, err
	}
	defer h.Conn.Close()
	cs := utlsconv.ConnectionState(h.Conn.ConnectionState())
	cs.CurveID = utlsconv.CurveID(h.Conn)
	return cs, rep, nil
}

// ToolResult is the outcome of an external client (curl, openssl
// s_client).
type ToolResult struct {
	OK       bool
	TimedOut bool
	Elapsed  time.Duration
	Output   string // combined output, for messages
	Err      error  // nil when OK
}

// Curl runs curl in the client namespace: GET https://ServerName:port/path
// ("" means "/"), resolved to the server's address in family f, HTTP/2
// offered, the lab's CA, at most bound. OK means HTTP 200. Its ClientHello
// is ~520 bytes (OpenSSL 3.0 offers no post-quantum group and pads the
// hello to 512), so at N ≥ 1280 only the server's flight can break it;
// "--curves ffdhe8192" would make it ~1.3 KB, still under 1400.
func (l *Lab) Curl(ctx context.Context, f Family, port int, path string, bound time.Duration) ToolResult {
	return l.CurlFrom(ctx, Client, f, port, path, bound)
}

// CurlFrom is Curl from the namespace of side s (Client or OtherClient).
func (l *Lab) CurlFrom(ctx context.Context, s Side, f Family, port int, path string, bound time.Duration) ToolResult {
	pki, err := l.PKI()
	if err != nil {
		return ToolResult{Err: err}
	}
	host := l.IP(Server, f).String()
	if f == IPv6 {
		host = "[" + host + "]"
	}
	if path == "" {
		path = "/"
	}
	url := fmt.Sprintf("https://%s:%d%s", ServerName, port, path)
	return l.tool(ctx, s, bound, nil, toolPath("curl"), "-sS", "-o", "/dev/null", "-w", "%{http_version} %{http_code}\n",
		"--http2", "--cacert", pki.CAFile, "--resolve", fmt.Sprintf("%s:%d:%s", ServerName, port, host),
		"--max-time", strconv.FormatFloat(bound.Seconds(), 'f', 3, 64), url)
}

// SClient runs "openssl s_client" in the client namespace against the
// server in family f, verifying against the lab's CA, at most bound, with
// stdin closed (it completes the handshake and quits). OK means
// "CONNECTION ESTABLISHED" and a verified chain.
func (l *Lab) SClient(ctx context.Context, f Family, port int, bound time.Duration) ToolResult {
	return l.SClientFrom(ctx, Client, f, port, bound)
}

// SClientFrom is SClient from the namespace of side s (Client or
// OtherClient).
func (l *Lab) SClientFrom(ctx context.Context, s Side, f Family, port int, bound time.Duration) ToolResult {
	pki, err := l.PKI()
	if err != nil {
		return ToolResult{Err: err}
	}
	return l.tool(ctx, s, bound, []string{"CONNECTION ESTABLISHED", "Verification: OK"}, toolPath("openssl"), "s_client",
		"-connect", l.Addr(f, port), "-servername", ServerName, "-CAfile", pki.CAFile,
		"-verify_return_error", "-brief")
}

func (l *Lab) tool(ctx context.Context, s Side, bound time.Duration, want []string, name string, arg ...string) ToolResult {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	cmd := l.Command(ctx, s, name, arg...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	r := ToolResult{Elapsed: time.Since(t0), Output: strings.TrimSpace(out.String())}
	if ctx.Err() != nil {
		r.TimedOut = true
	}
	if err == nil {
		for _, w := range want {
			if !strings.Contains(r.Output, w) {
				err = fmt.Errorf("output lacks %q", w)
			}
		}
	}
	if err == nil && strings.HasSuffix(name, "curl") && !strings.HasSuffix(r.Output, " 200") {
		err = fmt.Errorf("not HTTP 200")
	}
	if err != nil {
		r.Err = fmt.Errorf("%s: %w: %s", name, err, r.Output)
		return r
	}
	r.OK = true
	return r
}
