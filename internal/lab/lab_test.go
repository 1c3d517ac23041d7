//go:build linux

package lab_test

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var flagMTU = flag.Int("labmtu", lab.DefaultMTU, "N of the main lab matrix (1280..1500)")

func TestMain(m *testing.M) {
	flag.Parse()
	// Lab subtests mostly wait on timers (bounds, stall windows), not on
	// the CPU: unless -parallel was given, run more than GOMAXPROCS at once.
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", "6")
	}
	lab.Main(m)
}

// Bounds.
const (
	stockBound    = 1500 * time.Millisecond // stock crypto/tls, curl, s_client
	fitshakeBound = 8 * time.Second         // fitshake dials and requests
)

// First-flight sizes in bytes (TLS records); FirstPacket turns them into
// the largest packet carrying them. The Go clients' hellos are read, not
// assumed (goHello, fitshakeHello): they change with the toolchain. The
// others are approximate, measured in the healthy lab.
const (
	helloOpenSSL = 520  // curl and s_client on OpenSSL 3.0: X25519 only, padded to 512
	flightSmall  = 1100 // ServerHello … Finished with the small ECDSA certificate and X25519
	flightPQ     = 1900 // the same from the Go server to a client offering X25519MLKEM768 (1088-byte share)
	flightLong   = 5300 // RSA-4096 leaf + 2 intermediates + a 512-byte CertificateVerify
)

type serverSpec struct {
	name   string
	port   int // 0: an openssl s_server per client, on NextPort
	chain  lab.Chain
	path   string
	http2  bool
	flight func(pq bool) int
}

var servers = []serverSpec{
	{"nginx-small", lab.PortNginxSmall, lab.Small, "/", true, func(bool) int { return flightSmall }},
	{"nginx-long", lab.PortNginxLong, lab.Long, "/", true, func(bool) int { return flightLong }},
	{"openssl", 0, lab.Small, lab.OpenSSLPath, false, func(bool) int { return flightSmall }},
	{"go", lab.PortGo, lab.Small, "/", true, func(pq bool) int {
		if pq {
			return flightPQ
		}
		return flightSmall
	}},
}

type clientSpec struct {
	name  string
	hello func(testing.TB) int // its first flight, in bytes
	pq    bool                 // offers X25519MLKEM768
	// fitshake clients must complete everywhere; the others complete
	// exactly where the path carries their flights.
	fitshake bool
}

var clients = []clientSpec{
	{lab.StockTLS, goHello, true, false},
	{"curl", openSSLHello, false, false},
	{"s_client", openSSLHello, false, false},
	{lab.FitshakeDialer, fitshakeHello, true, true},
	{lab.FitshakeHTTP, goHello, true, true}, // TCPDialer carries crypto/tls's hello
}

func openSSLHello(testing.TB) int { return helloOpenSSL }

var (
	goHelloOnce = sync.OnceValues(func() (int, error) {
		return lab.GoHelloSize(&tls.Config{ServerName: lab.ServerName, NextProtos: []string{"h2", "http/1.1"}})
	})
	fitshakeHelloOnce = sync.OnceValues(func() (int, error) {
		d := &tlsdial.Dialer{Config: &tls.Config{ServerName: lab.ServerName, NextProtos: []string{"h2", "http/1.1"}}}
		steps, err := d.Ladder(net.JoinHostPort(lab.ServerName, "443"))
		if err != nil {
			return 0, err
		}
		return steps[0].HelloSize, nil
	})
)

// goHello is the size of the ClientHello record crypto/tls sends with the
// lab clients' Config (SNI lab.ServerName, ALPN h2 and http/1.1): the stock
// client's, and the one TCPDialer carries under crypto/tls and net/http.
// It is read from the crypto/tls of the toolchain that built this test
// binary, which the lab re-executes for its clients: Go 1.27's is 12 bytes
// larger than Go 1.26's (ML-DSA signature algorithms).
func goHello(t testing.TB) int {
	t.Helper()
	n, err := goHelloOnce()
	require.NoError(t, err)
	return n
}

// fitshakeHello is the size of tlsdial.Dialer's first ClientHello with the
// lab clients' Config, from its Ladder.
func fitshakeHello(t testing.TB) int {
	t.Helper()
	n, err := fitshakeHelloOnce()
	require.NoError(t, err)
	return n
}

