package tlsdial

import (
	"fmt"
	"testing"
	"time"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/stretchr/testify/assert"
)

func TestFirstPoll(t *testing.T) {
	for _, tt := range []struct {
		lookSoon, info bool
		rtt, want      time.Duration
	}{
		{lookSoon: false, info: true, rtt: 50 * time.Microsecond, want: pollInterval},
		{lookSoon: true, info: true, rtt: 10 * time.Microsecond, want: minFirstLook},
		{lookSoon: true, info: true, rtt: 50 * time.Microsecond, want: 100 * time.Microsecond},
		{lookSoon: true, info: true, rtt: 300 * time.Microsecond, want: 600 * time.Microsecond},
		{lookSoon: true, info: true, rtt: 20 * time.Millisecond, want: pollInterval},
		{lookSoon: true, info: false, rtt: 50 * time.Microsecond, want: 0},
	} {
		t.Run(fmt.Sprintf("soon=%v/info=%v/rtt=%v", tt.lookSoon, tt.info, tt.rtt), func(t *testing.T) {
			m := newMachine(machineConfig{addr: "x", rungs: pqRungs(false), lookSoon: tt.lookSoon,
				steps: ladderSteps(defaultMTUs, helloMTU, pqRungs(false))})
			m.begin(t0)
			m.drain()
			m.connected(1, tt.rtt, 1460)
			m.sent(1, t0, 1500, pmtu.TCPInfo{BytesAcked: 1}, tt.info)
			assert.Equal(t, tt.want, m.firstPoll(1))
			// Later polls keep the interval: only the first look moves.
			assert.Equal(t, map[bool]time.Duration{true: pollInterval, false: 0}[tt.info], m.pollEvery(1))
		})
	}
}

// TestNextPoll checks when an attempt is polled again after an early look:
// as long again as the hello has been out while nothing of it was heard,
// the interval once the server acknowledged it, never once a SACK gave the
// verdict, and the interval always for a dial that does not look early.
func TestNextPoll(t *testing.T) {
	const us = time.Microsecond
	base := pmtu.TCPInfo{BytesAcked: 1}
	for _, tt := range []struct {
		name     string
		lookSoon bool
		at       time.Duration // since the hello
		cur      pmtu.TCPInfo
		want     time.Duration
	}{
		{"nothing heard", true, 100 * us, base, 100 * us},
		{"nothing heard, later", true, 400 * us, base, 400 * us},
		{"nothing heard, the interval caps it", true, 1500 * us, base, pollInterval},
		{"hello acknowledged", true, 100 * us, pmtu.TCPInfo{BytesAcked: 1501}, pollInterval},
		// The head lost: the verdict is in, nothing is polled again.
		{"a SACK", true, 100 * us, pmtu.TCPInfo{BytesAcked: 1, Sacked: 1, Unacked: 2}, 0},
		{"no early looks", false, 100 * us, base, pollInterval},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := newMachine(machineConfig{addr: "x", rungs: pqRungs(false), lookSoon: tt.lookSoon,
				steps: ladderSteps(defaultMTUs, helloMTU, pqRungs(false))})
			m.begin(t0)
			m.drain()
			m.connected(1, 20*us, 1460)
			m.sent(1, t0, 1500, base, true)
			now := t0.Add(tt.at)
			m.observe(1, now, tt.cur, 0)
			assert.Equal(t, tt.want, m.nextPoll(1, now))
		})
	}
}

func TestAnsweredSetIsBounded(t *testing.T) {
	var s answeredSet
	k := func(i int) answeredKey { return answeredKey{"tcp", fmt.Sprint("10.0.0.1:", i)} }
	for i := range answeredMax + 10 {
		s.note(k(i), true)
	}
	assert.Len(t, s.m, answeredMax)
	assert.True(t, s.has(k(answeredMax+9)), "the newest is kept")
	s.note(k(answeredMax+9), false)
	assert.False(t, s.has(k(answeredMax+9)), "a dial that needed more forgets it")
	assert.Len(t, s.m, answeredMax-1)
}
