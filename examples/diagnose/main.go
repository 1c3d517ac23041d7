// Command diagnose answers "is my network the problem?" for one HTTPS
// server: whether TLS handshakes get through, the largest packet that
// reaches the server and the largest that comes back, why, and the fix to
// paste, for the network team, the server operator and the application.
//
//	go run github.com/fitshake/fitshake/examples/diagnose@latest example.com
//	go run github.com/fitshake/fitshake/examples/diagnose@latest https://example.com/some/page
//	go run github.com/fitshake/fitshake/examples/diagnose@latest -json -6 example.com:8443
//	go run github.com/fitshake/fitshake/examples/diagnose@latest -cafile ca.pem -servername db.internal 10.0.0.7:5443
//
// The target is host, host:port, [v6]:port or an https:// URL (its path
// is ignored); the port is 443 unless given. -cafile verifies the server's
// certificate with the PEM certificates of a file (a private CA) instead of
// the system's roots; -servername sends a name (SNI) and verifies the
// certificate against it, when the target is an IP address or another
// name. The path measurements need no verification: a certificate this
// host does not trust is reported as such, beside them.
//
// It needs no root. It shows each probe on stderr while it runs, and a
// summary on stdout at the end. With -json, stdout is always one JSON
// object: the measurement, and an "error" field when the exit status is 2.
// Exit status: 0 healthy, 1 a problem found (on the path, or a
// certificate that does not verify), 2 could not diagnose (bad input, name
// not resolved, connection refused or unreachable, or a path this host
// cannot measure: the summary, class "cannot-measure", says why).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/fitshake/fitshake/probe"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit statuses.
const (
	exitHealthy = 0
	exitProblem = 1
	exitError   = 2
)

// config is what the command line asks for.
type config struct {
	asJSON     bool
	network    string // "tcp", "tcp4" or "tcp6"
	quiet      bool
	timeout    time.Duration
	caFile     string
	serverName string
	addr       string // host:port
}

// output is the JSON object of -json: the measurement, if there is one,
// and the error that made the exit status 2.
type output struct {
	*probe.Result
	Error string `json:"error,omitempty"`
}

func run(args []string, stdout, stderr io.Writer) int {
	c, usage, err := parseArgs(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		usage()
		return exitHealthy
	case err != nil:
		code := fail(stdout, stderr, wantsJSON(args), nil, err)
		usage()
		return code
	}
	res, err := diagnose(c, stderr)
	if err != nil {
		return fail(stdout, stderr, c.asJSON, nil, err)
	}
	if err := res.Err(); err != nil {
		return fail(stdout, stderr, c.asJSON, res, err)
	}
	if err := report(stdout, output{Result: res}, c.asJSON); err != nil {
		fmt.Fprintln(stderr, "diagnose:", err)
		return exitError
	}
	if res.Certificate != "" {
		// The probe's last fix is the certificate's.
		fmt.Fprintf(stderr, "diagnose: the server's certificate does not verify (%s): %s\n", res.Certificate, res.Fixes[len(res.Fixes)-1])
	}
	if res.Healthy && res.Certificate == "" {
		return exitHealthy
	}
	return exitProblem
}

// diagnose runs the probe as c says, with progress on stderr unless quiet.
func diagnose(c *config, stderr io.Writer) (*probe.Result, error) {
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	o := probe.Options{Network: c.network, Config: tc}
	if !c.quiet {
		o.Progress = func(s probe.Step) { fmt.Fprintf(stderr, "[%2d] %s\n", s.N, s.What) }
	}
	return probe.Run(ctx, c.addr, o)
}

// fail reports err, with res if the probe got that far, and returns exit
// status 2.
func fail(stdout, stderr io.Writer, asJSON bool, res *probe.Result, err error) int {
	fmt.Fprintln(stderr, "diagnose:", err)
	if asJSON || res != nil {
		if err := report(stdout, output{Result: res, Error: err.Error()}, asJSON); err != nil {
			fmt.Fprintln(stderr, "diagnose:", err)
		}
	}
	return exitError
}