// broken reports whether the lab loses the client's or the server's first
// flight for good.
func broken(t testing.TB, cfg lab.Config, f lab.Family, c clientSpec, s serverSpec) bool {
	return cfg.Lost(f, lab.Upstream, lab.FirstPacket(f, c.hello(t))) ||
		cfg.Lost(f, lab.Downstream, lab.FirstPacket(f, s.flight(c.pq)))
}

func matrix(n int) []lab.Config {
	return []lab.Config{
		{Scenario: lab.Healthy},
		{Scenario: lab.PMTUDOK, MTU: n},
		{Scenario: lab.MTUICMPBlocked, MTU: n},
		{Scenario: lab.FragmentsDropped, MTU: n},
		{Scenario: lab.Blackhole, MTU: n, Direction: lab.Both},
		{Scenario: lab.Blackhole, MTU: n, Direction: lab.Upstream},
		{Scenario: lab.Blackhole, MTU: n, Direction: lab.Downstream},
	}
}

// TestLab runs every scenario × family × server × client. Test names read
// TestLab/SCENARIO-N/FAMILY/SERVER/CLIENT.
func TestLab(t *testing.T) {
	lab.Require(t)
	for _, cfg := range matrix(*flagMTU) {
		t.Run(cfg.String(), func(t *testing.T) {
			t.Parallel()
			runScenario(t, cfg, servers, clients)
		})
	}
}

// TestLabMTUs runs the both-direction black hole at other path MTUs (PPPoE
// 1492, IPv6's minimum 1280) with fewer servers and clients.
func TestLabMTUs(t *testing.T) {
	lab.Require(t)
	for _, n := range []int{1280, 1492} {
		if n == *flagMTU {
			continue
		}
		cfg := lab.Config{Scenario: lab.Blackhole, MTU: n}
		t.Run(cfg.String(), func(t *testing.T) {
			t.Parallel()
			runScenario(t, cfg, servers[:2], []clientSpec{clients[0], clients[3], clients[4]})
		})
	}
}

func runScenario(t *testing.T, cfg lab.Config, servers []serverSpec, clients []clientSpec) {
	l := lab.New(t, cfg)
	cfg = l.Config()
	_, err := l.StartNginx()
	require.NoError(t, err)
	_, err = l.StartGoServer()
	require.NoError(t, err)
	pki, err := l.PKI()
	require.NoError(t, err)

	anyBroken := false
	for _, f := range lab.Families() {
		for _, s := range servers {
			for _, c := range clients {
				want := !broken(t, cfg, f, c, s)
				anyBroken = anyBroken || !want
				t.Run(fmt.Sprintf("%s/%s/%s", f, s.name, c.name), func(t *testing.T) {
					t.Parallel()
					port := s.port
					if port == 0 {
						port = l.NextPort()
						_, err := l.StartOpenSSL(f, port, s.chain)
						require.NoError(t, err)
					}
					addr := l.Addr(f, port)
					ctx := context.Background()
					switch {
					case c.name == "curl" || c.name == "s_client":
						var r lab.ToolResult
						if c.name == "curl" {
							r = l.Curl(ctx, f, port, s.path, stockBound)
						} else {
							r = l.SClient(ctx, f, port, stockBound)
						}
						if want {
							assert.True(t, r.OK, "%s should complete on this path: %v", c.name, r.Err)
						} else {
							assert.False(t, r.OK, "%s completed in %v though the lab loses its flights", c.name, r.Elapsed)
						}
						t.Logf("%s: ok=%v in %v", c.name, r.OK, r.Elapsed.Round(time.Millisecond))
					case !c.fitshake:
						res, err := l.Dial(ctx, c.name, lab.DialArgs{Addr: addr, CAFile: pki.CAFile, Timeout: stockBound, ClearDF: cfg.ClearDF()})
						require.NoError(t, err)
						r := res.Runs[0]
						if want {
							assert.True(t, r.OK, "stock crypto/tls should complete on this path: %s", r.Err)
						} else {
							assert.False(t, r.OK, "stock crypto/tls completed in %v though the lab loses its flights", r.Elapsed)
						}
						t.Logf("%s: ok=%v in %v %s", c.name, r.OK, r.Elapsed.Round(time.Millisecond), r.Err)
					default:
						res, err := l.Dial(ctx, c.name, lab.DialArgs{Addr: addr, Path: s.path, CAFile: pki.CAFile, Timeout: fitshakeBound, ClearDF: cfg.ClearDF()})
						require.NoError(t, err)
						r := res.Runs[0]
						t.Logf("%s: ok=%v handshake %v, %s", c.name, r.OK, r.Elapsed.Round(time.Millisecond), r.Report)
						require.True(t, r.OK, "%s failed: %s (%s)", c.name, r.Err, r.Report)
						require.NotNil(t, r.Report)
						checkReport(t, cfg, f, want, r.Report)
						assert.Equal(t, c.hello(t), r.Report.HelloSize, "the %s ClientHello (%s): %s", c.name, runtime.Version(), r.Report)
						if c.name == lab.FitshakeHTTP {
							assert.Equal(t, 200, r.Status)
							if s.http2 {
								assert.Equal(t, "HTTP/2.0", r.Proto, "body %q", r.Body)
							}
						}
					}
				})
			}
		}
	}
	t.Cleanup(func() {
		drops, err := l.Drops()
		if err != nil {
			t.Error(err)
			return
		}
		t.Logf("router/server drop counters: %v", drops)
		if anyBroken {
			var total int64
			for _, v := range drops {
				total += v
			}
			assert.Positive(t, total, "the lab should have dropped something")
		}
	})
}

