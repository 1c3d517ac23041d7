//go:build linux

package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlswatch"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// buildWatchServer builds examples/watchserver (a module of the workspace)
// into a temporary directory.
func buildWatchServer(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build examples/watchserver:", err)
	}
	bin := filepath.Join(t.TempDir(), "watchserver")
	cmd := exec.Command(gobin, "build", "-o", bin, ".")
	cmd.Dir = filepath.Join("..", "..", "examples", "watchserver")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// adminGet fetches path from the example's admin port, on the server
// namespace's loopback, with curl.
func adminGet(t *testing.T, l *lab.Lab, admin, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out, err := l.Command(ctx, lab.Server, "curl", "-sS", "--fail", "http://"+admin+path).Output()
	require.NoError(t, err, "curl %s: %s", path, out)
	return string(out)
}

// metricValue returns the value of the Prometheus series whose name and
// labels are series exactly, and whether there is one.
func metricValue(text, series string) (float64, bool) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// TestLabWatchServerExample runs the example program, built with go build from
// examples/watchserver, in the server namespace, as an operator would:
// the lab's long certificate chain (a flight of over 4 KB), the self-fix
// on its defaults (after 3 connections lost to a black hole, the ladder's
// first rung: each family's MSS for a 1400-byte path, 1360 IPv4, 1340
// IPv6), handshakes judged after 1 s. Through a 1400-byte black hole on
// the way in, stock Go's ~1.5 KB hello is lost; on the way back, the
// server's flight to curl. For each family in turn, three such clients
// fail; /status.json then shows the client's prefix failing, with the
// direction's class, and clamped to its family's MSS for 1400 bytes, the
// lab's path; curl and stock Go, changed in nothing, complete, the clamp
// in the SYN-ACK; they count as fixed, not recovered, the prefix keeps
// its class, and the fix lines give the lab's MSS within 8 bytes;
// /metrics shows the server series, a clamped_prefixes series per clamp;
// the watcher's slog lines are on stderr. SIGTERM ends it cleanly.
func TestLabWatchServerExample(t *testing.T) {
	bin := buildWatchServer(t)
	for _, dir := range []lab.Direction{lab.Upstream, lab.Downstream} {
		t.Run(string(dir), func(t *testing.T) {
			t.Parallel()
			l := lab.New(t, lab.Config{Scenario: lab.Blackhole, Direction: dir})
			pki, err := l.PKI()
			require.NoError(t, err)
			port := l.NextPort()
			const admin = "127.0.0.1:9090"
			p, err := l.StartProgram(lab.Server, []string{l.Addr(lab.IPv4, port), l.Addr(lab.IPv6, port), admin}, bin,
				"-listen", fmt.Sprintf("[::]:%d", port), "-cert", pki.LongChainFile, "-key", pki.LongKeyFile,
				"-admin", admin, "-stall", "1s")
			require.NoError(t, err)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("watchserver's output:\n%s", p.Output())
				}
			})
			for i, f := range lab.Families() {
				t.Run(string(f), func(t *testing.T) {
					checkWatchServerExample(t, l, dir, f, port, pki.CAFile, admin)
					text := adminGet(t, l, admin, "/metrics")
					checkWatchServerMetrics(t, l, text, dir, port, lab.Families()[:i+1])
					t.Logf("/metrics, the fitshake series:\n%s", fitshakeSeries(text))
					out := p.Output()
					assert.Contains(t, out, fmt.Sprintf(`msg="tlswatch: prefix failing" prefix=%s class=blackhole-%s`, brokenPrefix[f], dir))
					// The distinct clamps of the whole set, sorted.
					var clamps []int
					for _, g := range lab.Families()[:i+1] {
						clamps = append(clamps, l.MaxMSS(g))
					}
					slices.Sort(clamps)
					m := regexp.MustCompile(`msg="tlswatch: self-fix clamps" prefixes="?\[[^]]*` + regexp.QuoteMeta(brokenPrefix[f]) + `[^]]*\]"? mss="?\[([^]]*)\]"?`).FindStringSubmatch(out)
					if assert.NotNil(t, m, "the self-fix line for %s", brokenPrefix[f]) {
						assert.Equal(t, strings.Trim(fmt.Sprint(clamps), "[]"), m[1], "the self-fix line's clamps")
						t.Logf("self-fix line: %s", m[0])
					}
				})
			}
			require.NoError(t, p.Stop())
			exited, err := p.Exited()
			assert.True(t, exited)
			assert.NoError(t, err, "exit status after SIGTERM")
			assert.Contains(t, p.Output(), "watchserver: shutting down")
			t.Logf("watchserver's stderr:\n%s", p.Output())
		})
	}
}

