//go:build linux

package lab_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/fitshake/fitshake/tlswatch"
)

// selfFixServerName is a Go crypto/tls + net/http server on
// tlswatch.Watcher.Listen: the self-fix on, its status page on the server
// namespace's loopback.
const selfFixServerName = "lab-selffix-https"

type selfFixServerArgs struct {
	CertFile, KeyFile string
	Port              int
	Admin             string // host:port of the status page
	After             int    // Policy.After
}

// selfFixTitle is the title of the server's page, which the browser waits
// for.
const selfFixTitle = "selffix ok"

func init() { lab.RegisterServer(selfFixServerName, selfFixServer) }

func selfFixServer(ctx context.Context, raw json.RawMessage, ready func(any)) error {
	var a selfFixServerArgs
	if err := json.Unmarshal(raw, &a); err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile)
	if err != nil {
		return err
	}
	w := &tlswatch.Watcher{
		StallAfter: time.Second,
		Policy:     tlswatch.Policy{After: a.After},
		Trace: &tlswatch.Trace{
			Handshake: func(h tlswatch.HandshakeInfo) {
				fmt.Fprintf(os.Stderr, "verdict %s %s recovered=%t: %s %+v\n", h.Addr, h.Class, h.Recovered, h.Evidence.Sentence(h.Class), h.Evidence)
			},
			Clamp: func(c tlswatch.ClampInfo) {
				fmt.Fprintf(os.Stderr, "clamp %v mss %d err %v\n", c.Prefixes, c.MSS, c.Err)
			},
		},
	}
	ln, err := w.Listen(ctx, "tcp", net.JoinHostPort("::", strconv.Itoa(a.Port)))
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(rw, "<!doctype html><title>%s</title><p>%s from %s\n", selfFixTitle, r.Proto, r.RemoteAddr)
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
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	ready(map[string]any{"addr": ln.Addr().String(), "pid": os.Getpid()})
	select {
	case <-ctx.Done():
		srv.Close()
		admin.Close()
		return nil
	case err := <-errc:
		return err
	}
}

// selfFixAfter is the server's Policy.After: enough for each of the four
// stock clients to fail once first where all of them fail (downstream,
// both): stock Go, curl and s_client one connection each, Chromium two (it
// opens a second one at once).
const selfFixAfter = 5

// TestLabSelfFix is the self-fix, learned: a Go server on
// tlswatch.Watcher.Listen (Policy.After 5, the long certificate chain, so
// that a lost flight breaks every client) and two client networks, the
// lab's own behind a 1400-byte black hole (upstream, downstream, both) and
// a healthy one (AddOtherClient), each running clients no one here wrote:
// curl, openssl s_client, stock crypto/tls and headless Chromium, on IPv4
// and IPv6. The broken prefix's clients fail at first; the watcher learns
// from their handshakes (the right class, clamped, its clamp) and from
// then on the same clients, unchanged, complete with the clamp in the
// SYN-ACK, after at most After failed connections; the healthy prefix's
// clients complete every time with the full MSS. The status's fix lines
// give the lab's MSS within 8 bytes, and the clamped prefix keeps its class
// while its clients complete. Names read TestLabSelfFix/DIRECTION/FAMILY.
func TestLabSelfFix(t *testing.T) {
	lab.RequireBrowser(t)
	for _, dir := range []lab.Direction{lab.Upstream, lab.Downstream, lab.Both} {
		t.Run(string(dir), func(t *testing.T) {
			l := lab.New(t, lab.Config{Scenario: lab.Blackhole, Direction: dir})
			require.NoError(t, l.AddOtherClient())
			pki, err := l.PKI()
			require.NoError(t, err)
			port := l.NextPort()
			admin := "127.0.0.1:9090"
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
			defer cancel()
			srv, info, err := l.StartServer(ctx, selfFixServerName, selfFixServerArgs{
				CertFile: pki.LongChainFile, KeyFile: pki.LongKeyFile, Port: port, Admin: admin, After: selfFixAfter})
			require.NoError(t, err)
			t.Logf("server: %s", info)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("server:\n%s", srv.Output())
				}
			})
			sf := &selfFix{t: t, ctx: ctx, l: l, port: port, ca: pki.CAFile, admin: admin}
			for _, f := range lab.Families() {
				t.Run(string(f), func(t *testing.T) {
					sf.t = t
					sf.run(f, srv)
				})
			}
		})
	}
}

