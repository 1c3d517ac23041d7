package tlsdial

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A dial that starts from its network's prior (a clamp to 1400 that other
// destinations needed), over random paths: wherever the prior's clamp
// works it completes in one attempt, as fast as an unclamped dial on a
// healthy path, and remembers nothing that could count as evidence about
// the network; wherever more is needed it walks down as usual and
// whatever it remembers is marked FromNetwork, so that a prior never
// confirms itself.
func TestMachinePriorAgainstOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 14))
	for i := range 1500 {
		p := simPath{
			maxPacket: []int{0, 1400, 1300, 1280, 1000, 576}[rng.IntN(6)],
			dir:       []string{"both", "up", "down"}[rng.IntN(3)],
			proxied:   rng.IntN(3) == 0,
			reset:     rng.IntN(5) == 0,
			delay:     time.Duration(rng.IntN(4)) * time.Duration(rng.IntN(200)+1) * time.Millisecond,
		}
		info := rng.IntN(4) != 0
		rungs := pqRungs(false)
		if rng.IntN(2) == 0 {
			rungs = dialerRungs(false)
		}
		t.Run(fmt.Sprintf("%d:%+v/info=%t", i, p, info), func(t *testing.T) {
			cfg := machineConfig{addr: "x", rungs: rungs}
			cfg.steps = ladderSteps(defaultMTUs, helloMTU, rungs)
			first, ok := stepIndex(cfg.steps, rungs, pmtu.Entry{MTU: 1400, FromNetwork: true})
			require.True(t, ok)
			cfg.first, cfg.fromNetwork, cfg.borrowed = first, true, true

			s := newSim(t, p, cfg, info)
			s.run(time.Minute)
			s.checkInvariants()
			assert.False(t, s.m.report.FromCache, "not the destination's memory")
			e, learned := s.m.remember(s.now)
			if learned && e.MTU > 0 {
				assert.True(t, e.FromNetwork, "what a prior taught is marked: %+v\n%s", e, s.m.report)
			}
			st := cfg.steps[first]
			if !p.works(st, rungs[st.rung].size) {
				return
			}
			require.Equal(t, 1, s.m.winner, "the prior's attempt wins\n%s", s.m.report)
			if p.delay < minStallWindow {
				assert.Len(t, s.m.report.Attempts, 1, "an answer within the window: one attempt\n%s", s.m.report)
			}
			assert.False(t, learned && e.MTU > 0 && !e.FromNetwork, "nothing that counts for the network: %+v", e)

			// An unclamped dial where it works too: the clamp costs no time.
			plain := machineConfig{addr: "x", rungs: rungs, steps: cfg.steps}
			if p.works(cfg.steps[0], rungs[0].size) {
				u := newSim(t, p, plain, info)
				u.run(time.Minute)
				assert.LessOrEqual(t, s.m.report.Duration, u.m.report.Duration, "prior %s\nunclamped %s", s.m.report, u.m.report)
			}
		})
	}
}

// An entry that a prior taught carries its mark to the dials that start
// from it: they too learn nothing that counts for the network.
func TestMachineBorrowedEntryStaysBorrowed(t *testing.T) {
	rungs := dialerRungs(false)
	steps := ladderSteps(defaultMTUs, helloMTU, rungs)
	first, ok := stepIndex(steps, rungs, pmtu.Entry{MTU: 1400})
	require.True(t, ok)
	for _, borrowed := range []bool{false, true} {
		s := newSim(t, simPath{maxPacket: 1280}, machineConfig{addr: "x", steps: steps, rungs: rungs,
			first: first, fromCache: true, borrowed: borrowed}, true)
		s.run(time.Minute)
		s.checkInvariants()
		require.Equal(t, 1280, s.winnerMTU(), "%s", s.m.report)
		e, ok := s.m.remember(s.now)
		require.True(t, ok, "%s", s.m.report)
		assert.Equal(t, 1280, e.MTU)
		assert.Equal(t, borrowed, e.FromNetwork)
	}
}
