package tlsdial_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlsdial"
)

// Healthy-path cost of fitshake against crypto/tls on loopback: a full
// handshake (post-quantum key exchange on both sides) per operation.
//
//	go test -run '^$' -bench Handshake -benchtime 2s ./tlsdial/
//
// BenchmarkHandshakeRatio interleaves the two so that both see the same
// machine load, and reports fitshake's time over crypto/tls's as "ratio".

type dialFunc func(ctx context.Context, addr string) (net.Conn, error)

func stockDial(cfg *tls.Config) dialFunc {
	d := &tls.Dialer{Config: cfg}
	return func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
}

func fitshakeDial(cfg *tls.Config) dialFunc {
	d := &tlsdial.Dialer{Config: cfg, Cache: &pmtu.Cache{}}
	return func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
}

func tcpDialerDial(cfg *tls.Config) dialFunc {
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		raw, err := td.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		c := tls.Client(raw, cfg)
		if err := c.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		return c, nil
	}
}

func handshakeOnce(b *testing.B, dial dialFunc, addr string) time.Duration {
	t0 := time.Now()
	c, err := dial(context.Background(), addr)
	if err != nil {
		b.Fatal(err)
	}
	d := time.Since(t0)
	c.Close()
	return d
}

func BenchmarkHandshake(b *testing.B) {
	srv := startServer(b, 0)
	for _, bc := range []struct {
		name string
		dial dialFunc
	}{
		{"crypto-tls", stockDial(srv.config())},
		{"fitshake-Dialer", fitshakeDial(srv.config())},
		{"crypto-tls-over-TCPDialer", tcpDialerDial(srv.config())},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				handshakeOnce(b, bc.dial, srv.addr)
			}
		})
	}
}

func BenchmarkHandshakeRatio(b *testing.B) {
	srv := startServer(b, 0)
	base, fit, tcp := stockDial(srv.config()), fitshakeDial(srv.config()), tcpDialerDial(srv.config())
	var tb, tf, tt time.Duration
	for b.Loop() {
		tb += handshakeOnce(b, base, srv.addr)
		tf += handshakeOnce(b, fit, srv.addr)
		tt += handshakeOnce(b, tcp, srv.addr)
	}
	b.ReportMetric(float64(tf)/float64(tb), "Dialer/crypto-tls")
	b.ReportMetric(float64(tt)/float64(tb), "TCPDialer/crypto-tls")
}
