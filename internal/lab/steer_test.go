//go:build linux

package lab_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/fitshake/fitshake/internal/steer"
	"github.com/fitshake/fitshake/pmtu"
)

// The client's second network for TestLabSteer: a source in another /24
// and /48 than the lab's own client address, on the same link.
var (
	otherSrc4 = netip.MustParseAddr("198.18.2.3")
	otherSrc6 = netip.MustParseAddr("fd00:198:19::3")
)

// steerServerArgs are the arguments of the steer-server: a Go crypto/tls +
// net/http server on a steer.Group.
type steerServerArgs struct {
	CertFile, KeyFile string
	Port              int
	MSS               int
	Clamp             []netip.Prefix
}

// steerClientArgs are the arguments of the steer-client: a stock
// crypto/tls dial from a chosen source address.
type steerClientArgs struct {
	Src    netip.Addr
	Addr   string
	CAFile string
}

// steerClientResult is the client's view of one connection: its send MSS
// right after connect (bounded by the MSS in the server's SYN-ACK) and
// the handshake's outcome.
type steerClientResult struct {
	SndMSS  int
	OK      bool
	Err     string
	Elapsed time.Duration
}

func init() {
	lab.RegisterServer("steer-server", steerServer)
	lab.RegisterClient("steer-client", steerClient)
}

func steerServer(ctx context.Context, raw json.RawMessage, ready func(any)) error {
	var a steerServerArgs
	if err := json.Unmarshal(raw, &a); err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile)
	if err != nil {
		return err
	}
	g, err := steer.Listen(ctx, "tcp", fmt.Sprintf("[::]:%d", a.Port), a.MSS)
	if err != nil {
		return err
	}
	defer g.Close()
	if err := g.SetClamped(a.Clamp); err != nil {
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "ok %s\n", r.Proto) }),
		TLSConfig: &tls.Config{
			Certificates:           []tls.Certificate{cert},
			NextProtos:             []string{"h2", "http/1.1"},
			SessionTicketsDisabled: true,
		},
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(g, "", "") }()
	ready(map[string]any{"addr": g.Addr().String(), "clamped": g.Clamped(), "mss": g.MSS()})
	select {
	case <-ctx.Done():
		srv.Close()
		return nil
	case err := <-errc:
		return err
	}
}

func steerClient(ctx context.Context, raw json.RawMessage) (any, error) {
	var a steerClientArgs
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(a.CAFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(a.Src, 0))}
	t0 := time.Now()
	c, err := d.DialContext(ctx, "tcp", a.Addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var r steerClientResult
	if r.SndMSS, err = pmtu.EffectiveMSS(c); err != nil {
		return nil, err
	}
	tc := tls.Client(c, &tls.Config{ServerName: lab.ServerName, RootCAs: roots})
	if err := tc.HandshakeContext(ctx); err != nil {
		r.Err = err.Error()
	} else {
		r.OK = true
	}
	r.Elapsed = time.Since(t0)
	return r, nil
}

// addOtherNetwork gives the client namespace its second network (otherSrc4
// and otherSrc6 on c0) and the router routes to it.
func addOtherNetwork(t *testing.T, l *lab.Lab) {
	t.Helper()
	mac, err := l.Command(t.Context(), lab.Client, "cat", "/sys/class/net/c0/address").Output()
	require.NoError(t, err)
	mustRun(t, l, lab.Client, "ip", "-4", "addr", "add", otherSrc4.String()+"/24", "dev", "c0")
	mustRun(t, l, lab.Client, "ip", "-6", "addr", "add", otherSrc6.String()+"/64", "dev", "c0", "nodad")
	mustRun(t, l, lab.Router, "ip", "-4", "route", "add", "198.18.2.0/24", "dev", "r0")
	mustRun(t, l, lab.Router, "ip", "-6", "route", "add", "fd00:198:19::/64", "dev", "r0")
	for _, a := range []netip.Addr{otherSrc4, otherSrc6} {
		mustRun(t, l, lab.Router, "ip", "neigh", "replace", a.String(), "lladdr", strings.TrimSpace(string(mac)), "dev", "r0", "nud", "permanent")
	}
}

