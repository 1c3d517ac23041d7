package tlswatch

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/testcert"
)

// loadConns is how many handshakes BenchmarkListenLoad starts at once.
const loadConns = 1000

// BenchmarkListenLoad measures bursts of 1000 concurrent TLS handshakes
// over loopback through a listener of Watcher.Listen (the watcher and its
// self-fix machinery: reuseport twins, their steering program, with 100
// other prefixes clamped so that every SYN runs it) and through a plain
// listener of the same server, unwatched, in turns in one run (the order
// alternates). Each iteration is one burst of each. It reports their
// throughput ratio (watched/unwatched: the unwatched burst's time over
// the watched one's; the target is ≥ 0.95) and the time per handshake of
// each. Client and server share the machine, as they do in the lab.
func BenchmarkListenLoad(b *testing.B) {
	srvCfg, cliCfg, err := testcert.Configs([]string{"watch.test"}, 0)
	if err != nil {
		b.Fatal(err)
	}
	w := &Watcher{Logger: slog.New(slog.DiscardHandler), Policy: Policy{After: 1}}
	watched, err := w.Listen(b.Context(), "tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	for i := range 100 { // other networks, clamped: the program has work
		w.record(tcpAddr(net.JoinHostPort(net.IPv4(10, byte(i), 0, 1).String(), "1")), upstreamObs)
	}
	if n := len(w.Clamped()); n != 100 {
		b.Fatalf("%d prefixes clamped, want 100", n)
	}
	plain, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addrs := [2]string{serveLoad(b, plain, srvCfg), serveLoad(b, watched, srvCfg)}
	burst(b, addrs[0], cliCfg) // warm both up
	burst(b, addrs[1], cliCfg)
	var d [2]time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for k := range 2 {
			j := (i + k) % 2
			d[j] += burst(b, addrs[j], cliCfg)
		}
	}
	b.ReportMetric(float64(d[0])/float64(d[1]), "watched/unwatched")
	b.ReportMetric(float64(d[1])/float64(b.N*loadConns), "ns/watched-hs")
	b.ReportMetric(float64(d[0])/float64(b.N*loadConns), "ns/unwatched-hs")
	if p := w.Pending(); p != 0 {
		b.Errorf("%d connections still wait for a verdict", p)
	}
}

// burst makes loadConns handshakes with addr at once and returns the time
// until the last completed; any that fails fails b.
func burst(b *testing.B, addr string, cfg *tls.Config) time.Duration {
	var (
		wg     sync.WaitGroup
		start  = make(chan struct{})
		failed atomic.Int32
		first  atomic.Value
	)
	for range loadConns {
		wg.Go(func() {
			<-start
			d := tls.Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: 30 * time.Second}}
			c, err := d.Dial("tcp", addr)
			if err == nil {
				_, err = io.ReadAll(c)
				c.Close()
			}
			if err != nil {
				failed.Add(1)
				first.CompareAndSwap(nil, err)
			}
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	el := time.Since(t0)
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d handshakes with %s failed, the first: %v", n, loadConns, addr, first.Load())
	}
	return el
}

// serveLoad serves TLS on ln: a handshake, "ok", close.
func serveLoad(b *testing.B, ln net.Listener, cfg *tls.Config) string {
	testcert.Serve(b, tls.NewListener(ln, cfg), func(c net.Conn, _ func(net.Conn)) {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if c.(*tls.Conn).Handshake() == nil {
			c.Write([]byte("ok"))
		}
	})
	return ln.Addr().String()
}
