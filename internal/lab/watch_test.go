//go:build linux

package lab_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/fitshake/fitshake/tlswatch"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The watched server: a Go crypto/tls + net/http server whose listeners are
// under one tlswatch.Watcher, with the watcher's status page on the
// server namespace's loopback.
const (
	watchServerName = "lab-watch-https"
	watchStatusName = "lab-watch-status"
	watchIdleName   = "lab-watch-idle"
)

type watchServerArgs struct {
	CertFile, KeyFile string
	Addrs             []string
	Admin             string // host:port of the status page
	StallAfter        time.Duration
}

func init() {
	lab.RegisterServer(watchServerName, watchServer)
	lab.RegisterClient(watchStatusName, func(ctx context.Context, raw json.RawMessage) (any, error) {
		var url string
		if err := json.Unmarshal(raw, &url); err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return json.RawMessage(b), err
	})
	// An idle client: connects, sends nothing, closes (a health check or a
	// port scan).
	lab.RegisterClient(watchIdleName, func(ctx context.Context, raw json.RawMessage) (any, error) {
		var addr string
		if err := json.Unmarshal(raw, &addr); err != nil {
			return nil, err
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
		return "closed", c.Close()
	})
}

func watchServer(ctx context.Context, raw json.RawMessage, ready func(any)) error {
	var a watchServerArgs
	if err := json.Unmarshal(raw, &a); err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile)
	if err != nil {
		return err
	}
	w := &tlswatch.Watcher{StallAfter: a.StallAfter, Trace: &tlswatch.Trace{
		Handshake: func(h tlswatch.HandshakeInfo) {
			fmt.Fprintf(os.Stderr, "verdict %s %s recovered=%t: %s %+v\n", h.Addr, h.Class, h.Recovered, h.Evidence.Sentence(h.Class), h.Evidence)
		},
	}}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(rw, "ok watched %s\n", r.Proto)
		}),
		TLSConfig: &tls.Config{
			Certificates:           []tls.Certificate{cert},
			NextProtos:             []string{"h2", "http/1.1"},
			SessionTicketsDisabled: true,
		},
		ReadHeaderTimeout: 20 * time.Second,
	}
	admin, err := net.Listen("tcp", a.Admin)
	if err != nil {
		return err
	}
	go http.Serve(admin, w)
	errc := make(chan error, len(a.Addrs))
	for _, addr := range a.Addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		go func() { errc <- srv.ServeTLS(w.Wrap(ln), "", "") }()
	}
	ready(map[string]any{"addrs": a.Addrs, "pid": os.Getpid()})
	select {
	case <-ctx.Done():
		srv.Close()
		admin.Close()
		return nil
	case err := <-errc:
		return err
	}
}

// TestLabWatchServer runs a watched Go server in the server namespace and
// clients no one here wrote (curl, openssl s_client, stock crypto/tls), and
// fitshake's dialer, from the client namespace: the healthy path at 100%,
// a black hole on the way in and one on the way back (the long certificate
// chain), and a TLS inspector that cuts a split hello, with their classes,
// on IPv4 and IPv6. It is where the server-side kernel
// signals tlswatch reads were checked: the hello's tail out of order with
// nothing in order upstream, our flight unacknowledged with retransmits
// downstream, and the client's SYN MSS as TCP_INFO's send MSS plus the
// timestamp option.
func TestLabWatchServer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   lab.Config
		chain lab.Chain
	}{
		{"healthy", lab.Config{Scenario: lab.Healthy}, lab.Small},
		{"upstream", lab.Config{Scenario: lab.Blackhole, Direction: lab.Upstream}, lab.Small},
		{"downstream", lab.Config{Scenario: lab.Blackhole, Direction: lab.Downstream}, lab.Long},
		// A TLS inspector that forwards a split hello's first segment
		// and drops the rest of the flow: the hello arrives partly.
		{"split", lab.Config{Scenario: lab.SplitIntolerant}, lab.Small},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := lab.New(t, tc.cfg)
			pki, err := l.PKI()
			require.NoError(t, err)
			cert, key := pki.Files(tc.chain)
			port := l.NextPort()
			admin := "127.0.0.1:9090"
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			srv, _, err := l.StartServer(ctx, watchServerName, watchServerArgs{
				CertFile: cert, KeyFile: key, Admin: admin, StallAfter: time.Second,
				Addrs: []string{l.Addr(lab.IPv4, port), l.Addr(lab.IPv6, port)},
			})
			require.NoError(t, err)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("server:\n%s", srv.Output())
				}
			})

			for _, f := range lab.Families() {
				t.Run(string(f), func(t *testing.T) {
					checkWatch(t, ctx, l, tc.name, f, port, pki.CAFile, admin)
					if tc.name != "healthy" { // the slog line, on the server's stderr
						pfx := map[lab.Family]string{lab.IPv4: "198.18.0.0/24", lab.IPv6: "fd00:198:18::/48"}[f]
						assert.Contains(t, srv.Output(), "tlswatch: prefix failing prefix="+pfx)
					}
				})
			}
		})
	}
}