// selfFix runs TestLabSelfFix's clients against one lab's server.
type selfFix struct {
	t     *testing.T
	ctx   context.Context
	l     *lab.Lab
	port  int
	ca    string
	admin string
}

// prefixes of the two client networks, by family.
var (
	brokenPrefix  = map[lab.Family]string{lab.IPv4: "198.18.0.0/24", lab.IPv6: "fd00:198:18::/48"}
	healthyPrefix = map[lab.Family]string{lab.IPv4: "198.18.2.0/24", lab.IPv6: "fd00:198:19::/48"}
)

func (s *selfFix) run(f lab.Family, srv *lab.Process) {
	t, l := s.t, s.l
	full := lab.MaxSegment(f)
	s.healthy(f, "before")

	// The broken prefix, before the watcher knows it: every stock client
	// whose flight crosses the hole fails, with full-size segments.
	t0 := time.Now()
	r := s.goDial(lab.Client, f)
	assert.False(t, r.OK, "stock Go, before: %+v", r)
	assert.Equal(t, full, r.SndMSS, "stock Go, before: the SYN-ACK's MSS")
	t.Logf("broken %s before: stock Go ok=%t snd_mss %d after %v", f, r.OK, r.SndMSS, r.Elapsed.Round(time.Millisecond))
	downLost := l.Config().Lost(f, lab.Downstream, 1500) // curl's and s_client's ~520-byte hellos cross any hole
	c := l.CurlFrom(s.ctx, lab.Client, f, s.port, "/", stockBound)
	assert.Equal(t, !downLost, c.OK, "curl, before: %v", c.Err)
	o := l.SClientFrom(s.ctx, lab.Client, f, s.port, stockBound)
	assert.Equal(t, !downLost, o.OK, "openssl s_client, before: %v", o.Err)
	b := s.browse(lab.Client, f, 5*time.Second)
	assert.True(t, b.TimedOut, "chromium, before: its hello or our flight is lost: %+v", b)
	t.Logf("broken %s before: curl ok=%t, s_client ok=%t, chromium title %q after %v", f, c.OK, o.OK, b.Title, b.Elapsed.Round(time.Millisecond))

	// Stock Go again until it completes: the watcher clamps the prefix
	// once After connections were lost to the hole.
	var tries []goDialResult
	for range selfFixAfter + 1 {
		r := s.goDial(lab.Client, f)
		tries = append(tries, r)
		if r.OK {
			break
		}
	}
	learned := time.Since(t0)
	ps := s.status(brokenPrefix[f])
	js, _ := json.MarshalIndent(ps, "", "  ")
	t.Logf("broken %s learned in %v; stock Go tries after the other clients: %+v\nstatus %s", f, learned.Round(time.Millisecond), tries, js)
	require.True(t, tries[len(tries)-1].OK, "stock Go never completed")
	assert.LessOrEqual(t, ps.Failed, selfFixAfter, "failed connections before the fix")
	assert.Equal(t, wantSelfFixClass(l.Config().Direction), ps.Class)
	assert.True(t, ps.Clamped, "clamped")
	assert.True(t, ps.Failing, "failing")
	require.Positive(t, ps.MSS, "the clamp")
	assert.LessOrEqual(t, ps.MSS, l.MaxMSS(f), "the clamp fits the path")
	clamp := ps.MSS
	assert.Equal(t, clamp-12, tries[len(tries)-1].SndMSS, "the SYN-ACK carried the clamp")
	s.checkFixes(f, ps)

	// The broken prefix, clamped: the same stock clients complete.
	for i := range 3 {
		r := s.goDial(lab.Client, f)
		assert.True(t, r.OK, "stock Go %d, clamped: %+v", i, r)
		assert.Equal(t, clamp-12, r.SndMSS, "stock Go %d, clamped: the SYN-ACK's MSS", i)
		t.Logf("broken %s clamped: stock Go ok=%t snd_mss %d handshake %v", f, r.OK, r.SndMSS, r.Elapsed.Round(10*time.Microsecond))
	}
	c = l.CurlFrom(s.ctx, lab.Client, f, s.port, "/", 5*time.Second)
	assert.True(t, c.OK, "curl, clamped: %v", c.Err)
	o = l.SClientFrom(s.ctx, lab.Client, f, s.port, 5*time.Second)
	assert.True(t, o.OK, "openssl s_client, clamped: %v", o.Err)
	b = s.browse(lab.Client, f, 20*time.Second)
	assert.False(t, b.TimedOut, "chromium, clamped: %+v", b)
	assert.Equal(t, selfFixTitle, b.Title, "chromium, clamped")
	t.Logf("broken %s clamped: curl %v %q, s_client %v, chromium %q in %v", f, c.Elapsed.Round(time.Millisecond), c.Output,
		o.Elapsed.Round(time.Millisecond), b.Title, b.Elapsed.Round(time.Millisecond))

	s.healthy(f, "after")

	// Completions thanks to the clamp are not a recovery: the prefix
	// keeps its class and its clamp, and no "recovered" line is logged.
	ps = s.status(brokenPrefix[f])
	js, _ = json.MarshalIndent(ps, "", "  ")
	t.Logf("broken %s at the end: %s", f, js)
	assert.Equal(t, wantSelfFixClass(l.Config().Direction), ps.Class, "the class, with the clamped clients completing")
	assert.True(t, ps.Clamped, "still clamped")
	assert.True(t, ps.Failing, "still failing")
	assert.Equal(t, 0, ps.Recovered, "no client recovered by itself: the server clamped them")
	assert.NotContains(t, srv.Output(), "tlswatch: prefix recovered prefix="+brokenPrefix[f])
	s.checkFixes(f, ps)
}

