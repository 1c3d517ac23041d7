package fingerprint

import (
	"context"
	"crypto/tls"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/testcert"
	"github.com/fitshake/fitshake/internal/utlsconv"
	utls "github.com/refraction-networking/utls"
	"github.com/stretchr/testify/require"
)

// The cost of a handshake with a built Hello against crypto/tls's own
// client, without tlsdial's engine: both dial the same crypto/tls server on
// loopback and negotiate the same group, X25519MLKEM768 (pq) or X25519
// (x25519).
//
//	go test -run '^$' -bench HandshakeVsCryptoTLS -benchtime 3s -count 5 ./fingerprint/
//
// BenchmarkHandshakeVsCryptoTLS interleaves them so that all see the same
// machine load and reports ratios of total times; BenchmarkHandshake runs
// each alone, for CPU and allocation profiles. On a shared machine, compare
// ratios from one run, never times from different runs.

// benchServer is a crypto/tls server on loopback that completes handshakes
// and reads until the client closes, with a certificate chain like
// tlsdial's tests (ECDSA P-256 leaf and CA).
type benchServer struct {
	addr   string
	client *tls.Config // verifies the server, ALPN h2 and http/1.1
}

func startBenchServer(b *testing.B, curves ...tls.CurveID) *benchServer {
	b.Helper()
	srvCfg, cliCfg, err := testcert.Configs([]string{testServerName, "127.0.0.1"}, 0)
	require.NoError(b, err)
	srvCfg.NextProtos = []string{"h2", "http/1.1"}
	srvCfg.CurvePreferences = curves
	cliCfg.NextProtos = []string{"h2", "http/1.1"}
	ln := tls.NewListener(testcert.Listen(b), srvCfg)
	testcert.Serve(b, ln, func(c net.Conn, _ func(net.Conn)) { io.Copy(io.Discard, c) })
	return &benchServer{addr: ln.Addr().String(), client: cliCfg}
}

type benchDial func(ctx context.Context) (net.Conn, tls.CurveID, error)

// cryptoTLSDial is crypto/tls's client, as tls.Dialer runs it.
func (s *benchServer) cryptoTLSDial() benchDial {
	d := &tls.Dialer{Config: s.client}
	return func(ctx context.Context) (net.Conn, tls.CurveID, error) {
		c, err := d.DialContext(ctx, "tcp4", s.addr)
		if err != nil {
			return nil, 0, err
		}
		return c, c.(*tls.Conn).ConnectionState().CurveID, nil
	}
}

type buildFunc func(Rung, *utls.Config, Options) (*Hello, error)

// helloDial is what tlsdial does for one attempt: the Config converted once,
// cloned per connection, a Hello built (by build: Build, or buildUTLSKeys
// for comparison) before dialling.
func (s *benchServer) helloDial(build buildFunc, r Rung) benchDial {
	ucfg := utlsconv.Config(s.client)
	opts := OptionsFrom(s.client, testServerName)
	var nd net.Dialer
	return func(ctx context.Context) (net.Conn, tls.CurveID, error) {
		h, err := build(r, ucfg.Clone(), opts)
		if err != nil {
			return nil, 0, err
		}
		raw, err := nd.DialContext(ctx, "tcp4", s.addr)
		if err != nil {
			return nil, 0, err
		}
		h.Conn.SetUnderlyingConn(raw)
		if err := h.Conn.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, 0, err
		}
		return h.Conn, utlsconv.CurveID(h.Conn), nil
	}
}

