package tlswatch

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// withAdv is o as seen through a SYN-ACK that announced adv, with the
// client's SYN MSS syn: TCP_INFO's send MSS is the smaller, less the
// timestamps.
func withAdv(o observation, adv, syn uint32) observation {
	o.info.AdvMSS = adv
	o.info.SndMSS = min(adv, syn) - timestampOpt
	o.info.RcvMSS = o.info.SndMSS
	return o
}

// TestPolicyLadder: a prefix is clamped to the ladder's first rung, each
// family to its own MSS; black holes on connections the clamp did not
// apply to (accepted before it) are no evidence; After black holes under
// the clamp step it down to the next rung, and no further than the last.
func TestPolicyLadder(t *testing.T) {
	v4, v6 := netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/48")
	s := clamps{p: Policy{After: 2, TTL: time.Hour}}
	now := time.Unix(1e9, 0)
	step := func() time.Time { now = now.Add(time.Second); return now }
	for _, pfx := range []netip.Prefix{v4, v6} {
		assert.False(t, s.observe(pfx, BlackHoleUpstream, 1460, step()))
		assert.True(t, s.observe(pfx, BlackHoleUpstream, 1460, step()), "After black holes clamp")
	}
	assert.Equal(t, map[netip.Prefix]int{v4: 1360, v6: 1340}, s.clampMap(), "1400 each family's way")
	assert.Equal(t, []int{1360, 1340, 1240, 1220}, s.p.twins())

	assert.False(t, s.observe(v4, BlackHoleUpstream, 1460, step()), "accepted before the clamp")
	assert.False(t, s.observe(v4, BlackHoleUpstream, 1460, step()))
	assert.False(t, s.observe(v4, Healthy, 1360, step()))
	assert.False(t, s.observe(v4, BlackHoleDownstream, 1360, step()), "one under the clamp")
	assert.True(t, s.observe(v4, BlackHoleDownstream, 1360, step()), "After under the clamp: the next rung")
	assert.Equal(t, 1240, s.mss(v4))
	assert.Equal(t, 1340, s.mss(v6), "the other prefix keeps its rung")
	for range 4 {
		assert.False(t, s.observe(v4, BlackHoleDownstream, 1240, step()), "the last rung")
	}
	assert.Equal(t, 1240, s.mss(v4))

	// The TTL counts from the last step.
	now = now.Add(time.Hour - 7*time.Second)
	assert.True(t, s.expire(now), "v6's clamp expires")
	assert.Equal(t, map[netip.Prefix]int{v4: 1240}, s.clampMap())
	now = now.Add(7 * time.Second)
	assert.True(t, s.expire(now))
	assert.Empty(t, s.clampMap())

	one := clamps{p: Policy{After: 1, MSS: 1300}}
	assert.True(t, one.observe(v6, BlackHoleUpstream, 0, now))
	assert.False(t, one.observe(v6, BlackHoleUpstream, 1300, now), "one MSS: a ladder of one rung")
	assert.Equal(t, 1300, one.mss(v6))
	assert.Equal(t, []int{1300}, one.p.twins())
	assert.Equal(t, 1300, one.p.ClampMSS())
	assert.Equal(t, 1220, Policy{}.ClampMSS(), "the zero Policy's smallest clamp")
}

// TestClampedCompletions: handshakes that complete under the self-fix's
// clamp are counted (Completed, Fixed) but are neither the prefix's
// recovery nor its clients': the prefix keeps its class, stays failing and
// clamped (also once its failures left the window), no "recovered" line is
// logged, and the fix lines give the clamp that carried them. Once the
// clamp expires, full-size handshakes that complete recover it.
func TestClampedCompletions(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1e9, 0)}
	var logs bytes.Buffer
	w := &Watcher{now: clk.Now, Window: time.Minute, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Clamp: &clampLog{}, Policy: Policy{After: 3, TTL: 10 * time.Minute}}
	w.init()
	pfx := netip.MustParsePrefix("192.0.2.0/24")
	for range 3 {
		w.record(tcpAddr("192.0.2.7:1"), withAdv(upstreamObs, 1460, 1460))
	}
	require.Equal(t, []netip.Prefix{pfx}, w.Clamped())
	for range 20 { // the same address, now clamped: its SYN MSS reads as the clamp
		w.record(tcpAddr("192.0.2.7:1"), withAdv(healthyObs, 1360, 1460))
	}
	ps := w.Status().Prefixes[0]
	assert.Equal(t, BlackHoleUpstream, ps.Class)
	assert.True(t, ps.Failing)
	assert.True(t, ps.Clamped)
	assert.Equal(t, 1360, ps.MSS)
	assert.Equal(t, 20, ps.Completed)
	assert.Equal(t, 20, ps.Fixed)
	assert.Equal(t, 0, ps.Recovered, "the server clamped them: no client recovered")
	assert.Equal(t, 0, ps.RecoveredMSS)
	assert.Equal(t, 1460, ps.SYNMSSMin, "the clamp is not taken for the clients' SYN MSS")
	fixes := strings.Join(ps.Fixes, "\n")
	assert.Contains(t, fixes, "maxseg size set 1360", "the clamp that carried them")
	assert.Contains(t, fixes, "ip route add 192.0.2.0/24 via <gateway> advmss 1360")
	assert.Contains(t, fixes, "clamps new connections from 192.0.2.0/24 to MSS 1360 now")

	clk.Add(2 * time.Minute) // the failures leave the window; the clamp stays
	w.record(tcpAddr("192.0.2.8:1"), withAdv(healthyObs, 1360, 1460))
	ps = w.Status().Prefixes[0]
	assert.Equal(t, BlackHoleUpstream, ps.Class, "only the clamp's completions: the class of the hole")
	assert.True(t, ps.Failing)
	assert.True(t, ps.Clamped)
	assert.NotContains(t, logs.String(), "prefix recovered")

	clk.Add(10 * time.Minute) // the clamp expires; the path was mended
	w.record(tcpAddr("192.0.2.8:1"), withAdv(healthyObs, 1460, 1460))
	assert.Empty(t, w.Clamped())
	ps = w.Status().Prefixes[0]
	assert.Equal(t, Healthy, ps.Class)
	assert.False(t, ps.Failing)
	assert.Contains(t, logs.String(), `msg="tlswatch: prefix recovered" prefix=192.0.2.0/24`)
}

// A client's own smaller SYN MSS, below what we announced, is a recovery;
// the same size announced by our clamp is not.
func TestClientMSS(t *testing.T) {
	for _, tt := range []struct {
		name       string
		adv, syn   int
		wantClient int
	}{
		{"full", 1460, 1460, 0},
		{"client clamps", 1460, 1360, 1360},
		{"server clamps", 1360, 1360, 0},
		{"unknown advmss", 0, 1360, 1360},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.wantClient, Evidence{AdvMSS: tt.adv, SYNMSS: tt.syn}.clientMSS())
		})
	}
}
