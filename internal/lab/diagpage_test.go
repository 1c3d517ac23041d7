//go:build linux

package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/fitshake/fitshake/internal/verdict"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// diagTolerance is how far the page's limits may be from the truth where a
// direction is broken: its search stops within 8 bytes, always below.
const diagTolerance = 8

// diagWant is what the diagnostic page must report for a lab.
type diagWant struct {
	class    string
	healthy  bool
	up, down int // the largest packet through each way
}

// wantDiag derives the page's expected summary from the lab's truth: a
// direction where full-size packets are lost for good (Config.Lost) is a
// black hole of N; pmtud-ok is N both ways, adapted to.
func wantDiag(cfg lab.Config, f lab.Family) diagWant {
	n := cfg.N()
	switch {
	case cfg.Scenario == lab.PMTUDOK:
		return diagWant{verdict.PMTUDWorks, true, n, n}
	case cfg.Scenario == lab.FragmentsDropped && f == lab.IPv6:
		// Packet too big reaches the browser's kernel, which adapts.
		// The way back carries 1500, but once the browser's kernel
		// has learned the path MTU its new connections announce an
		// MSS that fits it, and the server sends no more than that:
		// the page reads N. (The probe, which measures downstream
		// before anything teaches its kernel, reads 1500.)
		return diagWant{verdict.PMTUDWorks, true, n, n}
	}
	// (FragmentsDropped on IPv4: the browser's large requests are
	// fragmented and the fragments dropped, which the server sees as a
	// black hole towards it; only the client can tell, as the probe does.)
	w := diagWant{up: 1500, down: 1500}
	upLost, downLost := cfg.Lost(f, lab.Upstream, 1500), cfg.Lost(f, lab.Downstream, 1500)
	if upLost {
		w.up = n
	}
	if downLost {
		w.down = n
	}
	switch {
	case upLost && downLost:
		w.class = verdict.BlackHole
	case upLost:
		w.class = verdict.BlackHoleUpstream
	case downLost:
		w.class = verdict.BlackHoleDownstream
	default:
		w.class, w.healthy = verdict.Healthy, true
	}
	return w
}

// browsers bounds the Chromiums running at once: each takes most of a
// core while it starts, and a starved browser times out probes that
// arrived.
var browsers = make(chan struct{}, 2)

// TestLabDiagPage loads the diagnostic page (package diagpage) in a real
// headless Chromium in the client namespace, served from the server
// namespace, and checks its JSON summary against the lab's truth. Names
// read TestLabDiagPage/SCENARIO-N/FAMILY.
func TestLabDiagPage(t *testing.T) {
	lab.RequireBrowser(t)
	for _, cfg := range probeLabs() {
		t.Run(cfg.String(), func(t *testing.T) {
			t.Parallel()
			l := lab.New(t, cfg)
			srv, err := l.StartDiagPage()
			require.NoError(t, err)
			// One family after the other: the page's timeouts are
			// the browser's, and a starved browser misjudges.
			for _, f := range lab.Families() {
				t.Run(string(f), func(t *testing.T) {
					runDiagPage(t, l, srv, f)
				})
			}
		})
	}
}

func runDiagPage(t *testing.T, l *lab.Lab, srv *lab.DiagPage, f lab.Family) {
	want := wantDiag(l.Config(), f)
	got, conns, _ := pageIn(t, l, srv, f)
	assert.Equal(t, want.class, got.Class)
	assert.Equal(t, want.healthy, got.Healthy)
	checkLimit(t, "upstream_mtu", want.up, got.UpstreamMTU)
	checkLimit(t, "downstream_mtu", want.down, got.DownstreamMTU)
	if want.class == verdict.Healthy {
		assert.Empty(t, got.Fixes)
	} else {
		assert.NotEmpty(t, got.Fixes)
	}
	// The page keeps to its bounds: a handful of probes per direction.
	assert.Less(t, conns, 60, "connections")
}

// pageIn loads the page in the client namespace's browser and returns its
// #result, the connections it made and the seconds it took.
func pageIn(t *testing.T, l *lab.Lab, srv *lab.DiagPage, f lab.Family) (verdict.Summary, int, float64) {
	t.Helper()
	browsers <- struct{}{}
	defer func() { <-browsers }()
	before := srv.Accepted(f)
	res, err := l.Browse(context.Background(), lab.BrowseArgs{
		URL:     fmt.Sprintf("http://%s/", l.Addr(f, lab.PortDiagPage)),
		Done:    []string{"fitshake: done", "fitshake: error"},
		Read:    []string{"result", "stats", "status", "headline"},
		Timeout: 90 * time.Second,
	})
	require.NoError(t, err)
	conns := srv.Accepted(f) - before
	t.Logf("%s %s: %q after %v (browser start %v), %d connections; stats %s; %s",
		l.Config(), f, res.Title, res.Elapsed.Round(10*time.Millisecond), res.Startup.Round(10*time.Millisecond),
		conns, res.Text["stats"], res.Text["status"])
	require.False(t, res.TimedOut, "the page did not finish: %q", res.Text["status"])
	require.Equal(t, "fitshake: done", res.Title, "status: %s", res.Text["status"])
	var got verdict.Summary
	require.NoError(t, json.Unmarshal([]byte(res.Text["result"]), &got), "#result: %q", res.Text["result"])
	t.Logf("result %s", res.Text["result"])
	t.Logf("headline: %s", res.Text["headline"])
	return got, conns, res.Elapsed.Seconds()
}

// checkLimit asserts a limit: 1500 exactly on a full-size path, otherwise
// within diagTolerance below the truth (the page reports the largest size
// it saw get through, never more).
func checkLimit(t *testing.T, name string, want, got int) {
	t.Helper()
	if want == 1500 {
		assert.Equal(t, 1500, got, name)
		return
	}
	assert.LessOrEqual(t, got, want, "%s above the truth", name)
	assert.GreaterOrEqual(t, got, want-diagTolerance, "%s more than %d below the truth", name, diagTolerance)
}