// healthy runs every client from the healthy network: all complete, with
// the full MSS.
func (s *selfFix) healthy(f lab.Family, when string) {
	t, l := s.t, s.l
	full := lab.MaxSegment(f)
	for i := range 3 {
		r := s.goDial(lab.OtherClient, f)
		assert.True(t, r.OK, "healthy, %s: stock Go %d: %+v", when, i, r)
		assert.Equal(t, full, r.SndMSS, "healthy, %s: stock Go %d keeps the full MSS", when, i)
		t.Logf("healthy %s %s: stock Go ok=%t snd_mss %d handshake %v", f, when, r.OK, r.SndMSS, r.Elapsed.Round(10*time.Microsecond))
	}
	c := l.CurlFrom(s.ctx, lab.OtherClient, f, s.port, "/", 5*time.Second)
	assert.True(t, c.OK, "healthy, %s: curl: %v", when, c.Err)
	o := l.SClientFrom(s.ctx, lab.OtherClient, f, s.port, 5*time.Second)
	assert.True(t, o.OK, "healthy, %s: openssl s_client: %v", when, o.Err)
	b := s.browse(lab.OtherClient, f, 20*time.Second)
	assert.Equal(t, selfFixTitle, b.Title, "healthy, %s: chromium: %+v", when, b)
	ps := s.status(healthyPrefix[f])
	assert.Equal(t, tlswatch.Healthy, ps.Class, "healthy, %s", when)
	assert.Equal(t, 0, ps.Failed, "healthy, %s: failed", when)
	assert.Equal(t, 100.0, ps.Rate(), "healthy, %s: completion rate", when)
	assert.GreaterOrEqual(t, ps.Completed, 3+1+1+1, "healthy, %s: completed", when)
	assert.False(t, ps.Clamped, "healthy, %s: clamped", when)
	assert.Equal(t, 0, ps.MSS, "healthy, %s: clamp", when)
	assert.Equal(t, full+12, ps.SYNMSSMax, "healthy, %s: the SYN MSS the server saw", when)
	t.Logf("healthy %s %s: %d handshakes, %d completed (%.0f%%), curl %v, s_client %v, chromium %q in %v",
		f, when, ps.Handshakes, ps.Completed, ps.Rate(), c.Elapsed.Round(time.Millisecond), o.Elapsed.Round(time.Millisecond),
		b.Title, b.Elapsed.Round(time.Millisecond))
}

