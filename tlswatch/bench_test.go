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
// one run, and reports their throughput ratio (watched / unwatched; the
// target is ≥ 0.95). Each iteration is one handshake of each.
func BenchmarkHandshakeWatched(b *testing.B) {
	srvCfg, cliCfg, err := testcert.Configs([]string{"watch.test"}, 0)
	if err != nil {
		b.Fatal(err)
	}
	w := &Watcher{Logger: slog.New(slog.DiscardHandler)}
	plain := serveBench(b, func(ln net.Listener) net.Listener { return ln }, srvCfg)
	watched := serveBench(b, w.Wrap, srvCfg)
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
	hs(plain)
	hs(watched)
	var dPlain, dWatched time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 { // alternate which goes first
			dPlain += hs(plain)
			dWatched += hs(watched)
		} else {
			dWatched += hs(watched)
			dPlain += hs(plain)
		}
	}
	b.ReportMetric(float64(dPlain)/float64(dWatched), "watched/unwatched")
	b.ReportMetric(float64(dWatched)/float64(b.N), "ns/watched-hs")
	b.ReportMetric(float64(dPlain)/float64(b.N), "ns/unwatched-hs")
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
