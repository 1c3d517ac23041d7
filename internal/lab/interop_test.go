//go:build linux

package lab_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// interopLabs are the paths of the interop matrix: a healthy one, and a
// black hole of 1400 bytes in both directions, where stock crypto/tls's
// 1.5 KB ClientHello never arrives whole.
var interopLabs = []lab.Config{
	{Scenario: lab.Healthy},
	{Scenario: lab.Blackhole, Direction: lab.Both},
}

// interopClients are the clients of the interop matrix: stock crypto/tls
// (the reference), then fitshake's Dialer, its TCPDialer under crypto/tls,
// and net/http over its TCPDialer (GET, HTTP/2 where the server offers h2).
var interopClients = []string{lab.StockTLS, lab.FitshakeDialer, lab.FitshakeTCP, lab.FitshakeHTTP}

// TestLabInterop proves that fitshake reaches every real server that stock
// crypto/tls reaches: nginx, apache2, haproxy, gnutls-serv, lighttpd,
// openssl s_server variants (TLS 1.2 only with ECDSA P-256, ECDSA P-384
// and RSA certificates; TLS 1.3 with P-256 or P-384 as the only group; no
// ALPN) and the Go server, over IPv4 and IPv6, on a healthy path and
// through a 1400-byte black hole. Test names read
// TestLabInterop/LAB/SERVER/FAMILY/CLIENT.
//
// On the healthy path stock crypto/tls must complete against every server
// (or the server is misconfigured); through the black hole it must not
// (its hello is lost). Both fitshake dialers must complete everywhere, and
// every completed handshake must negotiate the server's version, ALPN and
// (where the server forces one) group; net/http over the TCPDialer must get
// a 200, over HTTP/2 where ALPN says h2.
func TestLabInterop(t *testing.T) {
	lab.Require(t)
	for _, cfg := range interopLabs {
		t.Run(cfg.String(), func(t *testing.T) {
			t.Parallel()
			l := startInteropLab(t, cfg)
			for _, s := range lab.RealServers() {
				for _, f := range lab.Families() {
					for _, c := range interopClients {
						t.Run(fmt.Sprintf("%s/%s/%s", s, f, c), func(t *testing.T) {
							t.Parallel()
							checkInterop(t, l, s, f, c)
						})
					}
				}
			}
		})
	}
}

// startInteropLab builds the lab of cfg and starts its long-lived real
// servers.
func startInteropLab(t *testing.T, cfg lab.Config) *lab.Lab {
	t.Helper()
	l := lab.New(t, cfg)
	require.NoError(t, l.StartRealServers(lab.RealServers()))
	return l
}

// interopDial dials s in family f runs times with client c, with the bound
// of stock or fitshake clients; once a dial hits it, the other runs go at
// once.
func interopDial(t *testing.T, l *lab.Lab, s lab.RealServer, f lab.Family, c string, runs int) lab.DialResult {
	t.Helper()
	return interopDialArgs(t, l, s, f, c, lab.DialArgs{Runs: runs})
}

// interopDialArgs is interopDial with more arguments: args's Addr, Path,
// CAFile, Timeout and Parallel are filled in, and Runs when zero.
func interopDialArgs(t *testing.T, l *lab.Lab, s lab.RealServer, f lab.Family, c string, args lab.DialArgs) lab.DialResult {
	t.Helper()
	addr, stop, err := l.Endpoint(s, f)
	require.NoError(t, err)
	defer stop()
	pki, err := l.PKI()
	require.NoError(t, err)
	args.Timeout = fitshakeBound
	if c == lab.StockTLS || c == lab.FingerprintRung {
		args.Timeout = stockBound // no fallback: no need to wait for one
	}
	args.Addr, args.Path, args.CAFile, args.Parallel = addr, s.Path, pki.CAFile, true
	args.Runs = max(args.Runs, 1)
	res, err := l.Dial(context.Background(), c, args)
	require.NoError(t, err)
	require.Len(t, res.Runs, args.Runs)
	return res
}

// interopDialRung dials s in family f once with the hello of the named
// rung alone (lab.FingerprintRung).
func interopDialRung(t *testing.T, l *lab.Lab, s lab.RealServer, f lab.Family, rung string) lab.DialRun {
	t.Helper()
	return interopDialArgs(t, l, s, f, lab.FingerprintRung, lab.DialArgs{Rung: rung}).Runs[0]
}

// checkInterop dials s once with c and asserts the outcome the matrix
// expects (see TestLabInterop).
func checkInterop(t *testing.T, l *lab.Lab, s lab.RealServer, f lab.Family, c string) {
	r := interopDial(t, l, s, f, c, 1).Runs[0]
	t.Logf("%s → %s %s: ok=%v in %v %s %s %s %s %s; %s", c, s, f, r.OK, r.Elapsed.Round(10*time.Microsecond),
		r.Version, r.Group, r.ALPN, r.Proto, r.Err, r.Report)
	if c == lab.StockTLS && l.Config().Lost(f, lab.Upstream, lab.FirstPacket(f, goHello(t))) {
		assert.False(t, r.OK, "stock crypto/tls completed through the black hole")
		return
	}
	if c == lab.StockTLS {
		require.True(t, r.OK, "stock crypto/tls should reach %s on a healthy path: %s", s, r.Err)
	}
	require.True(t, r.OK, "%s failed against %s, which stock crypto/tls reaches on a healthy path: %s (%s)%s",
		c, s, r.Err, r.Report, note(s))
	assert.Equal(t, s.Version, r.Version, "version")
	assert.Equal(t, s.ALPN, r.ALPN, "ALPN")
	if s.Group != "" {
		assert.Equal(t, s.Group, r.Group, "group")
	}
	if c == lab.FitshakeHTTP {
		assert.Equal(t, 200, r.Status)
		assert.Equal(t, s.ALPN == "h2", r.Proto == "HTTP/2.0", "protocol %s with ALPN %q", r.Proto, s.ALPN)
		assert.True(t, strings.HasPrefix(r.Body, "ok "), "body %q", r.Body)
	}
}

// note returns "; the server: " and s.Note, or "".
func note(s lab.RealServer) string {
	if s.Note == "" {
		return ""
	}
	return "; the server: " + s.Note
}
