package tlsdial

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStallWindow(t *testing.T) {
	tests := []struct {
		name       string
		configured time.Duration
		rtt        time.Duration
		want       time.Duration
	}{
		{"lab rtt uses the floor", 0, 50 * time.Microsecond, minStallWindow},
		{"zero rtt uses the floor", 0, 0, minStallWindow},
		{"long path scales", 0, 200 * time.Millisecond, 800 * time.Millisecond},
		{"capped", 0, 5 * time.Second, maxStallWindow},
		{"configured wins", 40 * time.Millisecond, time.Second, 40 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, stallWindow(tt.configured, tt.rtt))
		})
	}
}

// path is the oracle: a black hole dropping packets over maxPacket bytes,
// and possibly a middlebox dropping any ClientHello over maxHello bytes
// whatever its segmentation.
type path struct {
	maxPacket int
	maxHello  int
}

// works reports whether an attempt at s completes on p, for hello sizes
// by rung and an IPv4 peer (MSS = MTU − 40; unclamped MSS 1460).
func (p path) works(s step, helloSizes []int) bool {
	mss := 1460
	if s.mtu > 0 {
		mss = s.mtu - 40
	}
	return mss+40 <= p.maxPacket && helloSizes[s.rung] <= p.maxHello
}

func TestLadderAgainstOracle(t *testing.T) {
	helloSizes := []int{1540, 517}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		p := path{maxPacket: 500 + rng.IntN(1100), maxHello: 1 << 20}
		if rng.IntN(4) == 0 {
			p.maxHello = 300 + rng.IntN(1500)
		}
		rungs := 1 + rng.IntN(2)
		l := newLadder(defaultMTUs, helloMTU, rungs, 0)

		// The oracle: the first step, in ladder order, that works.
		want, wantIdx := step{}, -1
		for j, s := range l.steps {
			if p.works(s, helloSizes) {
				want, wantIdx = s, j
				break
			}
		}

		now := time.Unix(0, 0)
		var got []step
		done := false
		for {
			s, ok := l.begin(now, time.Time{})
			if !ok {
				break
			}
			got = append(got, s)
			if p.works(s, helloSizes) {
				done = true
				break
			}
			now = now.Add(minStallWindow)
			if !l.stalled() {
				break
			}
		}
		if wantIdx < 0 {
			require.False(t, done, "case %d %+v: no step can work", i, p)
			require.Len(t, got, len(l.steps), "case %d: every step tried once", i)
			continue
		}
		require.True(t, done, "case %d %+v rungs=%d: converged", i, p, rungs)
		require.Equal(t, want, got[len(got)-1], "case %d: first working step", i)
		require.Len(t, got, wantIdx+1, "case %d: no wasted attempts", i)
		for _, s := range got[:len(got)-1] {
			require.False(t, p.works(s, helloSizes), "case %d: never skipped past a working step", i)
		}
		for j, s := range got {
			if s.rung > 0 {
				// A weaker hello only after every clamp failed with the full one.
				require.GreaterOrEqual(t, j, len(defaultMTUs), "case %d", i)
			}
		}
	}
}

func TestLadderBounds(t *testing.T) {
	t.Run("max attempts", func(t *testing.T) {
		l := newLadder(defaultMTUs, helloMTU, 2, 2)
		now := time.Unix(0, 0)
		_, ok := l.begin(now, time.Time{})
		require.True(t, ok)
		require.True(t, l.stalled())
		_, ok = l.begin(now, time.Time{})
		require.True(t, ok)
		assert.False(t, l.stalled(), "two attempts used")
		_, ok = l.begin(now, time.Time{})
		assert.False(t, ok)
	})
	t.Run("deadline passed", func(t *testing.T) {
		l := newLadder(defaultMTUs, helloMTU, 1, 0)
		now := time.Unix(100, 0)
		_, ok := l.begin(now, now)
		assert.False(t, ok, "no attempt at the deadline")
		_, ok = l.begin(now, now.Add(time.Millisecond))
		assert.True(t, ok, "an attempt before it")
	})
	t.Run("classical needs a second rung", func(t *testing.T) {
		l := newLadder(defaultMTUs, helloMTU, 1, 0)
		for _, s := range l.steps {
			assert.Zero(t, s.rung)
		}
	})
	t.Run("start at a remembered step", func(t *testing.T) {
		l := newLadder(defaultMTUs, helloMTU, 2, 0)
		require.True(t, l.startAt(step{mtu: 1280}))
		s, ok := l.begin(time.Unix(0, 0), time.Time{})
		require.True(t, ok)
		assert.Equal(t, step{mtu: 1280}, s)
		assert.False(t, l.startAt(step{mtu: 999}), "unknown step")
	})
	t.Run("skip to a discovered step", func(t *testing.T) {
		l := newLadder(defaultMTUs, helloMTU, 2, 0)
		l.begin(time.Unix(0, 0), time.Time{})
		l.stalled()
		l.skipTo(step{mtu: 1280, rung: 1})
		s, _ := l.begin(time.Unix(0, 0), time.Time{})
		assert.Equal(t, step{mtu: 1280, rung: 1}, s)
		l.skipTo(step{}) // never backwards
		assert.Equal(t, 4, l.pos)
	})
}
