package tlsdial_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/testcert"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlsdial"
)

// BenchmarkExchangeOverhead prices what TCPDialer adds to one exchange,
// without the TLS work that dwarfs it in BenchmarkHandshakeRatio: connect,
// write a ClientHello-shaped record, read the server's 5-byte answer,
// close; against the same with net.Dialer, paired in a random order. It
// reports the median of the paired differences in µs, for TCPDialer as
// configured by default, with TimerOnly, and with replay off. The server
// answers at once, or after spinning a CPU for 300 µs, about what a
// loopback TLS server spends on its first flight:
//
//	go test -run '^$' -bench ExchangeOverhead -benchtime 5000x -count 3 ./tlsdial/
func BenchmarkExchangeOverhead(b *testing.B) {
	for _, busy := range []time.Duration{0, 300 * time.Microsecond} {
		for _, v := range []struct {
			name string
			td   tlsdial.TCPDialer
		}{
			{"TCPDialer", tlsdial.TCPDialer{}},
			// What polling TCP_INFO adds: a timer instead.
			{"TCPDialer-TimerOnly", tlsdial.TCPDialer{TimerOnly: true}},
			// What watching the hello adds: none of it.
			{"TCPDialer-replay-off", tlsdial.TCPDialer{StallWindow: -1}},
		} {
			b.Run(fmt.Sprintf("server-busy=%v/%s", busy, v.name), func(b *testing.B) {
				addr := exchangeServer(b, busy)
				nd, td := &net.Dialer{}, &v.td
				td.Cache = &pmtu.Cache{}
				b.ReportMetric(pairedDiff(b, nd.DialContext, td.DialContext, addr), "µs-added")
			})
		}
	}
}

// pairedDiff runs base and dut one exchange each per iteration, in a
// random order (pairedRuns), and returns the median of the differences
// dut-base in µs.
func pairedDiff(b *testing.B, base, dut func(context.Context, string, string) (net.Conn, error), addr string) float64 {
	xs, ys := pairedRuns(b, 20,
		func() time.Duration { return exchangeOnce(b, base, addr) },
		func() time.Duration { return exchangeOnce(b, dut, addr) })
	diffs := make([]float64, len(xs))
	for i := range xs {
		diffs[i] = float64(ys[i]-xs[i]) / float64(time.Microsecond)
	}
	slices.Sort(diffs)
	return diffs[len(diffs)/2]
}

// exchangeServer serves the exchange until the benchmark ends: it reads
// one exchangeHello, spins for busy, answers with 5 bytes and reads until
// the client closes.
func exchangeServer(b *testing.B, busy time.Duration) string {
	ln := testcert.Listen(b)
	testcert.Serve(b, ln, func(c net.Conn, _ func(net.Conn)) {
		buf := make([]byte, len(exchangeHello))
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		for t0 := time.Now(); time.Since(t0) < busy; {
		}
		c.Write([]byte{22, 3, 3, 0, 0})
		io.Copy(io.Discard, c)
	})
	return ln.Addr().String()
}

func exchangeOnce(b *testing.B, dial func(context.Context, string, string) (net.Conn, error), addr string) time.Duration {
	t0 := time.Now()
	c, err := dial(context.Background(), "tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Write(exchangeHello); err != nil {
		b.Fatal(err)
	}
	var ans [5]byte
	if _, err := io.ReadFull(c, ans[:]); err != nil {
		b.Fatal(err)
	}
	d := time.Since(t0)
	c.Close()
	return d
}

// exchangeHello is a ClientHello-shaped record of 1500 bytes, one record
// holding one handshake message of type 1: what TCPDialer watches.
var exchangeHello = func() []byte {
	b := make([]byte, 1500)
	rec, msg := len(b)-5, len(b)-9
	b[0], b[1], b[2] = 22, 3, 1
	b[3], b[4] = byte(rec>>8), byte(rec)
	b[5] = 1
	b[6], b[7], b[8] = byte(msg>>16), byte(msg>>8), byte(msg)
	return b
}()
