package steer_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/steer"
	"github.com/fitshake/fitshake/internal/testcert"
)

// serveBench serves ln until it is closed: a TLS handshake (cfg non-nil)
// or none, then one byte written, then close.
func serveBench(ln net.Listener, cfg *tls.Config) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if cfg != nil {
				c = tls.Server(c, cfg)
			}
			c.Write([]byte{1})
			io.Copy(io.Discard, c) // until the client closes
		}()
	}
}

// roundOnce connects to addr, handshakes (cfg non-nil), reads the byte and
// closes; it returns how long that took. It may be called from any
// goroutine: it reports a failure with b.Error.
func roundOnce(b *testing.B, addr string, cfg *tls.Config) time.Duration {
	t0 := time.Now()
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		b.Error(err)
		return 0
	}
	defer c.Close()
	if cfg != nil {
		c = tls.Client(c, cfg)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		b.Error(err)
	}
	return time.Since(t0)
}

// BenchmarkGroupRatio measures what a Group costs a connection it does
// not clamp, against a plain listener in the same run: one connection to
// each per iteration, in a random order; ratio is the median of the
// per-iteration ratios Group/plain, ratio-of-totals the ratio of the
// summed times. "tls" is accept and a full TLS 1.3 handshake
// (X25519MLKEM768); "tcp" accept and one byte, which shows the listener's
// own cost best. The Group steers 0, 50 or MaxPrefixes−1 prefixes, none of
// them the client's, so every SYN runs the whole program.
//
//	go test -run '^$' -bench GroupRatio -benchtime 2000x -count 3 ./internal/steer/
func BenchmarkGroupRatio(b *testing.B) {
	srvCfg, cliCfg, err := testcert.Configs([]string{"127.0.0.1"}, 0)
	if err != nil {
		b.Fatal(err)
	}
	cliCfg.ServerName = "127.0.0.1"
	for _, proto := range []string{"tcp", "tls"} {
		for _, n := range []int{0, 50, steer.MaxPrefixes - 1} {
			b.Run(fmt.Sprintf("%s/prefixes=%d", proto, n), func(b *testing.B) {
				var scfg, ccfg *tls.Config
				if proto == "tls" {
					scfg, ccfg = srvCfg, cliCfg
				}
				plain, err := net.Listen("tcp4", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				defer plain.Close()
				g, err := steer.Listen(b.Context(), "tcp4", "127.0.0.1:0", testMSS)
				if err != nil {
					b.Fatal(err)
				}
				defer g.Close()
				var ps []netip.Prefix
				for i := range n { // IPv4 /24s that are not loopback's
					ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24))
				}
				if err := g.SetClamped(ps); err != nil {
					b.Fatal(err)
				}
				go serveBench(plain, scfg)
				go serveBench(g, scfg)
				ratio, totals := pairedRatio(b, plain.Addr().String(), g.Addr().String(), ccfg)
				b.ReportMetric(ratio, "ratio")
				b.ReportMetric(totals, "ratio-of-totals")
			})
		}
	}
}

// pairedRatio is tlsdial's: one round to each per iteration in a random
// order, the median of the ratios dut/base and the ratio of the totals.
func pairedRatio(b *testing.B, base, dut string, cfg *tls.Config) (median, totals float64) {
	for range 20 {
		roundOnce(b, base, cfg)
		roundOnce(b, dut, cfg)
	}
	var ratios []float64
	var tb, td time.Duration
	for b.Loop() {
		var x, y time.Duration
		if rand.IntN(2) == 0 {
			x = roundOnce(b, base, cfg)
			y = roundOnce(b, dut, cfg)
		} else {
			y = roundOnce(b, dut, cfg)
			x = roundOnce(b, base, cfg)
		}
		ratios = append(ratios, float64(y)/float64(x))
		tb, td = tb+x, td+y
	}
	slices.Sort(ratios)
	return ratios[len(ratios)/2], float64(td) / float64(tb)
}

// BenchmarkGroupBurstRatio measures accept throughput under concurrency:
// per iteration, a burst of 100 concurrent connections (accept and one
// byte, no TLS) to a plain listener and to a Group steering MaxPrefixes−1
// prefixes that are not the client's, in a random order; ratio is the
// median of the per-burst time ratios Group/plain.
//
//	go test -run '^$' -bench GroupBurstRatio -benchtime 100x -count 3 ./internal/steer/
func BenchmarkGroupBurstRatio(b *testing.B) {
	const burst = 100
	plain, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer plain.Close()
	g, err := steer.Listen(b.Context(), "tcp4", "127.0.0.1:0", testMSS)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	var ps []netip.Prefix
	for i := range steer.MaxPrefixes - 1 {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24))
	}
	if err := g.SetClamped(ps); err != nil {
		b.Fatal(err)
	}
	go serveBench(plain, nil)
	go serveBench(g, nil)
	once := func(addr string) time.Duration {
		t0 := time.Now()
		var wg sync.WaitGroup
		for range burst {
			wg.Go(func() { roundOnce(b, addr, nil) })
		}
		wg.Wait()
		return time.Since(t0)
	}
	once(plain.Addr().String())
	once(g.Addr().String())
	var ratios []float64
	for b.Loop() {
		var x, y time.Duration
		if rand.IntN(2) == 0 {
			x, y = once(plain.Addr().String()), once(g.Addr().String())
		} else {
			y, x = once(g.Addr().String()), once(plain.Addr().String())
		}
		ratios = append(ratios, float64(y)/float64(x))
	}
	slices.Sort(ratios)
	b.ReportMetric(ratios[len(ratios)/2], "ratio")
}
