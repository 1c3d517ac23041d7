//go:build linux

package fitshakeotel_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/leaktest"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tlsServer starts an HTTPS server and returns its address and a client
// config that trusts it.
func tlsServer(t *testing.T) (string, *tls.Config) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the stalled attempts' handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.ServerName = "example.com" // httptest's certificate names it
	return srv.Listener.Addr().String(), cfg
}

// dialFunc dials addr with one of the two dialers and completes a TLS
// handshake (crypto/tls's over a TCPDialer), returning the handshake's
// error and the dial's Report.
type dialFunc func(t *testing.T, addr string, cfg *tls.Config, trace *tlsdial.Trace) (tlsdial.Report, error)

var dialers = []struct {
	name string
	rung string // the attribute the Dialer's attempts carry; "" for none
	tls  string // the attributes of the Dialer's completed dials; "" for none
	dial dialFunc
}{
	{"Dialer", ",fitshake.rung=pq", ",tls.protocol.name=tls,tls.protocol.version=1.3", func(t *testing.T, addr string, cfg *tls.Config, trace *tlsdial.Trace) (tlsdial.Report, error) {
		d := &tlsdial.Dialer{Config: cfg, Cache: &pmtu.Cache{}, Trace: trace}
		c, err := d.DialContext(context.Background(), "tcp", addr)
		if err != nil {
			var de *tlsdial.DialError
			require.ErrorAs(t, err, &de)
			return de.Report, err
		}
		defer c.Close()
		return c.(*tlsdial.Conn).Report(), nil
	}},
	{"TCPDialer", "", "", func(t *testing.T, addr string, cfg *tls.Config, trace *tlsdial.Trace) (tlsdial.Report, error) {
		td := &tlsdial.TCPDialer{Cache: &pmtu.Cache{}, Trace: trace}
		raw, err := td.DialContext(context.Background(), "tcp", addr)
		require.NoError(t, err)
		tc := tls.Client(raw, cfg)
		defer tc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = tc.HandshakeContext(ctx)
		return raw.(*tlsdial.TCPConn).Report(), err
	}},
}

// hostPort splits addr.
func hostPort(t *testing.T, addr string) (host, port string) {
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	return host, port
}

// server is the server.* attributes of addr.
func server(t *testing.T, addr string) string {
	host, port := hostPort(t, addr)
	return "server.address=" + host + ",server.port=" + port
}

