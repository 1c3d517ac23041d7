//go:build linux

package lab_test

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// priorSites are three servers in three sites (distinct /24s), all nginx
// in the server namespace: its own address, and two more that the server
// namespace takes in by DNAT (addSites).
var priorSites = []string{"198.18.1.2", "198.19.1.2", "198.19.2.2"}

// priorProcesses is how many client processes each side of
// TestLabNetworkPrior's comparison runs: more than TestLabStore, for the
// medians of a loaded 2-core machine.
const priorProcesses = 11

// A network that black-holes large packets, met by short-lived processes
// sharing a store (pmtu.OpenFileCache), one after the other: two of them
// learn a clamp for two sites (A, then B: one site is no evidence about
// the network, so B starts unclamped); every later process's first dial to
// a third site, C, which nothing has learned, starts clamped from the
// network's prior and completes about as fast as a cold dial on a healthy
// path, measured in the same test; so does every later process's first
// dial to A, from the store. Then the client's network changes (a
// new source address on its default route): the first dial to C is not
// clamped; back on the old network, it is again.
//
// Two networks: the lab's Blackhole (TCP_INFO sees the loss) and a silent
// box (lab.StartSilentBox: a relay in the router acknowledges for the
// server, and packets over 1400 bytes vanish beyond it, so TCP_INFO sees
// nothing and only the stall window and a clamped attempt's reply tell).
// The silent box's healthy dial goes through the same relay, nothing
// dropped.
func TestLabNetworkPrior(t *testing.T) {
	lab.Require(t)
	for _, c := range []struct {
		name string
		box  bool
	}{{"blackhole", false}, {"silent-box", true}} {
		t.Run(c.name, func(t *testing.T) {
			var healthy, broken *lab.Lab
			if c.box {
				healthy, broken = lab.New(t, lab.Config{}), lab.New(t, lab.Config{})
				_, err := healthy.StartSilentBox(lab.PortNginxSmall, 0)
				require.NoError(t, err)
				_, err = broken.StartSilentBox(lab.PortNginxSmall, lab.DefaultMTU)
				require.NoError(t, err)
			} else {
				healthy, broken = lab.New(t, lab.Config{}), lab.New(t, lab.Config{Scenario: lab.Blackhole})
			}
			networkPrior(t, healthy, broken)
		})
	}
}