// TestLabSteer is the server's own fix: a Go TLS server on a steer.Group
// whose clamped twin has MSS 1340 (pmtu.MSSForMTU(1400, true), which fits
// both families), with the long certificate chain (a flight of over 4 KB)
// so that both directions of a black hole break it. Through a 1400-byte
// black hole upstream, downstream and both, on IPv4 and IPv6:
//   - steering off: stock Go from the lab's client network fails, and so
//     does curl where the server's flight is lost (its ~520-byte hello
//     crosses any of these holes);
//   - steering the client's /24 and /48: the same stock clients, unchanged,
//     (stock Go, curl, openssl s_client) complete, with segments of 1328 bytes both ways; a client on the
//     other network keeps the full MSS (1448, 1428) and still fails.
func TestLabSteer(t *testing.T) {
	for _, dir := range []lab.Direction{lab.Upstream, lab.Downstream, lab.Both} {
		t.Run(string(dir), func(t *testing.T) {
			l := lab.New(t, lab.Config{Scenario: lab.Blackhole, Direction: dir})
			addOtherNetwork(t, l)
			pki, err := l.PKI()
			require.NoError(t, err)
			port := l.NextPort()
			mss := pmtu.MSSForMTU(l.Config().N(), true)
			start := func(clamp []netip.Prefix) *lab.Process {
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				p, info, err := l.StartServer(ctx, "steer-server", steerServerArgs{
					CertFile: pki.LongChainFile, KeyFile: pki.LongKeyFile, Port: port, MSS: mss, Clamp: clamp})
				require.NoError(t, err)
				t.Logf("steer-server: %s", info)
				return p
			}
			dial := func(src netip.Addr, f lab.Family) steerClientResult {
				raw, err := l.RunClient(t.Context(), "steer-client", steerClientArgs{Src: src, Addr: l.Addr(f, port), CAFile: pki.CAFile})
				require.NoError(t, err)
				var r steerClientResult
				require.NoError(t, json.Unmarshal(raw, &r))
				return r
			}
			stock := func(f lab.Family) lab.DialRun {
				res, err := l.Dial(t.Context(), lab.StockTLS, lab.DialArgs{Addr: l.Addr(f, port), CAFile: pki.CAFile, Timeout: 2 * time.Second})
				require.NoError(t, err)
				require.Len(t, res.Runs, 1)
				return res.Runs[0]
			}
			curlFails := l.Config().Lost(lab.IPv4, lab.Downstream, 1500)

			p := start(nil)
			for _, f := range lab.Families() {
				src := l.IP(lab.Client, f)
				r := dial(src, f)
				assert.Equal(t, lab.MaxSegment(f), r.SndMSS, "%s, steering off: full MSS", f)
				assert.False(t, r.OK, "%s, steering off: a Go client through the hole: %+v", f, r)
				run := stock(f)
				assert.False(t, run.OK, "%s, steering off: stock Go completed: %+v", f, run)
				c := l.Curl(t.Context(), f, port, "/", 2*time.Second)
				assert.Equal(t, !curlFails, c.OK, "%s, steering off: curl: %v", f, c.Err)
			}
			require.NoError(t, p.Stop())

			p = start([]netip.Prefix{netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("fd00:198:18::/48")})
			defer p.Stop()
			for _, f := range lab.Families() {
				other := otherSrc4
				if f == lab.IPv6 {
					other = otherSrc6
				}
				r := dial(l.IP(lab.Client, f), f)
				assert.Equal(t, mss-12, r.SndMSS, "%s, steered: the SYN-ACK carried the clamp", f)
				assert.True(t, r.OK, "%s, steered: %+v", f, r)
				t.Logf("%s steered %v: snd_mss %d, handshake %v %s", f, l.IP(lab.Client, f), r.SndMSS, r.Elapsed.Round(time.Microsecond), r.Err)

				r = dial(other, f)
				assert.Equal(t, lab.MaxSegment(f), r.SndMSS, "%s, the other network keeps the full MSS", f)
				assert.False(t, r.OK, "%s, the other network is not steered: %+v", f, r)
				t.Logf("%s other %v: snd_mss %d, handshake ok=%v", f, other, r.SndMSS, r.OK)

				run := stock(f)
				assert.True(t, run.OK, "%s, steered: stock Go: %+v", f, run)
				t.Logf("%s steered: stock Go %v", f, run.Elapsed.Round(time.Microsecond))
				c := l.Curl(t.Context(), f, port, "/", 5*time.Second)
				assert.True(t, c.OK, "%s, steered: curl: %v", f, c.Err)
				t.Logf("%s steered: curl %v: %s", f, c.Elapsed.Round(time.Millisecond), c.Output)
				o := l.SClient(t.Context(), f, port, 5*time.Second)
				assert.True(t, o.OK, "%s, steered: openssl s_client: %v", f, o.Err)
			}
		})
	}
}