// Through a 1400-byte black hole both ways, each dialer's first attempt
// stalls and the second, clamped to MSS 1360, completes: one dial, one
// recovery from a silent server (the simulator acknowledges what it
// drops), two attempts, one stall.
func TestClientTraceBlackHole(t *testing.T) {
	target, cfg := tlsServer(t)
	p, err := pmtutest.Start(pmtutest.Config{Target: target, MTU: 1400})
	if err != nil {
		t.Skipf("black-hole simulator unavailable here: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	srv := server(t, p.Addr())
	for _, d := range dialers {
		t.Run(d.name, func(t *testing.T) {
			leaktest.Check(t)
			trace, reader := newTrace(t)
			r, err := d.dial(t, p.Addr(), cfg, trace)
			require.NoError(t, err)
			require.Len(t, r.Attempts, 2, "%s", r)
			require.Equal(t, 1360, r.MSS, "%s", r)

			c := collect(t, reader)
			assert.Equal(t, map[string]int64{srv + d.tls: 1}, c.counts(t, "fitshake.client.dials"))
			assert.Equal(t, map[string]int64{
				"fitshake.mss=1360,fitshake.path.class=silent server" + d.rung + "," + srv: 1,
			}, c.counts(t, "fitshake.client.recovered_dials"))
			assert.Equal(t, map[string]int64{
				"fitshake.attempt.outcome=stall,fitshake.mss=0" + d.rung + "," + srv: 1,
				"fitshake.attempt.outcome=ok,fitshake.mss=1360" + d.rung + "," + srv: 1,
			}, c.counts(t, "fitshake.client.attempts"))
			assert.Equal(t, map[string]int64{
				"fitshake.mss=0,fitshake.path.class=silent server," + srv: 1,
			}, c.counts(t, "fitshake.client.stalls"))
			assert.Nil(t, c.counts(t, "fitshake.client.hellos_rejected"))

			dur := c.histograms(t, "fitshake.client.dial.duration")
			require.Len(t, dur, 1)
			assert.Equal(t, uint64(1), dur[srv+d.tls].Count)
			assert.InDelta(t, r.Duration.Seconds(), dur[srv+d.tls].Sum, 1e-9, "the Report's duration")
			assert.GreaterOrEqual(t, dur[srv+d.tls].Sum, 0.25, "at least one stall window")
			rec := c.histograms(t, "fitshake.client.recovery.duration")
			assert.Equal(t, uint64(1), rec["fitshake.path.class=silent server,"+srv].Count, "%v", rec)
		})
	}
}

// On a healthy path a dial is one attempt that completes unclamped:
// nothing recovered, nothing stalled.
func TestClientTraceHealthy(t *testing.T) {
	target, cfg := tlsServer(t)
	srv := server(t, target)
	for _, d := range dialers {
		t.Run(d.name, func(t *testing.T) {
			leaktest.Check(t)
			trace, reader := newTrace(t)
			r, err := d.dial(t, target, cfg, trace)
			require.NoError(t, err)
			require.Len(t, r.Attempts, 1, "%s", r)

			c := collect(t, reader)
			assert.Equal(t, map[string]int64{srv + d.tls: 1}, c.counts(t, "fitshake.client.dials"))
			assert.Equal(t, map[string]int64{
				"fitshake.attempt.outcome=ok,fitshake.mss=0" + d.rung + "," + srv: 1,
			}, c.counts(t, "fitshake.client.attempts"))
			assert.Nil(t, c.counts(t, "fitshake.client.recovered_dials"))
			assert.Nil(t, c.counts(t, "fitshake.client.stalls"))
			assert.Nil(t, c.histograms(t, "fitshake.client.recovery.duration"))
			assert.Equal(t, uint64(1), c.histograms(t, "fitshake.client.dial.duration")[srv+d.tls].Count)
		})
	}
}

// A certificate that does not verify fails the Dialer's dial with
// error.type "certificate". A TCPDialer's dial is over when the server's
// first byte arrives, before crypto/tls verifies anything: it counts as
// completed.
func TestClientTraceCertificateFailure(t *testing.T) {
	target, _ := tlsServer(t)
	srv := server(t, target)
	untrusted := &tls.Config{ServerName: "example.com", RootCAs: x509.NewCertPool()} // trusts nothing
	for _, d := range dialers {
		t.Run(d.name, func(t *testing.T) {
			leaktest.Check(t)
			trace, reader := newTrace(t)
			_, err := d.dial(t, target, untrusted, trace)
			require.Error(t, err)

			c := collect(t, reader)
			if d.name == "TCPDialer" {
				assert.Equal(t, map[string]int64{srv: 1}, c.counts(t, "fitshake.client.dials"))
				return
			}
			assert.Equal(t, map[string]int64{"error.type=certificate," + srv: 1}, c.counts(t, "fitshake.client.dials"))
			assert.Equal(t, map[string]int64{
				"fitshake.attempt.outcome=error,fitshake.mss=0" + d.rung + "," + srv: 1,
			}, c.counts(t, "fitshake.client.attempts"))
			assert.Equal(t, uint64(1), c.histograms(t, "fitshake.client.dial.duration")["error.type=certificate,"+srv].Count)
		})
	}
}

// A Transport dials with a copy of its Dialer, Trace included: a request
// through the black hole is one recovered dial.
func TestClientTraceTransport(t *testing.T) {
	target, cfg := tlsServer(t)
	p, err := pmtutest.Start(pmtutest.Config{Target: target, MTU: 1400})
	if err != nil {
		t.Skipf("black-hole simulator unavailable here: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	leaktest.Check(t)
	trace, reader := newTrace(t)
	tr := &tlsdial.Transport{Dialer: &tlsdial.Dialer{Config: cfg, Cache: &pmtu.Cache{}, Trace: trace}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + p.Addr() + "/")
	require.NoError(t, err)
	resp.Body.Close()

	srv := server(t, p.Addr())
	c := collect(t, reader)
	assert.Equal(t, map[string]int64{srv + ",tls.protocol.name=tls,tls.protocol.version=1.3": 1}, c.counts(t, "fitshake.client.dials"))
	assert.Equal(t, map[string]int64{
		"fitshake.mss=1360,fitshake.path.class=silent server,fitshake.rung=pq," + srv: 1,
	}, c.counts(t, "fitshake.client.recovered_dials"))
}
