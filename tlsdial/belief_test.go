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

// A box that holds every new connection and releases them together (a
// proxy waiting on its resolver) answers the first attempt and the hedges
// raced beside it at once: the least reduced attempt wins, and nothing is
// remembered but the silence.
func TestMachineReleasedTogetherPrefersTheLeastReduced(t *testing.T) {
	for _, release := range []time.Duration{300 * time.Millisecond, 900 * time.Millisecond, 1200 * time.Millisecond, 3 * time.Second} {
		for _, info := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/info=%t", release, info), func(t *testing.T) {
				s := newSim(t, simPath{releaseAt: release}, machineConfig{addr: "x", rungs: dialerRungs(true)}, info)
				s.run(time.Minute)
				s.checkInvariants()
				r := s.m.report
				require.Equal(t, 1, s.m.winner, "%s", r)
				assert.Greater(t, len(r.Attempts), 1, "it did race: %s", r)
				assert.Zero(t, r.Stalls(), "nothing stalled: the others were superseded: %s", r)
				e, ok := s.m.remember(s.now)
				if ok {
					assert.Zero(t, e.MTU, "no clamp learned: %s", r)
					assert.Equal(t, "pq", e.Rung, "no smaller hello learned")
					assert.Positive(t, e.Silence)
				}
				for _, ef := range s.effects {
					assert.False(t, ef.kind == effShare && !ef.replied, "no stall told to other dials: %+v", ef)
					assert.False(t, ef.needed, "no reduction told to other dials: %+v", ef)
				}
			})
		}
	}
}

// A server that answers after 0.8 s gets at most one extra connection from
// a first dial, and none once its silence is learned; one that answers
// after 3 s gets the clamps paced, not at once.
func TestMachineSlowServerCostsLittle(t *testing.T) {
	tests := []struct {
		delay    time.Duration
		maxExtra int
	}{
		{400 * time.Millisecond, 1},
		{800 * time.Millisecond, 1},
		{2 * time.Second, 2},
		{5 * time.Second, 3},
	}
	for _, tt := range tests {
		for _, info := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/info=%t", tt.delay, info), func(t *testing.T) {
				s := newSim(t, simPath{delay: tt.delay}, machineConfig{addr: "x", rungs: dialerRungs(true)}, info)
				s.run(time.Minute)
				s.checkInvariants()
				require.Equal(t, 1, s.m.winner, "%s", s.m.report)
				assert.LessOrEqual(t, len(s.m.report.Attempts)-1, tt.maxExtra, "%s", s.m.report)
				e, ok := s.m.remember(s.now)
				require.True(t, ok)
				assert.Zero(t, e.MTU)

				s2 := newSim(t, simPath{delay: tt.delay}, machineConfig{addr: "x", rungs: dialerRungs(true), fromCache: true, silence: e.Silence}, info)
				s2.run(time.Minute)
				s2.checkInvariants()
				assert.Len(t, s2.m.report.Attempts, 1, "learned: no extra connection: %s", s2.m.report)
			})
		}
	}
}

// Conclusive evidence still redials at once, and is remembered; silence
// behind a box that acknowledges for the server walks the clamps down in
// seconds, and the clamp the box needs is remembered once every larger one
// was overtaken.
func TestMachineRemembersOnlyWhatWasNeeded(t *testing.T) {
	tests := []struct {
		name    string
		p       simPath
		info    bool
		wantMTU int
		within  time.Duration
	}{
		{"upstream black hole", simPath{maxPacket: 1400}, true, 1400, 5 * time.Millisecond},
		{"reset", simPath{maxPacket: 1280, reset: true}, true, 1280, 5 * time.Millisecond},
		{"proxy at 1400", simPath{maxPacket: 1400, proxied: true}, true, 1400, 400 * time.Millisecond},
		{"proxy at 576 downstream", simPath{maxPacket: 576, dir: "down", proxied: true}, true, 576, 4 * time.Second},
		{"timer only at 576", simPath{maxPacket: 576}, false, 576, 4 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, tt.p, machineConfig{addr: "x", rungs: dialerRungs(false)}, tt.info)
			s.run(time.Minute)
			s.checkInvariants()
			require.Equal(t, tt.wantMTU, s.winnerMTU(), "%s", s.m.report)
			assert.LessOrEqual(t, s.m.report.Duration, tt.within, "%s", s.m.report)
			e, ok := s.m.remember(s.now)
			require.True(t, ok, "%s", s.m.report)
			assert.Equal(t, tt.wantMTU, e.MTU)
			var told bool
			for _, ef := range s.effects {
				told = told || (ef.kind == effShare && ef.needed && ef.step.mtu == tt.wantMTU)
			}
			assert.True(t, told, "the other dials are told to start there")
		})
	}
}

