package tlswatch

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/testcert"
)

// BenchmarkHandshakeWatched measures TLS handshakes over loopback through
// a watched listener and through the same listener unwatched, in turns in
// one run, and reports their throughput ratio (watched/unwatched; the
// target is ≥ 0.95). A second unwatched listener, in the same turns, gives
// the noise floor of that ratio on this machine (unwatched/unwatched, 1
// on a quiet one). Each iteration is one handshake of each, in an order
// that rotates.
func BenchmarkHandshakeWatched(b *testing.B) {
	srvCfg, cliCfg, err := testcert.Configs([]string{"watch.test"}, 0)
	if err != nil {
		b.Fatal(err)
	}
	w := &Watcher{Logger: slog.New(slog.DiscardHandler)}
	same := func(ln net.Listener) net.Listener { return ln }
	addrs := [3]string{serveBench(b, same, srvCfg), serveBench(b, w.Wrap, srvCfg), serveBench(b, same, srvCfg)}
	hs := func(addr string) time.Duration {
		t0 := time.Now()
		c, err := tls.Dial("tcp", addr, cliCfg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadAll(c); err != nil {
			b.Fatal(err)
		}
		c.Close()
		return time.Since(t0)
	}
	var d [3]time.Duration
	for _, a := range addrs {
		hs(a)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for k := range 3 {
			j := (i + k) % 3
			d[j] += hs(addrs[j])
		}
	}
	b.ReportMetric(float64(d[0])/float64(d[1]), "watched/unwatched")
	b.ReportMetric(float64(d[0])/float64(d[2]), "unwatched/unwatched")
	b.ReportMetric(float64(d[1])/float64(b.N), "ns/watched-hs")
	b.ReportMetric(float64(d[0])/float64(b.N), "ns/unwatched-hs")
}

// serveBench serves TLS on a loopback listener wrapped by wrap: a
// handshake, "ok", close.
func serveBench(b *testing.B, wrap func(net.Listener) net.Listener, cfg *tls.Config) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	testcert.Serve(b, tls.NewListener(wrap(ln), cfg), func(c net.Conn, _ func(net.Conn)) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if c.(*tls.Conn).Handshake() == nil {
			c.Write([]byte("ok"))
		}
	})
	return ln.Addr().String()
}
