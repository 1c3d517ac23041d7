package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/fitshake/fitshake/diagpage"
)

// PortDiagPage is the plain-HTTP port of the diagnostic page server.
const PortDiagPage = 8080

// diagPageName is the registered name of the diagnostic page server.
const diagPageName = "lab-diagpage"

// DiagPageArgs are the arguments of the diagnostic page server.
type DiagPageArgs struct {
	Addrs []string
}

func init() { RegisterServer(diagPageName, diagPageServe) }

// diagPageServe serves diagpage.Handler (zero value) at / on every
// address, and reports each accepted connection on standard error as
// "lab-diagpage: accepted ADDR N" (N counted per address).
func diagPageServe(ctx context.Context, raw json.RawMessage, ready func(any)) error {
	var a DiagPageArgs
	if err := json.Unmarshal(raw, &a); err != nil {
		return err
	}
	srv := &http.Server{Handler: &diagpage.Handler{}, ReadHeaderTimeout: 10 * time.Second}
	return serveHTTP(ctx, srv, a.Addrs, ready, func(ln net.Listener, addr string) error {
		return srv.Serve(&countingListener{Listener: ln, addr: addr})
	})
}

type countingListener struct {
	net.Listener
	addr string
	n    atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		fmt.Fprintf(os.Stderr, "%s: accepted %s %d\n", diagPageName, l.addr, l.n.Add(1))
	}
	return c, err
}

// DiagPage is the running diagnostic page server.
type DiagPage struct {
	*Process
	l *Lab
}

// StartDiagPage starts the diagnostic page (package diagpage, its
// Handler's zero value at /) in the server namespace on PortDiagPage,
// both families, plain HTTP: the test binary re-executed, so its TestMain
// must call Main. Load http://Addr(f, PortDiagPage)/ with Browse.
func (l *Lab) StartDiagPage() (*DiagPage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, _, err := l.StartServer(ctx, diagPageName, DiagPageArgs{
		Addrs: []string{l.Addr(IPv4, PortDiagPage), l.Addr(IPv6, PortDiagPage)},
	})
	if err != nil {
		return nil, err
	}
	return &DiagPage{Process: p, l: l}, nil
}

var acceptedRE = regexp.MustCompile(diagPageName + `: accepted (\S+) (\d+)`)

// Accepted returns how many connections the server has accepted on family
// f so far.
func (s *DiagPage) Accepted(f Family) int {
	want := s.l.Addr(f, PortDiagPage)
	n := 0
	for _, m := range acceptedRE.FindAllStringSubmatch(s.Output(), -1) {
		if m[1] == want {
			n, _ = strconv.Atoi(m[2])
		}
	}
	return n
}
