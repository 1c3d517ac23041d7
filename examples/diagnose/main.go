// Command diagnose answers "is my network the problem?" for one HTTPS
// server: whether TLS handshakes get through, the largest packet that
// reaches the server and the largest that comes back, why, and the fix to
// paste, for the network team, the server operator and the application.
//
//	go run github.com/fitshake/fitshake/examples/diagnose@latest example.com
//	go run github.com/fitshake/fitshake/examples/diagnose@latest -json -6 example.com:8443
//
// It needs no root. It shows each probe on stderr while it runs, and a
// summary on stdout at the end (one JSON object with -json). Exit status:
// 0 healthy, 1 a problem found, 2 could not diagnose (bad input, name not
// resolved, connection refused or unreachable, or a path this host cannot
// measure: the summary, class "cannot-measure", says why).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"time"

	"github.com/fitshake/fitshake/probe"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("diagnose", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print one JSON object instead of the summary")
	v4 := fs.Bool("4", false, "probe over IPv4 only")
	v6 := fs.Bool("6", false, "probe over IPv6 only")
	quiet := fs.Bool("q", false, "no progress on stderr")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: diagnose [-json] [-4|-6] [-q] host[:port]   (port 443 by default)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	addr, network, err := target(fs.Args(), *v4, *v6)
	if err != nil {
		fmt.Fprintln(stderr, "diagnose:", err)
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	o := probe.Options{Network: network}
	if !*quiet {
		o.Progress = func(s probe.Step) { fmt.Fprintf(stderr, "[%2d] %s\n", s.N, s.What) }
	}
	res, err := probe.Run(ctx, addr, o)
	if err != nil {
		fmt.Fprintln(stderr, "diagnose:", err)
		return 2
	}
	if err := report(stdout, res, *asJSON); err != nil {
		fmt.Fprintln(stderr, "diagnose:", err)
		return 2
	}
	if err := res.Err(); err != nil {
		fmt.Fprintln(stderr, "diagnose:", err)
		return 2
	}
	if res.Healthy {
		return 0
	}
	return 1
}

// target checks the arguments: one host, with port 443 unless given.
func target(args []string, v4, v6 bool) (addr, network string, err error) {
	switch {
	case len(args) != 1:
		return "", "", errors.New("want exactly one host[:port]")
	case v4 && v6:
		return "", "", errors.New("-4 and -6 exclude each other")
	}
	network = "tcp"
	if v4 {
		network = "tcp4"
	} else if v6 {
		network = "tcp6"
	}
	addr = args[0]
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(trimBrackets(addr), "443")
	}
	if host, _, _ := net.SplitHostPort(addr); host == "" {
		return "", "", fmt.Errorf("no host in %q", args[0])
	}
	return addr, network, nil
}

func trimBrackets(h string) string {
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}

func report(w io.Writer, res *probe.Result, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	_, err := io.WriteString(w, res.String())
	return err
}
