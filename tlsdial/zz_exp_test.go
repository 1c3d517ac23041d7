package tlsdial_test

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlsdial"
)

func BenchmarkZZExp(b *testing.B) {
	const dials = 200
	addr, cfg := slowHelloServer(b, 150*time.Millisecond)
	clients := []struct {
		name string
		dial dialFunc
	}{
		{"crypto-tls", stockDial(cfg)},
		{"Dialer", func(ctx context.Context, addr string) (net.Conn, error) {
			d := &tlsdial.Dialer{Config: cfg, Cache: &pmtu.Cache{}}
			return d.DialContext(ctx, "tcp", addr)
		}},
		{"Dialer-timer", func(ctx context.Context, addr string) (net.Conn, error) {
			d := &tlsdial.Dialer{Config: cfg, Cache: &pmtu.Cache{}, TimerOnly: true}
			return d.DialContext(ctx, "tcp", addr)
		}},
		{"Dialer-off", func(ctx context.Context, addr string) (net.Conn, error) {
			d := &tlsdial.Dialer{Config: cfg, Cache: &pmtu.Cache{}, StallWindow: -1}
			return d.DialContext(ctx, "tcp", addr)
		}},
		{"TCPDialer", tcpDialerDial(cfg, false)},
		{"TCPDialer-timer", tcpDialerDial(cfg, true)},
	}
	lat := make([][]time.Duration, len(clients))
	for b.Loop() {
		for i, c := range clients {
			lat[i] = append(lat[i], round(b, c.dial, addr, dials)...)
		}
	}
	p := func(i int, q float64) time.Duration {
		s := slices.Clone(lat[i])
		slices.Sort(s)
		return s[min(len(s)-1, int(q*float64(len(s))))]
	}
	for i, c := range clients {
		b.ReportMetric(float64(p(i, 0.99))/float64(p(0, 0.99)), c.name+"-p99r")
		b.ReportMetric(float64(p(i, 0.5))/float64(p(0, 0.5)), c.name+"-p50r")
	}
}
