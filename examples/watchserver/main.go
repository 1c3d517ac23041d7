// Command watchserver serves HTTPS with fitshake's server side on: a
// tlswatch.Watcher that tells which client networks fail to complete their
// handshakes and why, and its self-fix, which clamps the MSS of new
// connections from a network once it is known to black-hole large packets
// (twin listeners steered by client prefix; Linux, no privileges): to its
// family's MSS for a 1400-byte path (1360 IPv4, 1340 IPv6), then, after
// more black holes under that clamp, for a 1280-byte one (1240, 1220).
//
//	go run ./examples/watchserver -listen :8443 -cert cert.pem -key key.pem -admin 127.0.0.1:8081
//
// On -listen: HTTPS (HTTP/2 and HTTP/1.1), a small page. On -admin (keep it
// private: it names client networks): / the status page, /status.json the
// same as JSON (tlswatch.Status), /metrics the watcher's metrics in
// Prometheus text (fitshakeotel.NewServerTrace through OpenTelemetry's
// Prometheus exporter). Without -cert it makes a self-signed certificate
// and says so on stderr, where the watcher's log lines go too. SIGINT or
// SIGTERM shuts it down.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	fitshakeotel "github.com/fitshake/fitshake/otel"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlswatch"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// config is what the flags set.
type config struct {
	listen, admin string
	cert, key     string
	policy        tlswatch.Policy
	stallAfter    time.Duration
	window        time.Duration
	failingAfter  int
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "watchserver:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := start(ctx, cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "watchserver:", err)
		os.Exit(1)
	}
	err = s.wait(ctx)
	fmt.Fprintln(os.Stderr, "watchserver: shutting down")
	if err := errors.Join(err, s.shutdown()); err != nil {
		fmt.Fprintln(os.Stderr, "watchserver:", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("watchserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.listen, "listen", ":8443", "serve HTTPS on this `address`")
	fs.StringVar(&c.cert, "cert", "", "the certificate chain, PEM (`file`); none: a self-signed one")
	fs.StringVar(&c.key, "key", "", "the certificate's private key, PEM (`file`)")
	fs.StringVar(&c.admin, "admin", "127.0.0.1:8081", "serve the status page, /status.json and /metrics on this `address` (it names client networks: keep it private)")
	fs.IntVar(&c.policy.After, "after", 0, "clamp a prefix after `n` connections from it lost to a black hole (0: 3)")
	fs.IntVar(&c.policy.MSS, "mss", 0, "the self-fix's one clamp, MSS `n` for both families (0: the ladder, each family's MSS for each path MTU of -ladder)")
	fs.Func("ladder", "the path `MTUs` the self-fix's clamp steps down through, comma-separated, each after -after more black holes under the one before (none: 1400,1280: MSS 1360 then 1240 on IPv4, 1340 then 1220 on IPv6)", func(v string) error {
		l, err := parseLadder(v)
		c.policy.Ladder = l
		return err
	})
	fs.DurationVar(&c.policy.TTL, "ttl", 0, "how long a clamp lasts (0: 1h)")
	fs.DurationVar(&c.stallAfter, "stall", 0, "judge a handshake still open after this long (0: 5s)")
	fs.IntVar(&c.failingAfter, "failing-after", 0, "call a prefix failing after `n` failed handshakes in the window (0: 3)")
	fs.DurationVar(&c.window, "window", 0, "how far back the counts and the self-fix's evidence go (0: 10m)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.policy.Window = c.window
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	case (c.cert == "") != (c.key == ""):
		return c, errors.New("-cert and -key go together")
	case c.policy.MSS != 0 && c.policy.Ladder != nil:
		return c, errors.New("-mss and -ladder: one or the other")
	}
	return c, pmtu.ValidateMSS(c.policy.MSS)
}

// parseLadder reads -ladder: path MTUs, comma-separated, each one
// pmtu.ValidateMTU accepts.
func parseLadder(v string) ([]int, error) {
	var l []int
	for f := range strings.SplitSeq(v, ",") {
		mtu, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("path MTU %q: not a number", f)
		}
		if mtu == 0 {
			return nil, errors.New("path MTU 0")
		}
		if err := pmtu.ValidateMTU(mtu); err != nil {
			return nil, err
		}
		l = append(l, mtu)
	}
	return l, nil
}

// defaultLadder is tlswatch.Policy's Ladder when none is set, as -ladder's
// help and the start line tell it.
var defaultLadder = []int{1400, 1280}

// clampText says what the self-fix clamps to: "MSS 1340", or each rung
// of the ladder, "MSS 1360 (IPv4) / 1340 (IPv6) for a 1400-byte path,
// then …".
func clampText(p tlswatch.Policy) string {
	if p.MSS > 0 {
		return fmt.Sprintf("MSS %d", p.MSS)
	}
	ladder := p.Ladder
	if len(ladder) == 0 {
		ladder = defaultLadder
	}
	var rungs []string
	for _, mtu := range ladder {
		rungs = append(rungs, fmt.Sprintf("MSS %d (IPv4) / %d (IPv6) for a %d-byte path", pmtu.MSSForMTU(mtu, false), pmtu.MSSForMTU(mtu, true), mtu))
	}
	return strings.Join(rungs, ", then ")
}

// server is a running watchserver.
type server struct {
	watcher *tlswatch.Watcher
	https   *http.Server
	admin   *http.Server
	meters  *sdkmetric.MeterProvider
	addr    net.Addr // where HTTPS is served
	adminLn net.Listener
	errc    chan error // the servers' ends
}

// start listens on both addresses and serves until shutdown.
func start(ctx context.Context, c config, stderr io.Writer) (*server, error) {
	cert, err := certificate(c, stderr)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, err
	}
	s := &server{meters: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter)), errc: make(chan error, 2)}
	metrics, err := fitshakeotel.NewServerTrace(fitshakeotel.WithMeterProvider(s.meters), fitshakeotel.WithServerAddr(c.listen))
	if err != nil {
		return nil, err
	}
	s.watcher = &tlswatch.Watcher{
		StallAfter: c.stallAfter, Window: c.window, FailingAfter: c.failingAfter, Policy: c.policy,
		Trace: metrics, Logger: slog.New(slog.NewTextHandler(stderr, nil)),
	}
	ln, err := s.watcher.Listen(ctx, "tcp", c.listen)
	if err != nil {
		return nil, err
	}
	s.addr = ln.Addr()
	if s.adminLn, err = net.Listen("tcp", c.admin); err != nil {
		ln.Close()
		return nil, err
	}
	s.https = &http.Server{
		Handler: http.HandlerFunc(hello),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{"h2", "http/1.1"},
		},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(stderr, "", log.LstdFlags),
	}
	s.admin = &http.Server{Handler: s.adminMux(reg), ReadHeaderTimeout: 10 * time.Second}
	go func() { s.errc <- s.https.ServeTLS(ln, "", "") }()
	go func() { s.errc <- s.admin.Serve(s.adminLn) }()
	fmt.Fprintf(stderr, "watchserver: https on %s (self-fix: after %d connections lost to a black hole, clamp to %s); admin on http://%s/ (/status.json, /metrics)\n",
		s.addr, orDefault(c.policy.After, 3), clampText(c.policy), s.adminLn.Addr())
	return s, nil
}