// fixMSS finds the MSS numbers of the fix lines: "advmss N" (the route
// line) and "maxseg size set N" (the network's clamp rule).
var fixMSS = regexp.MustCompile(`(?:advmss|maxseg size set) (\d+)`)

// checkFixes asserts that the fix lines give an MSS within 8 bytes below
// the lab's (1360 IPv4, 1340 IPv6), in the route line and the clamp rule.
func (s *selfFix) checkFixes(f lab.Family, ps tlswatch.PrefixStatus) {
	t := s.t
	fixes := strings.Join(ps.Fixes, "\n")
	t.Logf("fixes:\n%s", fixes)
	truth := s.l.MaxMSS(f)
	ms := fixMSS.FindAllStringSubmatch(fixes, -1)
	require.Len(t, ms, 2, "an advmss and a maxseg line: %s", fixes)
	for _, m := range ms {
		n, _ := strconv.Atoi(m[1])
		assert.LessOrEqual(t, n, truth, "%s above the lab's MSS", m[0])
		assert.GreaterOrEqual(t, n, truth-8, "%s more than 8 bytes below the lab's MSS %d", m[0], truth)
	}
}

func wantSelfFixClass(d lab.Direction) tlswatch.Class {
	switch d {
	case lab.Upstream:
		return tlswatch.BlackHoleUpstream
	case lab.Downstream:
		return tlswatch.BlackHoleDownstream
	}
	return tlswatch.BlackHole
}

// goDialResult is steerClientResult: stock crypto/tls, the SYN-ACK's MSS
// read from TCP_INFO.
type goDialResult = steerClientResult

// goDial runs the steer-client (stock crypto/tls, 2 s) from side's network.
func (s *selfFix) goDial(side lab.Side, f lab.Family) goDialResult {
	s.t.Helper()
	raw, err := s.l.RunIn(s.ctx, side, "steer-client", steerClientArgs{
		Src: s.l.IP(side, f), Addr: s.l.Addr(f, s.port), CAFile: s.ca})
	require.NoError(s.t, err)
	var r goDialResult
	require.NoError(s.t, json.Unmarshal(raw, &r))
	return r
}

// browse loads the server's page in headless Chromium from side's network.
func (s *selfFix) browse(side lab.Side, f lab.Family, timeout time.Duration) lab.BrowseResult {
	s.t.Helper()
	browsers <- struct{}{}
	defer func() { <-browsers }()
	res, err := s.l.BrowseFrom(s.ctx, side, lab.BrowseArgs{
		URL:                 "https://" + s.l.Addr(f, s.port) + "/",
		Done:                []string{selfFixTitle},
		Timeout:             timeout,
		AcceptInsecureCerts: true,
	})
	require.NoError(s.t, err)
	return res
}

// status reads the watcher's status.json and returns prefix's entry (zero
// if absent).
func (s *selfFix) status(prefix string) tlswatch.PrefixStatus {
	s.t.Helper()
	raw, err := s.l.RunIn(s.ctx, lab.Server, watchStatusName, "http://"+s.admin+"/status.json")
	require.NoError(s.t, err)
	var st tlswatch.Status
	require.NoError(s.t, json.Unmarshal(raw, &st), "%s", raw)
	for _, p := range st.Prefixes {
		if p.Prefix == prefix {
			return p
		}
	}
	return tlswatch.PrefixStatus{}
}
