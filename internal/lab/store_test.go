//go:build linux

package lab_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// storeProcesses is how many client processes each side of TestLabStore
// measures, storeRuns the dials each makes.
const (
	storeProcesses = 7
	storeRuns      = 3
)

// Short-lived processes one after the other behind a black hole, sharing a
// store (pmtu.OpenFileCache): the first pays the fallback; the next ones
// start clamped from the store and complete about as fast as a dial on a
// healthy path, measured in a healthy lab in the same test. Then the
// client's network changes (a new source address on its default route):
// the store's entries for the old network are not used; back on the old
// network, they are.
func TestLabStore(t *testing.T) {
	ctx := context.Background()
	healthy := lab.New(t, lab.Config{Scenario: lab.Healthy})
	hole := lab.New(t, lab.Config{Scenario: lab.Blackhole})
	var ca string
	for _, l := range []*lab.Lab{healthy, hole} {
		_, err := l.StartNginx()
		require.NoError(t, err)
		pki, err := l.PKI()
		require.NoError(t, err)
		ca = pki.CAFile
	}
	store := filepath.Join(t.TempDir(), "fitshake", "paths.json")
	args := func(l *lab.Lab, runs int, file string) lab.DialArgs {
		return lab.DialArgs{Addr: l.Addr(lab.IPv4, lab.PortNginxSmall), CAFile: ca, Runs: runs,
			StoreFile: file, Timeout: fitshakeBound}
	}
	// process runs one client process and returns its runs, all
	// completed.
	process := func(l *lab.Lab, runs int, file string) []lab.DialRun {
		t.Helper()
		res, err := l.Dial(ctx, lab.FitshakeDialer, args(l, runs, file))
		require.NoError(t, err)
		require.Len(t, res.Runs, runs)
		for i, r := range res.Runs {
			require.True(t, r.OK, "run %d: %s %s", i+1, r.Err, r.Report)
		}
		return res.Runs
	}

	// The first process behind the black hole learns, and stores.
	first := process(hole, 1, store)[0]
	t.Logf("first process: %v: %s", first.Elapsed.Round(time.Millisecond), first.Report)
	require.NotZero(t, first.Report.MSS, "recovered with a clamp: %s", first.Report)
	require.False(t, first.Report.FromCache)
	stored := storeEntries(t, store)
	require.Len(t, stored, 1, "%+v", stored)
	oldNetwork := stored[0].Local
	assert.Contains(t, oldNetwork, "dev c0 via 198.18.0.1 src 198.18.0.2", "the client's route")

	// Alternate, so that a load on the machine hits both alike: a cold
	// process on the healthy path, a process from the store behind the
	// black hole.
	var cold, warm, coldAll, warmAll []time.Duration
	for range storeProcesses {
		h := process(healthy, storeRuns, "")
		s := process(hole, storeRuns, store)
		for i, r := range s {
			require.True(t, r.Report.FromCache, "run %d from the store: %s", i+1, r.Report)
			require.Len(t, r.Report.Attempts, 1, "run %d: the first attempt, clamped, works: %s", i+1, r.Report)
			require.Equal(t, first.Report.MSS, r.Report.Attempts[0].MSS, "run %d: %s", i+1, r.Report)
		}
		cold, warm = append(cold, h[0].Elapsed), append(warm, s[0].Elapsed)
		for i := range storeRuns {
			coldAll, warmAll = append(coldAll, h[i].Elapsed), append(warmAll, s[i].Elapsed)
		}
	}
	mc, mw := storeMedian(cold), storeMedian(warm)
	ratio := float64(mw) / float64(mc)
	t.Logf("first dial of a process: healthy (no store) median %v %v; behind the black hole from the store median %v %v: ratio %.2f",
		mc, rounded(cold), mw, rounded(warm), ratio)
	mca, mwa := storeMedian(coldAll), storeMedian(warmAll)
	t.Logf("every dial: healthy median %v, from the store %v: ratio %.2f", mca, mwa, float64(mwa)/float64(mca))
	t.Logf("the first process, which had to learn: %v (%.1f× the healthy median)",
		first.Elapsed.Round(time.Millisecond), float64(first.Elapsed)/float64(mc))
	// The goal is 1.2×; the margin is for a busy 2-core machine, where a
	// few milliseconds of scheduling are a large part of a dial on veths.
	assert.Less(t, mw, mc*12/10+5*time.Millisecond, "from the store, within 1.2× (+5 ms) of a healthy dial")

	// The network changes: a new source address on the default route.
	mustRun(t, hole, lab.Client, "ip", "-4", "addr", "add", "198.18.0.3/24", "dev", "c0")
	mac, err := hole.Command(ctx, lab.Client, "cat", "/sys/class/net/c0/address").Output()
	require.NoError(t, err)
	mustRun(t, hole, lab.Router, "ip", "neigh", "replace", "198.18.0.3", "lladdr", strings.TrimSpace(string(mac)), "dev", "r0", "nud", "permanent")
	mustRun(t, hole, lab.Client, "ip", "-4", "route", "replace", "default", "via", "198.18.0.1", "dev", "c0", "src", "198.18.0.3")
	moved := process(hole, 1, store)[0]
	t.Logf("on the new network: %v: %s", moved.Elapsed.Round(time.Millisecond), moved.Report)
	assert.False(t, moved.Report.FromCache, "the old network's entry is not used: %s", moved.Report)
	require.NotEmpty(t, moved.Report.Attempts)
	assert.Zero(t, moved.Report.Attempts[0].MSS, "the first attempt is not clamped: %s", moved.Report)
	locals := map[string]bool{}
	for _, e := range storeEntries(t, store) {
		locals[e.Local] = true
	}
	assert.True(t, locals[oldNetwork], "the old network's entry is kept for when it comes back: %v", locals)
	assert.Len(t, locals, 2, "and the new network's learned beside it: %v", locals)

	// Back on the old network, its entry is used again.
	mustRun(t, hole, lab.Client, "ip", "-4", "route", "replace", "default", "via", "198.18.0.1", "dev", "c0", "src", "198.18.0.2")
	back := process(hole, 1, store)[0]
	t.Logf("back on the old network: %v: %s", back.Elapsed.Round(time.Millisecond), back.Report)
	assert.True(t, back.Report.FromCache, "%s", back.Report)
}

type storeEntry struct {
	Local, Remote string
	MTU           int
}

func storeEntries(t *testing.T, path string) []storeEntry {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var f struct{ Entries []storeEntry }
	require.NoError(t, json.Unmarshal(b, &f), "%s", b)
	return f.Entries
}

func mustRun(t *testing.T, l *lab.Lab, s lab.Side, name string, arg ...string) {
	t.Helper()
	out, err := l.Command(context.Background(), s, name, arg...).CombinedOutput()
	require.NoError(t, err, "%s %v: %s", name, arg, out)
}

func storeMedian(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func rounded(d []time.Duration) []time.Duration {
	out := make([]time.Duration, len(d))
	for i, x := range d {
		out[i] = x.Round(100 * time.Microsecond)
	}
	return out
}