// orDefault is v, or def for 0: a flag's default as the watcher takes it.
func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// adminMux routes the admin port: the watcher's status page (HTML at /,
// JSON at /status.json, as its ServeHTTP does) and /metrics.
func (s *server) adminMux(reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/", s.watcher)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// hello is the served page.
func hello(rw http.ResponseWriter, r *http.Request) {
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	version := "?"
	if r.TLS != nil {
		version = tls.VersionName(r.TLS.Version)
	}
	fmt.Fprintf(rw, "<!doctype html>\n<title>watchserver</title>\n<p>Hello: your TLS handshake completed (%s, %s).</p>\n", version, r.Proto)
}

// wait returns when ctx is done (nil) or a server stopped (its error).
func (s *server) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.errc:
		return err
	}
}

// shutdownGrace is how long shutdown lets requests in flight finish. A
// handshake stalled on a broken path would hold a connection for the TLS
// stack's own timeout (10 s here): past the grace, what is left is closed.
const shutdownGrace = 2 * time.Second

// shutdown stops both servers and the meters.
func (s *server) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var errs []error
	for _, srv := range []*http.Server{s.https, s.admin} {
		if err := srv.Shutdown(ctx); err != nil { // the grace is over
			errs = append(errs, srv.Close())
		}
	}
	errs = append(errs, s.meters.Shutdown(context.Background()))
	return errors.Join(errs...)
}
