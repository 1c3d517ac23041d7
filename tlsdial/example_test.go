//go:build linux

package tlsdial_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/fitshake/fitshake/internal/testcert"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/fitshake/fitshake/tlsdial"
)

// exampleServer starts a TLS server behind a simulated 1400-byte black
// hole and returns the address to dial and a client config that trusts it.
func exampleServer() (addr string, cfg *tls.Config, stop func()) {
	ca, err := testcert.NewCA()
	if err != nil {
		log.Fatal(err)
	}
	cert, err := ca.Issue([]string{"example.fitshake.test"}, 0)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.(*tls.Conn).Handshake()
				c.Read(make([]byte, 1))
				c.Close()
			}()
		}
	}()
	p, err := pmtutest.Start(pmtutest.Config{Target: ln.Addr().String(), MTU: 1400})
	if err != nil {
		log.Fatal(err)
	}
	cfg = &tls.Config{RootCAs: ca.Pool, ServerName: "example.fitshake.test", NextProtos: []string{"h2"}}
	return p.Addr(), cfg, func() { p.Close(); ln.Close() }
}

func ExampleDialer() {
	addr, cfg, stop := exampleServer()
	defer stop()

	d := &tlsdial.Dialer{Config: cfg, Cache: &pmtu.Cache{}}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	r := c.(*tlsdial.Conn).Report()
	for _, a := range r.Attempts {
		fmt.Printf("attempt %d: MSS %d, %s\n", a.ID, a.MSS, a.Outcome)
	}
	fmt.Println("worked with MSS", r.MSS, "and the full hello:", r.HelloSize == r.Attempts[0].HelloSize)
	fmt.Println("ALPN:", c.(*tlsdial.Conn).ConnectionState().NegotiatedProtocol)
	// Output:
	// attempt 1: MSS 0, stall
	// attempt 2: MSS 1360, ok
	// worked with MSS 1360 and the full hello: true
	// ALPN: h2
}

func ExampleTCPDialer() {
	addr, cfg, stop := exampleServer()
	defer stop()

	// crypto/tls does the TLS; the TCPDialer replays its ClientHello on a
	// smaller MSS when it stalls.
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}
	raw, err := td.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	tc := tls.Client(raw, cfg)
	defer tc.Close()
	if err := tc.Handshake(); err != nil {
		log.Fatal(err)
	}
	r := raw.(*tlsdial.TCPConn).Report()
	fmt.Println("attempts:", len(r.Attempts), "MSS:", r.MSS)
	// Output:
	// attempts: 2 MSS: 1360
}

// ContextDialer is the dialer gRPC takes (grpc.WithContextDialer): the
// network is fixed, the address is what gRPC's resolver returned.
func ExampleTCPDialer_ContextDialer() {
	addr, cfg, stop := exampleServer()
	defer stop()

	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}
	dial := td.ContextDialer("tcp") // grpc.WithContextDialer(dial)
	raw, err := dial(context.Background(), addr)
	if err != nil {
		log.Fatal(err)
	}
	tc := tls.Client(raw, cfg) // what grpc's credentials.NewTLS does with it
	defer tc.Close()
	if err := tc.Handshake(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("MSS:", raw.(*tlsdial.TCPConn).Report().MSS, "ALPN:", tc.ConnectionState().NegotiatedProtocol)
	// Output:
	// MSS: 1360 ALPN: h2
}

func ExampleWithTrace() {
	td := &tlsdial.TCPDialer{}
	client := &http.Client{Transport: &http.Transport{DialContext: td.DialContext, ForceAttemptHTTP2: true}}

	ctx := tlsdial.WithTrace(context.Background(), &tlsdial.Trace{
		Stall: func(i tlsdial.StallInfo) {
			log.Printf("%s: server silent for %s, redialing with a smaller MSS", i.Addr, i.Elapsed)
		},
		Done: func(i tlsdial.DoneInfo) {
			log.Printf("%s: MSS %d, %d attempts", i.Addr, i.Report.MSS, len(i.Report.Attempts))
		},
	})
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://example.com/", nil)
	_ = req // client.Do(req) would report through the trace.
	_ = client
}

// A Dialer says what it would try, with the exact ClientHello sizes,
// without dialing and without utls types. The full hello is crypto/tls's,
// whose size changes with Go's version (Go 1.27 adds ML-DSA), so this
// prints whether each hello fits one full-size segment of a 1500-byte
// path (MSS 1460) rather than its size.
func ExampleDialer_Ladder() {
	d := &tlsdial.Dialer{
		Config:         &tls.Config{NextProtos: []string{"h2", "http/1.1"}},
		AllowClassical: true,
	}
	steps, err := d.Ladder("example.com:443")
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range steps {
		fmt.Printf("MTU %4d  %-10s one segment=%-5t post-quantum=%t\n", s.MTU, s.Rung, s.HelloSize <= 1460, s.PostQuantum)
	}
	// Output:
	// MTU    0  pq         one segment=false post-quantum=true
	// MTU 1400  pq         one segment=false post-quantum=true
	// MTU 1280  pq         one segment=false post-quantum=true
	// MTU  576  pq         one segment=false post-quantum=true
	// MTU    0  pq-compact one segment=true  post-quantum=true
	// MTU 1280  classical  one segment=true  post-quantum=false
}
