package tlsdial_test

import (
	"context"
	"crypto/tls"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlsdial"
)

// BenchmarkConcurrentSlowServer: many dials at once to a healthy server
// that answers each ClientHello after 150 ms, the case where dials that
// waited for each other, or polled too eagerly, lost to crypto/tls. Each
// iteration runs one round of 200 concurrent dials per client, in turn;
// the metrics are the latency percentiles over all rounds and fitshake's
// p99 over crypto/tls's, measured in the same run.
//
//	go test -run '^$' -bench ConcurrentSlowServer -benchtime 10x ./tlsdial/
func BenchmarkConcurrentSlowServer(b *testing.B) {
	const dials = 200
	addr, cfg := slowHelloServer(b, 150*time.Millisecond)
	clients := []struct {
		name string
		dial dialFunc
	}{
		{"crypto-tls", stockDial(cfg)},
		{"Dialer", func(ctx context.Context, addr string) (net.Conn, error) {
			// A fresh cache per round: every round discovers afresh.
			d := &tlsdial.Dialer{Config: cfg, Cache: &pmtu.Cache{}}
			return d.DialContext(ctx, "tcp", addr)
		}},
		{"TCPDialer", tcpDialerDial(cfg, false)},
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
		b.ReportMetric(float64(p(i, 0.5).Microseconds())/1000, c.name+"-p50-ms")
		b.ReportMetric(float64(p(i, 0.99).Microseconds())/1000, c.name+"-p99-ms")
	}
	b.ReportMetric(float64(p(1, 0.99))/float64(p(0, 0.99)), "Dialer/crypto-tls-p99")
	b.ReportMetric(float64(p(2, 0.99))/float64(p(0, 0.99)), "TCPDialer/crypto-tls-p99")
}

// round runs n dials at once and returns their handshake latencies.
func round(b *testing.B, dial dialFunc, addr string, n int) []time.Duration {
	var wg sync.WaitGroup
	out := make([]time.Duration, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			c, err := dial(context.Background(), addr)
			if err != nil {
				b.Error(err)
				return
			}
			out[i] = time.Since(t0)
			c.Close()
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// slowHelloServer runs a TLS server that holds every ClientHello for
// delay before answering, and returns its address and a client config.
func slowHelloServer(b *testing.B, delay time.Duration) (string, *tls.Config) {
	addr, cfg, _ := countingSlowServer(b, delay)
	return addr, cfg
}