func checkWatch(t *testing.T, ctx context.Context, l *lab.Lab, scenario string, f lab.Family, port int, caFile, admin string) {
	const stock = 3
	addr := l.Addr(f, port)
	for range 2 {
		r := l.Curl(ctx, f, port, "", stockBound)
		assert.Equal(t, scenario != "downstream", r.OK, "curl: %v", r.Err)
	}
	r := l.SClient(ctx, f, port, stockBound)
	assert.Equal(t, scenario != "downstream", r.OK, "openssl s_client: %v", r.Err)
	res, err := l.Dial(ctx, lab.StockTLS, lab.DialArgs{Addr: addr, CAFile: caFile, Runs: stock, Timeout: stockBound})
	require.NoError(t, err)
	for _, r := range res.Runs {
		assert.Equal(t, scenario == "healthy", r.OK, "stock crypto/tls: %s", r.Err)
	}
	fs, err := l.Dial(ctx, lab.FitshakeDialer, lab.DialArgs{Addr: addr, CAFile: caFile, Timeout: fitshakeBound})
	require.NoError(t, err)
	require.True(t, fs.Runs[0].OK, "fitshake: %s", fs.Runs[0].Err)
	t.Logf("fitshake: %s", fs.Runs[0].Report)
	for range 2 {
		_, err := l.RunClient(ctx, watchIdleName, addr)
		require.NoError(t, err)
	}

	// The stalled handshakes are judged a second (StallAfter) after
	// their accept, or when the client closes.
	want := map[string]tlswatch.Class{"healthy": tlswatch.Healthy, "upstream": tlswatch.BlackHoleUpstream,
		"downstream": tlswatch.BlackHoleDownstream, "split": tlswatch.HelloPartial}[scenario]
	pfx := map[lab.Family]string{lab.IPv4: "198.18.0.0/24", lab.IPv6: "fd00:198:18::/48"}[f]
	var ps tlswatch.PrefixStatus
	deadline := time.Now().Add(10 * time.Second)
	for {
		raw, err := l.RunIn(ctx, lab.Server, watchStatusName, "http://"+admin+"/status.json")
		require.NoError(t, err)
		var st tlswatch.Status
		require.NoError(t, json.Unmarshal(raw, &st), "%s", raw)
		ps = tlswatch.PrefixStatus{}
		for _, p := range st.Prefixes {
			if p.Prefix == pfx {
				ps = p
			}
		}
		if ps.Classes[want] >= map[bool]int{true: stock + 4, false: stock}[scenario == "healthy"] && ps.Idle >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	b, _ := json.MarshalIndent(ps, "", "  ")
	t.Logf("%s", b)

	mss := l.MaxMSS(f) // the lab's MTU as an MSS: 1360, 1340
	full := map[lab.Family]int{lab.IPv4: 1460, lab.IPv6: 1440}[f]
	assert.Equal(t, want, ps.Class)
	// The idle connections, and any of fitshake's racing attempts that
	// it dropped once answered (when the first was slow to answer).
	assert.GreaterOrEqual(t, ps.Idle, 2, "the idle connections")
	switch scenario {
	case "healthy":
		assert.Equal(t, 0, ps.Failed)
		assert.Equal(t, ps.Handshakes-ps.Idle, ps.Completed)
		assert.GreaterOrEqual(t, ps.Completed, stock+4) // curl 2, s_client, stock Go, fitshake
		assert.Equal(t, 100.0, ps.Rate())
		assert.Equal(t, full, ps.SYNMSSMax, "a SYN of a 1500-byte link")
		assert.Empty(t, ps.Fixes)
	case "split":
		assert.GreaterOrEqual(t, ps.Classes[want], stock, "each stock client's handshake")
		assert.True(t, ps.Failing)
		assert.GreaterOrEqual(t, ps.Completed, 2+1+1, "curl's and s_client's one-segment hellos, and fitshake's compact one")
		assert.Contains(t, ps.Evidence, "arrived and then nothing")
		assert.Contains(t, strings.Join(ps.Fixes, "\n"), "reassembles a ClientHello split across TCP segments")
	default:
		assert.GreaterOrEqual(t, ps.Classes[want], stock, "each stock client's handshake")
		assert.True(t, ps.Failing)
		assert.GreaterOrEqual(t, ps.Recovered, 1, "fitshake's clamped redial, from the address that failed")
		assert.Equal(t, mss, ps.RecoveredMSS, "fitshake's clamp, read on the server")
		assert.Equal(t, full, ps.SYNMSSMax)
		assert.NotEmpty(t, ps.Evidence)
		fixes := strings.Join(ps.Fixes, "\n")
		assert.Contains(t, fixes, fmt.Sprintf("maxseg size set %d", mss))
		assert.Contains(t, fixes, fmt.Sprintf("ip route add %s via <gateway> advmss %d", pfx, mss))
		assert.Contains(t, fixes, "app: until the network is fixed, dial with fitshake")
	}
	if scenario == "upstream" {
		assert.GreaterOrEqual(t, ps.Completed, 2+1+1, "curl's and s_client's small hellos and fitshake's clamped one get through")
	}
}