// checkWatchServerExample fails three stock clients through the hole in
// direction dir, from family f, then checks that the example clamps their
// prefix to f's MSS for the lab's 1400-byte path, the ladder's first rung,
// and that the same clients then complete, carried by the clamp.
func checkWatchServerExample(t *testing.T, l *lab.Lab, dir lab.Direction, f lab.Family, port int, caFile, admin string) {
	ctx := t.Context()
	const failures = 3 // the Policy's After
	// Stock Go's hello is lost upstream, the server's flight to curl
	// downstream: the clients no one here wrote that fail each way.
	if dir == lab.Upstream {
		res, err := l.Dial(ctx, lab.StockTLS, lab.DialArgs{Addr: l.Addr(f, port), CAFile: caFile, Runs: failures, Timeout: stockBound})
		require.NoError(t, err)
		for _, r := range res.Runs {
			require.False(t, r.OK, "stock Go through the hole, unclamped")
		}
	} else {
		for range failures {
			r := l.Curl(ctx, f, port, "/", stockBound)
			require.False(t, r.OK, "curl through the hole, unclamped")
		}
	}

	want := tlswatch.Class("blackhole-" + string(dir))
	pfx := brokenPrefix[f]
	clamp := l.MaxMSS(f) // the lab's path is 1400 bytes, the ladder's first rung
	full := map[lab.Family]int{lab.IPv4: 1460, lab.IPv6: 1440}[f]
	ps := waitPrefix(t, l, admin, pfx, func(ps tlswatch.PrefixStatus) bool { return ps.Clamped })
	b, _ := json.MarshalIndent(ps, "", "  ")
	t.Logf("/status.json, %s after %d failures:\n%s", pfx, failures, b)
	assert.Equal(t, want, ps.Class)
	assert.True(t, ps.Failing)
	assert.Equal(t, failures, ps.Classes[want], "each failed client's handshake")
	assert.True(t, ps.Clamped)
	assert.Equal(t, clamp, ps.MSS, "the ladder's first rung: the family's MSS for a 1400-byte path")
	assert.Contains(t, strings.Join(ps.Fixes, "\n"), fmt.Sprintf("the watcher's self-fix clamps new connections from %s to MSS %d now", pfx, clamp))
	// Nothing carried by the clamp yet: the fix lines aim at 1280 bytes.
	assert.Contains(t, strings.Join(ps.Fixes, "\n"), fmt.Sprintf("advmss %d", pmtu.MSSForMTU(1280, f == lab.IPv6)), "before any fixed handshake")
	assert.Equal(t, full, ps.SYNMSSMax, "the failed clients' SYNs, unclamped")

	// The same clients, changed in nothing, now complete: the SYN-ACK of
	// the clamped twin announced the clamp (their send MSS is it less the
	// timestamps' 12 bytes).
	c := l.Curl(ctx, f, port, "/", 5*time.Second)
	assert.True(t, c.OK, "curl, clamped by the server: %v", c.Err)
	raw, err := l.RunClient(ctx, "steer-client", steerClientArgs{Src: l.IP(lab.Client, f), Addr: l.Addr(f, port), CAFile: caFile})
	require.NoError(t, err)
	var g steerClientResult
	require.NoError(t, json.Unmarshal(raw, &g))
	assert.True(t, g.OK, "stock Go, clamped by the server: %s", g.Err)
	assert.Equal(t, clamp-12, g.SndMSS, "stock Go's send MSS: the SYN-ACK's clamp")
	t.Logf("clamped by the server: curl %v (%s); stock Go %v, send MSS %d", c.Elapsed.Round(time.Millisecond), c.Output,
		g.Elapsed.Round(time.Millisecond), g.SndMSS)

	// They count as fixed, not recovered (the clients changed nothing),
	// and the prefix keeps its class: the clamp carried them, not the
	// path. The fix lines now give the clamp that carried them.
	ps = waitPrefix(t, l, admin, pfx, func(ps tlswatch.PrefixStatus) bool { return ps.Completed >= 2 })
	b, _ = json.MarshalIndent(ps, "", "  ")
	t.Logf("/status.json, %s once clamped:\n%s", pfx, b)
	assert.Equal(t, 2, ps.Completed)
	assert.Equal(t, 2, ps.Fixed, "completed under the clamp")
	assert.Equal(t, 0, ps.Recovered, "the server's own clamp is no recovery")
	assert.Equal(t, want, ps.Class, "the class, with the clamped clients completing")
	assert.True(t, ps.Failing, "still failing")
	assert.Equal(t, clamp, ps.MSS, "still clamped to the first rung")
	assert.Equal(t, full, ps.SYNMSSMin, "the clients' own SYNs: the clamp is the server's, not theirs")
	(&selfFix{t: t, l: l}).checkFixes(f, ps)
}