// parseArgs parses the command line. usage prints the usage on stderr.
func parseArgs(args []string, stderr io.Writer) (c *config, usage func(), err error) {
	c = &config{}
	fs := flag.NewFlagSet("diagnose", flag.ContinueOnError)
	fs.BoolVar(&c.asJSON, "json", false, "print one JSON object instead of the summary (also on errors, with an \"error\" field)")
	v4 := fs.Bool("4", false, "probe over IPv4 only")
	v6 := fs.Bool("6", false, "probe over IPv6 only")
	fs.BoolVar(&c.quiet, "q", false, "no progress on stderr")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "give up after this long")
	fs.StringVar(&c.caFile, "cafile", "", "verify the server's certificate with the PEM certificates in `FILE` (a private CA) instead of the system's roots")
	fs.StringVar(&c.serverName, "servername", "", "send `NAME` (SNI) and verify the certificate against it (default: the target's host)")
	usage = func() {
		fs.SetOutput(stderr)
		fmt.Fprintln(stderr, "usage: diagnose [flags] host[:port] | [v6]:port | https://host[:port]/path   (port 443 by default)")
		fs.PrintDefaults()
	}
	fs.SetOutput(io.Discard) // the caller prints the error once, then the usage
	if err := fs.Parse(args); err != nil {
		return nil, usage, err
	}
	if c.network, err = network(*v4, *v6); err != nil {
		return nil, usage, err
	}
	if fs.NArg() != 1 {
		return nil, usage, errors.New("want exactly one target: host[:port] or https://host[:port]/…")
	}
	if c.addr, err = target(fs.Arg(0)); err != nil {
		return nil, usage, err
	}
	if c.timeout <= 0 {
		return nil, usage, errors.New("-timeout must be positive")
	}
	return c, usage, nil
}

// wantsJSON reports whether args ask for -json, for a command line that
// did not parse: the error is then a JSON object too.
func wantsJSON(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "json" {
			continue
		}
		if !hasValue {
			return true
		}
		b, err := strconv.ParseBool(value)
		return err == nil && b
	}
	return false
}

func network(v4, v6 bool) (string, error) {
	switch {
	case v4 && v6:
		return "", errors.New("-4 and -6 exclude each other")
	case v4:
		return "tcp4", nil
	case v6:
		return "tcp6", nil
	}
	return "tcp", nil
}

// target turns what the user gave into host:port: host, host:port,
// [v6], [v6]:port, a bare IPv6 address, or an https:// URL (path, query
// and user ignored). The port is 443 unless given.
func target(arg string) (string, error) {
	hostport := arg
	if scheme, rest, ok := strings.Cut(arg, "://"); ok {
		if !strings.EqualFold(scheme, "https") {
			return "", fmt.Errorf("%q: scheme %q not supported: diagnose probes TLS servers; give https://host[:port]/… or host[:port]", arg, scheme)
		}
		u, err := url.Parse("https://" + rest)
		if err != nil {
			return "", fmt.Errorf("%q: %w", arg, err)
		}
		hostport = u.Host
	} else if i := strings.IndexAny(arg, "/?#"); i >= 0 {
		hostport = arg[:i] // host/path, pasted without its scheme
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = trimBrackets(hostport), "443"
	}
	if host == "" {
		return "", fmt.Errorf("no host in %q", arg)
	}
	if strings.ContainsAny(host, "[]/ ") {
		return "", fmt.Errorf("bad host %q in %q", host, arg)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("bad port %q in %q: want 1 to 65535", port, arg)
	}
	return net.JoinHostPort(host, port), nil
}

func trimBrackets(h string) string {
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}

// tlsConfig is the configuration of the probe's handshakes: the roots of
// -cafile and the name of -servername; nil for the defaults (the system's
// roots, the target's host).
func (c *config) tlsConfig() (*tls.Config, error) {
	if c.caFile == "" && c.serverName == "" {
		return nil, nil
	}
	tc := &tls.Config{ServerName: c.serverName}
	if c.caFile != "" {
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return nil, fmt.Errorf("-cafile: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-cafile %s: no PEM certificate in it", c.caFile)
		}
	}
	return tc, nil
}

func report(w io.Writer, out output, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if out.Result == nil {
		return nil
	}
	_, err := io.WriteString(w, out.Result.String())
	return err
}