func networkPrior(t *testing.T, healthy, broken *lab.Lab) {
	ctx := context.Background()
	var ca string
	for _, l := range []*lab.Lab{healthy, broken} {
		_, err := l.StartNginx()
		require.NoError(t, err)
		pki, err := l.PKI()
		require.NoError(t, err)
		ca = pki.CAFile
		addSites(t, l)
	}
	store := t.TempDir() + "/fitshake/paths.json"
	site := func(i int) string { return net.JoinHostPort(priorSites[i], strconv.Itoa(lab.PortNginxSmall)) }
	// process runs one client process with one dial to addr, and returns
	// it, completed.
	process := func(l *lab.Lab, addr, file string) lab.DialRun {
		t.Helper()
		res, err := l.Dial(ctx, lab.FitshakeDialer, lab.DialArgs{Addr: addr, CAFile: ca, StoreFile: file, Timeout: fitshakeBound})
		require.NoError(t, err)
		require.Len(t, res.Runs, 1)
		r := res.Runs[0]
		require.True(t, r.OK, "%s %s", r.Err, r.Report)
		require.NotNil(t, r.Report)
		require.NotEmpty(t, r.Report.Attempts)
		return r
	}

	a := process(broken, site(0), store)
	t.Logf("site A, the first process: %v: %s", a.Elapsed.Round(time.Millisecond), a.Report)
	require.NotZero(t, a.Report.MSS, "recovered with a clamp: %s", a.Report)
	require.False(t, a.Report.FromNetwork)
	b := process(broken, site(1), store)
	t.Logf("site B: %v: %s", b.Elapsed.Round(time.Millisecond), b.Report)
	assert.False(t, b.Report.FromNetwork, "one site is no evidence about the network: %s", b.Report)
	assert.Zero(t, b.Report.Attempts[0].MSS, "%s", b.Report)
	require.NotZero(t, b.Report.MSS, "%s", b.Report)
	stored := storeEntries(t, store)
	require.Len(t, stored, 2, "%+v", stored)
	oldNetwork := stored[0].Local
	require.Equal(t, oldNetwork, stored[1].Local)

	// Alternate, so that a load on the machine hits both alike: a cold
	// process on the healthy path, a process whose first dial to C starts
	// from the network's prior.
	var cold, warm, again []time.Duration
	for range priorProcesses {
		h := process(healthy, site(2), "")
		s := process(broken, site(0), store)
		require.True(t, s.Report.FromCache, "A from the store: %s", s.Report)
		firstWins(t, s.Report, a.Report.MSS)
		again = append(again, s.Elapsed)
		w := process(broken, site(2), store)
		require.True(t, w.Report.FromNetwork, "from the network's prior: %s", w.Report)
		require.False(t, w.Report.FromCache, "C itself was never learned: %s", w.Report)
		firstWins(t, w.Report, a.Report.MSS)
		cold, warm = append(cold, h.Elapsed), append(warm, w.Elapsed)
	}
	mc, mw, ma := storeMedian(cold), storeMedian(warm), storeMedian(again)
	t.Logf("first dial of a process to A, learned: from the store median %v %v: ratio %.2f",
		ma, rounded(again), float64(ma)/float64(mc))
	t.Logf("first dial of a process to C: healthy median %v %v; from the network's prior median %v %v: ratio %.2f",
		mc, rounded(cold), mw, rounded(warm), float64(mw)/float64(mc))
	t.Logf("sites A and B, which had to learn: %v and %v (%.1f× and %.1f× the healthy median)",
		a.Elapsed.Round(time.Millisecond), b.Elapsed.Round(time.Millisecond),
		float64(a.Elapsed)/float64(mc), float64(b.Elapsed)/float64(mc))
	// The goal is 1.2×. On a loaded 2-core machine a dial on veths takes
	// 6 ms or 60 ms as the scheduler pleases, so the fastest dial of each
	// side (the least disturbed) is held to it, and the medians to it with
	// a margin that is still a tenth of the stall window the learning
	// processes waited out.
	lc, lw, la := slices.Min(cold), slices.Min(warm), slices.Min(again)
	t.Logf("fastest: healthy %v, from the network's prior %v (%.2f), A from the store %v (%.2f)",
		lc, lw, float64(lw)/float64(lc), la, float64(la)/float64(lc))
	assert.Less(t, lw, lc*12/10+2*time.Millisecond, "from the network's prior, fastest within 1.2× (+2 ms) of a healthy dial")
	assert.Less(t, la, lc*12/10+2*time.Millisecond, "from the store, fastest within 1.2× (+2 ms) of a healthy dial")
	assert.Less(t, mw, mc*12/10+20*time.Millisecond, "from the network's prior, median within 1.2× (+20 ms) of a healthy dial")
	assert.Less(t, ma, mc*12/10+20*time.Millisecond, "from the store, median within 1.2× (+20 ms) of a healthy dial")
	assert.Len(t, storeEntries(t, store), 2, "dials from the prior learned nothing")

	// The network changes: a new source address on the default route.
	mustRun(t, broken, lab.Client, "ip", "-4", "addr", "add", "198.18.0.3/24", "dev", "c0")
	mac, err := broken.Command(ctx, lab.Client, "cat", "/sys/class/net/c0/address").Output()
	require.NoError(t, err)
	mustRun(t, broken, lab.Router, "ip", "neigh", "replace", "198.18.0.3", "lladdr", strings.TrimSpace(string(mac)), "dev", "r0", "nud", "permanent")
	mustRun(t, broken, lab.Client, "ip", "-4", "route", "replace", "default", "via", "198.18.0.1", "dev", "c0", "src", "198.18.0.3")
	moved := process(broken, site(2), store)
	t.Logf("C on the new network: %v: %s", moved.Elapsed.Round(time.Millisecond), moved.Report)
	assert.False(t, moved.Report.FromNetwork, "the old network's prior is not used: %s", moved.Report)
	assert.Zero(t, moved.Report.Attempts[0].MSS, "the first attempt is not clamped: %s", moved.Report)

	// Back on the old network, its prior is used again.
	mustRun(t, broken, lab.Client, "ip", "-4", "route", "replace", "default", "via", "198.18.0.1", "dev", "c0", "src", "198.18.0.2")
	back := process(broken, site(2), store)
	t.Logf("C back on the old network: %v: %s", back.Elapsed.Round(time.Millisecond), back.Report)
	assert.True(t, back.Report.FromNetwork, "%s", back.Report)
	firstWins(t, back.Report, a.Report.MSS)
}

// firstWins holds that the dial's first attempt was clamped to mss and
// completed. A starved client may race a second attempt beside it (its
// hello not acknowledged within 20 ms), but the first must win.
func firstWins(t *testing.T, r *lab.Report, mss int) {
	t.Helper()
	require.Equal(t, mss, r.Attempts[0].MSS, "the first attempt, clamped: %s", r)
	require.Equal(t, "ok", r.Attempts[0].Outcome, "and it works: %s", r)
	if len(r.Attempts) > 1 {
		t.Logf("raced beside it: %s", r)
	}
}

// addSites makes the server namespace answer at priorSites' other
// addresses too: the router routes them to it, and it takes them in by
// DNAT to its own address, where nginx listens.
func addSites(t *testing.T, l *lab.Lab) {
	t.Helper()
	mustRun(t, l, lab.Router, "ip", "-4", "route", "add", "198.19.0.0/16", "via", priorSites[0])
	cmd := l.Command(context.Background(), lab.Server, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(`table ip fitsites {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr 198.19.0.0/16 dnat to ` + priorSites[0] + `
	}
}
`)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
}