// checkReport asserts what fitshake's report must say: on a broken path a
// clamp that fits it; on a working path no clamp and one attempt.
func checkReport(t *testing.T, cfg lab.Config, f lab.Family, pathWorks bool, r *lab.Report) {
	t.Helper()
	if pathWorks {
		assert.Zero(t, r.MSS, "fitshake clamped on a working path: %s", r)
		assert.Len(t, r.Attempts, 1, "fitshake retried on a working path: %s", r)
		return
	}
	assert.Positive(t, r.MSS, "no clamp on a broken path: %s", r)
	assert.LessOrEqual(t, r.MSS, cfg.MaxMSS(f), "the clamp does not fit N=%d: %s", cfg.N(), r)
	assert.Greater(t, len(r.Attempts), 1, "%s", r)
}

func TestConfig(t *testing.T) {
	tests := []struct {
		cfg      lab.Config
		wantName string
		wantErr  bool
	}{
		{lab.Config{}, "healthy", false},
		{lab.Config{Scenario: lab.Blackhole}, "blackhole-both-1400", false},
		{lab.Config{Scenario: lab.Blackhole, Direction: lab.Downstream, MTU: 1280}, "blackhole-downstream-1280", false},
		{lab.Config{Scenario: lab.PMTUDOK, Direction: lab.Upstream}, "pmtud-ok-1400", false},
		{lab.Config{Scenario: lab.MTUICMPBlocked, MTU: 576}, "mtu-icmp-blocked-576", true},
		{lab.Config{Scenario: lab.PMTUDOK, MTU: 1279}, "pmtud-ok-1279", true},
		{lab.Config{Scenario: lab.Blackhole, MTU: 576}, "blackhole-both-576", false},
		{lab.Config{Scenario: lab.Reset, MTU: 575}, "reset-both-575", true},
		{lab.Config{Scenario: lab.SplitIntolerant, MTU: 1280}, "split-intolerant-drop", false},
		{lab.Config{Scenario: lab.SplitIntolerant, Reject: lab.RejectReset}, "split-intolerant-reset", false},
		{lab.Config{Scenario: lab.SplitIntolerant, Reject: "bounce"}, "split-intolerant-bounce", true},
		{lab.Config{Scenario: lab.SizeIntolerant}, "size-intolerant-reset-1400", false},
		{lab.Config{Scenario: lab.SizeIntolerant, Reject: lab.RejectDrop, HelloLimit: 1000}, "size-intolerant-drop-1000", false},
		{lab.Config{Scenario: lab.SizeIntolerant, HelloLimit: 5}, "size-intolerant-reset-5", true},
		{lab.Config{Scenario: lab.Blackhole, Reject: lab.RejectReset, HelloLimit: 9}, "blackhole-both-1400", false},
		{lab.Config{Scenario: "nope"}, "nope-1400", true},
		{lab.Config{Scenario: lab.Squid, MTU: 1280}, "squid", false},
		{lab.Config{Scenario: lab.Squid, Squid: lab.SquidConfig{Block: []string{"a.b"}, ResolverDelay: 900 * time.Millisecond, FarMTU: 1400}},
			"squid-block-resolver-900ms-far-1400", false},
		{lab.Config{Scenario: lab.Squid, Squid: lab.SquidConfig{FarMTU: 500}}, "squid-far-500", true},
		{lab.Config{Scenario: lab.Squid, Squid: lab.SquidConfig{ResolverDelay: -1}}, "squid", true},
		{lab.Config{Scenario: lab.Squid, Squid: lab.SquidConfig{Block: []string{"a b"}}}, "squid-block", true},
		{lab.Config{Scenario: lab.Healthy, Squid: lab.SquidConfig{FarMTU: 500}}, "healthy", false},
	}
	for _, tt := range tests {
		t.Run(tt.wantName, func(t *testing.T) {
			assert.Equal(t, tt.wantName, tt.cfg.String())
			assert.Equal(t, tt.wantErr, tt.cfg.Validate() != nil)
		})
	}
	bh := lab.Config{Scenario: lab.Blackhole, Direction: lab.Upstream}
	assert.True(t, bh.Lost(lab.IPv4, lab.Upstream, 1500))
	assert.False(t, bh.Lost(lab.IPv4, lab.Downstream, 1500))
	assert.False(t, bh.Lost(lab.IPv4, lab.Upstream, 1400))
	rs := lab.Config{Scenario: lab.Reset, Direction: lab.Upstream}
	assert.Equal(t, "reset-upstream-1400", rs.String())
	assert.Equal(t, "reset-both-1400", lab.Config{Scenario: lab.Reset}.String())
	assert.True(t, rs.Lost(lab.IPv6, lab.Upstream, 1500))
	assert.True(t, rs.Resets(lab.Upstream, 1500))
	assert.False(t, rs.Resets(lab.Upstream, 1400))
	rsd := lab.Config{Scenario: lab.Reset, Direction: lab.Downstream}
	assert.True(t, rsd.Lost(lab.IPv4, lab.Downstream, 1500))
	assert.False(t, rsd.Resets(lab.Downstream, 1500), "the server is reset, the client sees a black hole")
	assert.False(t, bh.Resets(lab.Upstream, 1500))
	fd := lab.Config{Scenario: lab.FragmentsDropped}
	assert.True(t, fd.Lost(lab.IPv4, lab.Upstream, 1500))
	assert.False(t, fd.Lost(lab.IPv6, lab.Upstream, 1500))
	assert.Equal(t, 1500, lab.FirstPacket(lab.IPv4, 5000))
	assert.Equal(t, 1500, lab.FirstPacket(lab.IPv6, 5000))
	assert.Equal(t, 572, lab.FirstPacket(lab.IPv4, 520))
	assert.Equal(t, 1360, bh.MaxMSS(lab.IPv4))
	assert.Equal(t, 1340, bh.MaxMSS(lab.IPv6))
	assert.Equal(t, 1500, lab.Config{MTU: 1280}.N(), "healthy ignores MTU")
	split := lab.Config{Scenario: lab.SplitIntolerant}
	assert.Equal(t, 1500, split.N(), "a middlebox ignores MTU")
	assert.True(t, split.Refuses(1473, 1448), "a record longer than its segment")
	assert.False(t, split.Refuses(1420, 1448), "a record in one segment, however large")
	assert.False(t, split.Lost(lab.IPv4, lab.Upstream, 1500), "no packet is lost for its size")
	size := lab.Config{Scenario: lab.SizeIntolerant, HelloLimit: 1000}
	assert.True(t, size.Refuses(1001, 1448))
	assert.False(t, size.Refuses(1000, 536), "whatever the segmentation")
	assert.False(t, bh.Refuses(5000, 100))
	sq := lab.Config{Scenario: lab.Squid, Squid: lab.SquidConfig{FarMTU: 1400}}
	assert.Equal(t, 1500, sq.N(), "the client's side of Squid carries 1500")
	assert.False(t, sq.Lost(lab.IPv4, lab.Upstream, 1500), "Squid acknowledges what the far side loses")
	sqp, err := lab.ParseScenario("squid")
	assert.NoError(t, err)
	assert.Equal(t, lab.Squid, sqp)
}
