package tlsdial_test

import (
	"context"
	"crypto/tls"
	"math/rand/v2"
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
// BenchmarkHandshakeRatio interleaves them in a new random order every
// iteration, so that all see the same machine load and none always pays for
// what the one before it left running, and reports ratios of total times:
// fitshake over crypto/tls, and TCP_INFO polling over the timer alone.

type dialFunc func(ctx context.Context, addr string) (net.Conn, error)

func stockDial(cfg *tls.Config) dialFunc {
	d := &tls.Dialer{Config: cfg}
	return func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
}

func fitshakeDial(cfg *tls.Config, timerOnly bool) dialFunc {
	d := &tlsdial.Dialer{Config: cfg, Cache: &pmtu.Cache{}, TimerOnly: timerOnly}
	return func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
}

func tcpDialerDial(cfg *tls.Config, timerOnly bool) dialFunc {
	td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}, TimerOnly: timerOnly}
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
		{"fitshake-Dialer", fitshakeDial(srv.config(), false)},
		{"fitshake-Dialer-TimerOnly", fitshakeDial(srv.config(), true)},
		{"crypto-tls-over-TCPDialer", tcpDialerDial(srv.config(), false)},
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
	dials := []dialFunc{
		stockDial(srv.config()),
		fitshakeDial(srv.config(), false),
		fitshakeDial(srv.config(), true),
		tcpDialerDial(srv.config(), false),
		tcpDialerDial(srv.config(), true),
	}
	total := make([]time.Duration, len(dials))
	order := rand.Perm(len(dials))
	for b.Loop() {
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order {
			total[i] += handshakeOnce(b, dials[i], srv.addr)
		}
	}
	ratio := func(i, j int) float64 { return float64(total[i]) / float64(total[j]) }
	b.ReportMetric(ratio(1, 0), "Dialer/crypto-tls")
	b.ReportMetric(ratio(3, 0), "TCPDialer/crypto-tls")
	// The cost of polling TCP_INFO: the same dialer with and without it.
	b.ReportMetric(ratio(1, 2), "Dialer-poll/Dialer-timer")
	b.ReportMetric(ratio(3, 4), "TCPDialer-poll/TCPDialer-timer")
}
