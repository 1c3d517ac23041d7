package tlsdial

import (
	"testing"
	"time"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMachineRetried: a HelloRetryRequest answering attempt 1 ends the
// attempts raced beside it, forgets that the step replied (the retry
// request is no sign the server's flight gets through) and leaves attempt
// 1 unwatched until its second hello, after which silence races the next
// step again.
func TestMachineRetried(t *testing.T) {
	mtus, _ := ladderMTUs()
	rungs := []rungInfo{{}}
	m := newMachine(machineConfig{addr: "x", steps: ladderSteps(mtus, 0, rungs), rungs: rungs})
	m.begin(t0)
	m.connected(1, time.Millisecond, 0)
	m.sent(1, t0, 1500, pmtu.TCPInfo{}, false)
	m.startAt(t0, 1, true)
	m.connected(2, time.Millisecond, 1360)
	m.sent(2, t0, 1500, pmtu.TCPInfo{}, false)
	m.replied(0) // as observe does when the retry request's bytes arrive

	now := t0.Add(5 * time.Millisecond)
	require.True(t, m.retried(now, 1))
	assert.Equal(t, OutcomeSuperseded, m.report.Attempts[1].Outcome)
	assert.ErrorIs(t, m.report.Attempts[1].Err, errRetried)
	assert.Equal(t, OutcomeRunning, m.report.Attempts[0].Outcome)
	assert.False(t, m.waiting(1), "unwatched until the second hello")
	assert.Equal(t, len(m.cfg.steps), m.good, "the step's reply is forgotten")
	assert.True(t, m.nextWake().IsZero(), "no timer while the stack writes its second hello")

	m.sent(1, now, 300, pmtu.TCPInfo{}, false)
	require.True(t, m.waiting(1))
	assert.Equal(t, 300, m.report.Attempts[0].HelloSize)
	wake := m.nextWake()
	require.False(t, wake.IsZero(), "silence after the second hello is timed")
	m.tick(wake.Add(time.Millisecond), func(int) uint64 { return 0 })
	require.Len(t, m.legs, 3, "silence raced the next step")
	assert.Equal(t, 1, m.legs[2].idx, "the step after attempt 1's, tried again for the second hello")

	m.cancel(now, errRetried)
	assert.False(t, m.retried(now, 1), "not once the dial is over")
}