// Hellos read whole and refused, a smaller one too: a box or server that
// refuses the connection, not the hello's packets or its size. One clamp
// is raced beside the first refusal (a proxy may reset what it cannot
// forward for its size) and no more once it is refused too: the dial
// fails after three attempts (four with the classical hello allowed), and
// its fix offers no smaller hello.
func TestMachineRefusedAfterReading(t *testing.T) {
	for _, classical := range []bool{false, true} {
		t.Run(fmt.Sprintf("classical=%t", classical), func(t *testing.T) {
			s := newSim(t, simPath{policy: true}, machineConfig{addr: "x", rungs: dialerRungs(classical)}, true)
			s.run(time.Minute)
			s.checkInvariants()
			r := s.m.report
			want := 3
			if classical {
				want = 4
			}
			require.Len(t, r.Attempts, want, "%s", r)
			clamped := 0
			for _, a := range r.Attempts {
				if a.MTU > 0 && a.Rung == "pq" {
					clamped++
				}
			}
			assert.Equal(t, 1, clamped, "one clamp tried: %s", r)
			assert.Equal(t, pmtu.ClassRefused, r.Diagnosis.Class, "%s", r)
			require.ErrorIs(t, s.m.err, ErrHelloRejected)
			var he *HelloError
			require.ErrorAs(t, s.m.err, &he)
			assert.Equal(t, pmtu.ClassRefused, he.Diagnosis.Class)
			assert.Empty(t, he.Fix, "no client-side change helps")
			assert.NotContains(t, he.Error(), "AllowClassical")
			assert.NotContains(t, r.Diagnosis.Fix(), "AllowClassical")
			e, ok := s.m.remember(s.now)
			require.True(t, ok)
			assert.Equal(t, pmtu.ClassRefused, e.Class)

			// The next dial knows: it fails on its first refusal.
			s2 := newSim(t, simPath{policy: true}, machineConfig{addr: "x", rungs: dialerRungs(classical), rejected: e.Class}, true)
			s2.run(time.Minute)
			s2.checkInvariants()
			assert.Len(t, s2.m.report.Attempts, 1, "%s", s2.m.report)
			assert.ErrorIs(t, s2.m.err, ErrHelloRejected)
		})
	}

	// TCPDialer replays one hello: read whole and refused is all it sees,
	// and it says so without advising what it cannot know helps.
	s := newSim(t, simPath{policy: true}, machineConfig{addr: "x", rungs: []rungInfo{{size: 300}}}, true)
	s.run(time.Minute)
	s.checkInvariants()
	require.Len(t, s.m.report.Attempts, 2, "the first refusal and one clamp: %s", s.m.report)
	var he *HelloError
	require.ErrorAs(t, s.m.err, &he)
	assert.Empty(t, he.Fix, "a hello without a post-quantum share: dropping it cannot help")
}

// Behind a box that acknowledges for the server and gets nothing back,
// every clamp is silent: the dial gives up naming the box, with a fix.
func TestMachineSilentEverywhereNamesTheBox(t *testing.T) {
	s := newSim(t, simPath{never: true}, machineConfig{addr: "x", rungs: dialerRungs(false)}, true)
	s.run(time.Minute)
	s.checkInvariants()
	r := s.m.report
	require.Error(t, s.m.err)
	assert.ErrorIs(t, s.m.err, ErrStalled)
	assert.Equal(t, pmtu.ClassProxy, r.Diagnosis.Class, "%s", r)
	assert.Contains(t, s.m.err.Error(), "acknowledges for the server")
	assert.Contains(t, r.Diagnosis.Fix(), "far side")
	assert.LessOrEqual(t, r.Duration, giveUpAfter+time.Millisecond)

	// Without TCP_INFO nothing shows the hellos were acknowledged.
	s = newSim(t, simPath{never: true}, machineConfig{addr: "x", rungs: dialerRungs(false)}, false)
	s.run(time.Minute)
	s.checkInvariants()
	assert.NotEqual(t, pmtu.ClassProxy, s.m.report.Diagnosis.Class)
}

func TestHedgeGap(t *testing.T) {
	w := 250 * time.Millisecond
	var at time.Duration
	var got []time.Duration
	for k := range 5 {
		at += hedgeGap(w, k)
		got = append(got, at)
	}
	assert.Equal(t, []time.Duration{250 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5500 * time.Millisecond, 11500 * time.Millisecond}, got)
	assert.Equal(t, giveUpAfter, hedgeGap(w, 60), "bounded")
	assert.Equal(t, 20*time.Second, hedgeGap(20*time.Second, 3), "never below the window")
}

// TestHedgeBudgetAgainstOracle: random acquire and release sequences by a
// changing number of dials never exceed the bound, and the budget grants
// whenever the bound allows.
func TestHedgeBudgetAgainstOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	for range 200 {
		var b hedgeBudget
		inFlight := 0
		for range 500 {
			dials := 1 + rng.IntN(1000)
			if inFlight > 0 && rng.IntN(2) == 0 {
				b.release()
				inFlight--
				continue
			}
			limit := max(4, dials/10)
			got := b.acquire(dials)
			require.Equal(t, inFlight < limit, got, "in flight %d, dials %d", inFlight, dials)
			if got {
				inFlight++
			}
		}
	}
	assert.Panics(t, func() { new(hedgeBudget).release() })
}

// fakeBudget counts what a machine takes from its budget.
type fakeBudget struct{ limit, inFlight, denied int }

func (f *fakeBudget) acquire() bool {
	if f.inFlight >= f.limit {
		f.denied++
		return false
	}
	f.inFlight++
	return true
}

func (f *fakeBudget) release() { f.inFlight-- }

// A dial whose budget is spent hedges later, and returns what it took.
func TestMachineHonoursTheBudget(t *testing.T) {
	b := &fakeBudget{limit: 0}
	s := newSim(t, simPath{delay: 900 * time.Millisecond}, machineConfig{addr: "x", rungs: dialerRungs(false)}, true)
	s.m.budget = b
	s.run(time.Minute)
	s.checkInvariants()
	assert.Len(t, s.m.report.Attempts, 1, "no hedge without budget: %s", s.m.report)
	assert.Positive(t, b.denied)

	b = &fakeBudget{limit: 1}
	s = newSim(t, simPath{maxPacket: 576, proxied: true}, machineConfig{addr: "x", rungs: dialerRungs(false)}, true)
	s.m.budget = b
	s.run(time.Minute)
	s.checkInvariants()
	assert.Zero(t, b.inFlight, "every hedge returned")
}
