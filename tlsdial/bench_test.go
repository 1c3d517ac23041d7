package tlsdial_test

import (
	"context"
	"crypto/tls"
	"math/rand/v2"
	"net"
	"slices"
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
// BenchmarkHandshakeRatio pairs each fitshake dialer with crypto/tls, one
// handshake each per iteration in a random order, and reports the median
// of the per-iteration ratios (and the ratio of total times); the last two
// pairs price TCP_INFO polling against the timer alone:
//
//	go test -run '^$' -bench HandshakeRatio -benchtime 4s -count 5 ./tlsdial/

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
	cfg := srv.config()
	for _, bc := range []struct {
		name      string
		base, dut dialFunc
	}{
		{"Dialer/crypto-tls", stockDial(cfg), fitshakeDial(cfg, false)},
		{"TCPDialer/crypto-tls", stockDial(cfg), tcpDialerDial(cfg, false)},
		// The cost of polling TCP_INFO: the same dialer with and without it.
		{"Dialer-poll/Dialer-timer", fitshakeDial(cfg, true), fitshakeDial(cfg, false)},
		{"TCPDialer-poll/TCPDialer-timer", tcpDialerDial(cfg, true), tcpDialerDial(cfg, false)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ratio, total := pairedRatio(b, bc.base, bc.dut, srv.addr)
			b.ReportMetric(ratio, "ratio")
			b.ReportMetric(total, "ratio-of-totals")
		})
	}
}

// pairedRatio runs base and dut one handshake each per iteration, in a
// random order, and returns the median of the per-iteration ratios dut/base
// and the ratio of the total times. Pairing cancels the drift of a shared
// machine; the median ignores the iterations a GC pause or a stalled vCPU
// hit. Each pair is measured on its own, so that neither client pays for
// what a third one left running, nor runs with caches warmed by another
// TLS stack.
func pairedRatio(b *testing.B, base, dut dialFunc, addr string) (median, totals float64) {
	xs, ys := pairedRuns(b, 10,
		func() time.Duration { return handshakeOnce(b, base, addr) },
		func() time.Duration { return handshakeOnce(b, dut, addr) })
	ratios := make([]float64, len(xs))
	var tb, td time.Duration
	for i := range xs {
		ratios[i] = float64(ys[i]) / float64(xs[i])
		tb, td = tb+xs[i], td+ys[i]
	}
	slices.Sort(ratios)
	return ratios[len(ratios)/2], float64(td) / float64(tb)
}

// pairedRuns runs base and dut warm times each, then once each per
// iteration of b in a random order, and returns the times of each
// iteration's runs: xs[i] is base's, ys[i] dut's.
func pairedRuns(b *testing.B, warm int, base, dut func() time.Duration) (xs, ys []time.Duration) {
	for range warm {
		base()
		dut()
	}
	for b.Loop() {
		var x, y time.Duration
		if rand.IntN(2) == 0 {
			x = base()
			y = dut()
		} else {
			y = dut()
			x = base()
		}
		xs, ys = append(xs, x), append(ys, y)
	}
	return xs, ys
}
