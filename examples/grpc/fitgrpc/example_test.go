//go:build linux

package fitgrpc_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log"
	"net"
	"net/http/httptest"
	"time"

	"github.com/fitshake/fitshake/examples/grpc/fitgrpc"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/fitshake/fitshake/tlsdial"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// exampleGRPCServer serves grpc's health service over TLS behind a
// simulated 1400-byte black hole, and returns its address and the roots
// that trust its certificate (httptest's, for "example.com").
func exampleGRPCServer() (addr string, roots *x509.CertPool, stop func()) {
	hs := httptest.NewUnstartedServer(nil)
	hs.StartTLS() // only for its certificate
	cert, roots := hs.TLS.Certificates[0], x509.NewCertPool()
	roots.AddCert(hs.Certificate())
	hs.Close()

	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)
	p, err := pmtutest.Start(pmtutest.Config{Target: ln.Addr().String(), MTU: 1400})
	if err != nil {
		log.Fatal(err)
	}
	return p.Addr(), roots, func() { p.Close(); srv.Stop() }
}

func ExampleDialOptions() {
	addr, roots, stop := exampleGRPCServer()
	defer stop()

	d := &tlsdial.Dialer{
		Config: &tls.Config{RootCAs: roots, ServerName: "example.com"},
		Cache:  &pmtu.Cache{}, // the test's own memory of paths
		Trace: &tlsdial.Trace{Done: func(i tlsdial.DoneInfo) {
			fmt.Printf("dialed: %d attempts, MSS %d\n", len(i.Report.Attempts), i.Report.MSS)
		}},
	}
	conn, err := grpc.NewClient(addr, fitgrpc.DialOptions(d)...)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Status)
	// Output:
	// dialed: 2 attempts, MSS 1360
	// SERVING
}

// TCPDialer needs no package: grpc's own TLS credentials over its
// connections.
func Example_tcpDialer() {
	addr, roots, stop := exampleGRPCServer()
	defer stop()

	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "example.com"})),
		grpc.WithContextDialer(td.ContextDialer("tcp")))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Status)
	// Output:
	// SERVING
}