// buildUTLSKeys is Build without shareX25519: utls generates the key
// shares, a separate X25519 key for the hybrid share. It is the reference
// that BenchmarkHandshakeVsCryptoTLS measures Build against.
func buildUTLSKeys(r Rung, cfg *utls.Config, o Options) (*Hello, error) {
	spec, p, err := r.spec(o)
	if err != nil {
		return nil, err
	}
	for _, e := range spec.Extensions {
		if ri, ok := e.(*utls.RenegotiationInfoExtension); ok {
			ri.Renegotiation = cfg.Renegotiation
		}
	}
	if o.ServerName != "" {
		cfg.ServerName = o.ServerName
	}
	uc := utls.UClient(nil, cfg, utls.HelloCustom)
	if err := uc.ApplyPreset(spec); err != nil {
		return nil, err
	}
	if err := uc.BuildHandshakeState(); err != nil {
		return nil, err
	}
	n := len(uc.HandshakeState.Hello.Raw)
	return &Hello{Conn: uc, RecordSize: n + recordHeaderLen, Rung: r, PostQuantum: p.postQuantum}, nil
}

func benchHandshakeOnce(b *testing.B, dial benchDial, wantCurve tls.CurveID) time.Duration {
	t0 := time.Now()
	c, curve, err := dial(context.Background())
	d := time.Since(t0)
	if err != nil {
		b.Fatal(err)
	}
	if curve != wantCurve {
		b.Fatalf("negotiated %v, want %v", curve, wantCurve)
	}
	c.Close()
	return d
}

// BenchmarkHandshakeVsCryptoTLS reports Hello/crypto-tls, the total time of
// handshakes with a Hello from Build over that of crypto/tls's client, and
// utls-keys/crypto-tls, the same with the key shares left to utls
// (buildUTLSKeys), one of each per operation in a random order, against
// servers choosing the hybrid group (pq) and X25519 alone (x25519).
func BenchmarkHandshakeVsCryptoTLS(b *testing.B) {
	for _, bc := range []struct {
		name  string
		curve tls.CurveID
	}{
		{"pq", tls.X25519MLKEM768},
		{"x25519", tls.X25519},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := startBenchServer(b, bc.curve)
			dials := []benchDial{
				srv.cryptoTLSDial(),
				srv.helloDial(Build, rungPostQuantum),
				srv.helloDial(buildUTLSKeys, rungPostQuantum),
			}
			total := make([]time.Duration, len(dials))
			order := make([]int, len(dials))
			for i := range order {
				order[i] = i
			}
			rng := rand.New(rand.NewPCG(1, 2))
			for b.Loop() {
				// A new order every time: a dial pays for what the one
				// before left running (server goroutines, GC), and a
				// fixed or rotated order gives each the same predecessor.
				rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
				for _, k := range order {
					total[k] += benchHandshakeOnce(b, dials[k], bc.curve)
				}
			}
			b.ReportMetric(float64(total[1])/float64(total[0]), "Hello/crypto-tls")
			b.ReportMetric(float64(total[2])/float64(total[0]), "utls-keys/crypto-tls")
		})
	}
}

// BenchmarkHandshake runs one client alone per sub-benchmark, for profiles:
//
//	go test -run '^$' -bench 'Handshake$/pq/hello' -cpuprofile cpu.out ./fingerprint/
func BenchmarkHandshake(b *testing.B) {
	for _, sc := range []struct {
		name  string
		curve tls.CurveID
	}{
		{"pq", tls.X25519MLKEM768},
		{"x25519", tls.X25519},
	} {
		srv := startBenchServer(b, sc.curve)
		for _, bc := range []struct {
			name string
			dial benchDial
		}{
			{"crypto-tls", srv.cryptoTLSDial()},
			{"hello", srv.helloDial(Build, rungPostQuantum)},
			{"utls-keys", srv.helloDial(buildUTLSKeys, rungPostQuantum)},
		} {
			b.Run(sc.name+"/"+bc.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					benchHandshakeOnce(b, bc.dial, sc.curve)
				}
			})
		}
	}
}

// BenchmarkBuild is the cost of building a Hello alone.
func BenchmarkBuild(b *testing.B) {
	for _, r := range Ladder(true) {
		b.Run(r.Name, func(b *testing.B) {
			cfg := utlsconv.Config(&tls.Config{ServerName: testServerName, NextProtos: h2})
			opts := Options{ServerName: testServerName, NextProtos: h2}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Build(r, cfg.Clone(), opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
