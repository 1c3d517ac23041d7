package tlsdial_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlsdial"
)

func tcpDialerPlain(cfg *tls.Config) dialFunc {
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}, StallWindow: -1}
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

func netDial(cfg *tls.Config) dialFunc {
	var nd net.Dialer
	return func(ctx context.Context, addr string) (net.Conn, error) {
		raw, err := nd.DialContext(ctx, "tcp", addr)
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

func BenchmarkZZAblate(b *testing.B) {
	srv := startServer(b, 0)
	cfg := srv.config()
	for _, bc := range []struct {
		name      string
		base, dut dialFunc
	}{
		{"stock/stock", stockDial(cfg), netDial(cfg)},
		{"TCPDialerPlain/stock", stockDial(cfg), tcpDialerPlain(cfg)},
		{"TCPDialerTimer/stock", stockDial(cfg), tcpDialerDial(cfg, true)},
		{"TCPDialer/stock", stockDial(cfg), tcpDialerDial(cfg, false)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ratio, total := pairedRatio(b, bc.base, bc.dut, srv.addr)
			b.ReportMetric(ratio, "ratio")
			b.ReportMetric(total, "ratio-of-totals")
		})
	}
}

func BenchmarkZZConnect(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	var nd net.Dialer
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}}
	b.Run("net", func(b *testing.B) {
		for b.Loop() {
			c, err := nd.DialContext(context.Background(), "tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})
	b.Run("TCPDialer", func(b *testing.B) {
		for b.Loop() {
			c, err := td.DialContext(context.Background(), "tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})
}