// waitPrefix polls /status.json until pfx's status satisfies ok, for at
// most 15 seconds, and returns it.
func waitPrefix(t *testing.T, l *lab.Lab, admin, pfx string, ok func(tlswatch.PrefixStatus) bool) tlswatch.PrefixStatus {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var st tlswatch.Status
		raw := adminGet(t, l, admin, "/status.json")
		require.NoError(t, json.Unmarshal([]byte(raw), &st), raw)
		for _, ps := range st.Prefixes {
			if ps.Prefix == pfx && ok(ps) {
				return ps
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not there after 15 s:\n%s", pfx, raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkWatchServerMetrics checks the server series after the broken
// prefixes of families, each with three failed handshakes and two
// completed under its clamp: one clamped_prefixes series per clamp, no
// recovered handshakes.
func checkWatchServerMetrics(t *testing.T, l *lab.Lab, text string, dir lab.Direction, port int, families []lab.Family) {
	srv := fmt.Sprintf(`server_port="%d"`, port)
	class := "blackhole-" + string(dir)
	n := float64(len(families))
	want := map[string]float64{
		fmt.Sprintf(`fitshake_server_handshakes_total{error_type="%s",fitshake_handshake_class="%s",%s,tls_established="false"}`, class, class, srv): 3 * n,
		fmt.Sprintf(`fitshake_server_handshakes_total{fitshake_handshake_class="healthy",%s,tls_established="true"}`, srv):                           2 * n,
		fmt.Sprintf(`fitshake_server_handshake_duration_seconds_count{error_type="%s",%s,tls_established="false"}`, class, srv):                      3 * n,
		fmt.Sprintf(`fitshake_server_clamp_changes_total{%s}`, srv):                                                                                  n,
		fmt.Sprintf(`fitshake_server_failing_prefixes{%s}`, srv):                                                                                     n,
	}
	for _, f := range families {
		want[fmt.Sprintf(`fitshake_server_clamped_prefixes{fitshake_mss="%d",%s}`, l.MaxMSS(f), srv)] = 1
	}
	for series, want := range want {
		v, ok := metricValue(text, series)
		if assert.True(t, ok, "no %s", series) {
			assert.Equal(t, want, v, series)
		}
	}
	assert.Equal(t, len(families), strings.Count(text, "\nfitshake_server_clamped_prefixes{"), "a series per clamp")
	v, ok := metricValue(text, fmt.Sprintf(`fitshake_server_recovered_handshakes_total{%s}`, srv))
	assert.False(t, ok && v != 0, "recovered handshakes: %v", v)
	assert.Contains(t, text, "# TYPE fitshake_server_handshakes_total counter\n")
	assert.Contains(t, text, "# TYPE fitshake_server_failing_prefixes gauge\n")
}

// fitshakeSeries is the lines of text about fitshake's server series,
// histogram buckets left out.
func fitshakeSeries(text string) string {
	var lines []string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "fitshake_server_") && !strings.Contains(line, "_bucket{") {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "\n")
}
