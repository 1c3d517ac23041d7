package tlsdial

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/timeline"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The machine is tested without sockets: a simulated path decides what
// each attempt sees (TCP_INFO readings, a reply, a reset), time is fake,
// and the harness plays the engine's part — it starts what the machine
// asks for, polls every millisecond, wakes it when it asks.

var t0 = time.Unix(1_000_000, 0)

// simPath is the oracle: what the network and server do to an attempt.
type simPath struct {
	maxPacket int           // packets over it vanish (0: none do)
	dir       string        // "both", "up" or "down"
	proxied   bool          // a box acks for the server: the kernel never sees a loss
	reset     bool          // oversized client packets are reset, not dropped
	delay     time.Duration // the server's time to answer
	never     bool          // the server never answers
	connect   time.Duration // connect time
	// Middleboxes that refuse the hello itself, whatever the MTU:
	split    string // "drop" or "reset": a hello in several segments is dropped after its head, or reset
	maxHello int    // hellos over it are reset (0: none are)
	// policy: every hello is read whole, then the connection is reset
	// (an SNI blocklist, a server that does not speak TLS there).
	policy bool
	// releaseAt: a box holds every connection until then (from t0) and
	// releases them together; replies come no sooner.
	releaseAt time.Duration
}

// refused reports whether a box refuses a hello of hello bytes at st, and
// whether it resets it.
func (p simPath) refused(st step, hello int) (refused, reset bool) {
	switch {
	case p.maxHello > 0 && hello > p.maxHello:
		return true, true
	case p.split != "" && hello > mss(st)-12:
		return true, p.split == "reset"
	}
	return false, false
}

// mss is the send MSS of an attempt at st on IPv4.
func mss(st step) int {
	if st.mtu == 0 {
		return 1460
	}
	return st.mtu - 40
}

func (p simPath) upLost(st step, hello int) bool {
	return p.maxPacket > 0 && p.dir != "down" && min(hello, mss(st))+40 > p.maxPacket
}

func (p simPath) downLost(st step) bool {
	return p.maxPacket > 0 && p.dir != "up" && mss(st)+40 > p.maxPacket
}

// works reports whether an attempt at st gets through.
func (p simPath) works(st step, hello int) bool {
	refused, _ := p.refused(st, hello)
	return !p.never && !refused && !p.upLost(st, hello) && !p.downLost(st)
}

// simLeg is what the harness knows of one attempt.
type simLeg struct {
	st      step
	hello   int
	sentAt  time.Time
	doneAt  time.Time // when its I/O ends by itself (zero: never)
	res     legResult
	stopped bool
}

type sim struct {
	t       *testing.T
	p       simPath
	m       *machine
	now     time.Time
	legs    []*simLeg
	effects []effect
	info    bool
	hellos  []int // record bytes by rung
}

func newSim(t *testing.T, p simPath, cfg machineConfig, info bool) *sim {
	if cfg.steps == nil {
		cfg.steps = ladderSteps(defaultMTUs, helloMTU, cfg.rungs)
	}
	s := &sim{t: t, p: p, m: newMachine(cfg), now: t0, info: info}
	for _, r := range cfg.rungs {
		s.hellos = append(s.hellos, r.size)
	}
	if s.p.connect == 0 {
		s.p.connect = 100 * time.Microsecond
	}
	return s
}

// dialerRungs are a Dialer's: the full and the compact post-quantum hello,
// and the classical one if allowed.
func dialerRungs(classical bool) []rungInfo {
	r := []rungInfo{{name: "pq", size: 1500, pq: true}, {name: "pq-compact", size: 1420, pq: true, oneSegment: true}}
	if classical {
		r = append(r, rungInfo{name: "classical", size: 517})
	}
	return r
}

func pqRungs(classical bool) []rungInfo {
	r := []rungInfo{{name: "pq", size: 1500, pq: true}}
	if classical {
		r = append(r, rungInfo{name: "classical", size: 517})
	}
	return r
}

// apply carries out the machine's effects as the engine would.
func (s *sim) apply() {
	for _, ef := range s.m.drain() {
		s.effects = append(s.effects, ef)
		switch ef.kind {
		case effStart:
			s.legs = append(s.legs, &simLeg{st: ef.step, hello: s.hellos[ef.step.rung]})
			s.begin(ef.id)
		case effAbort:
			s.legs[ef.id-1].stopped = true
		}
	}
}

// begin connects attempt id at once (plus the connect time) and plans how
// its I/O ends.
func (s *sim) begin(id int) {
	l := s.legs[id-1]
	l.sentAt = s.now.Add(s.p.connect)
	_, reset := s.p.refused(l.st, l.hello)
	switch {
	case reset || (s.p.reset && s.p.upLost(l.st, l.hello)) || s.p.policy:
		l.doneAt, l.res = l.sentAt.Add(time.Millisecond), legResult{kind: resRejected, err: syscall.ECONNRESET}
	case s.p.works(l.st, l.hello):
		l.doneAt, l.res = l.sentAt.Add(s.p.delay+time.Millisecond), legResult{kind: resOK}
		if at := t0.Add(s.p.releaseAt); l.doneAt.Before(at) {
			// Released together: the later hellos' replies a little later.
			l.doneAt = at.Add(time.Duration(id) * 200 * time.Microsecond)
		}
	}
}

// reading is what TCP_INFO of attempt l shows at now.
func (s *sim) reading(l *simLeg, now time.Time) pmtu.TCPInfo {
	ti := pmtu.TCPInfo{BytesAcked: 1, SndMSS: uint32(mss(l.st) - 12)}
	el := now.Sub(l.sentAt)
	if el < 50*time.Microsecond {
		return ti
	}
	if refused, reset := s.p.refused(l.st, l.hello); refused {
		if !reset { // the head got through, the tail never does
			ti.BytesAcked = uint64(1 + ti.SndMSS)
			if el > 20*time.Millisecond {
				ti.TotalRetrans = 1
			}
		}
		return ti
	}
	if s.p.upLost(l.st, l.hello) && !s.p.proxied {
		if l.hello > mss(l.st) {
			ti.Sacked = 1 // the tail got through, the head did not
		} else if el > 200*time.Millisecond {
			ti.TotalRetrans = 1 // the tail-loss probe
		}
		return ti
	}
	ti.BytesAcked = uint64(1 + l.hello)
	if !s.p.never && s.p.downLost(l.st) && !s.p.proxied && el > s.p.delay {
		ti.RcvOOOPack = 2
	}
	return ti
}

// run drives the dial until it is over or limit passes.
func (s *sim) run(limit time.Duration) {
	s.m.begin(s.now)
	s.apply()
	end := s.now.Add(limit)
	sent := map[int]bool{}
	for !s.m.over && s.now.Before(end) {
		next := end
		for id, l := range s.legs {
			if l.stopped {
				continue
			}
			if !sent[id] && l.sentAt.Before(next) {
				next = l.sentAt
			}
			if sent[id] && !l.doneAt.IsZero() && l.doneAt.Before(next) {
				next = l.doneAt
			}
		}
		for id := range s.legs {
			if every := s.m.pollEvery(id + 1); every > 0 && s.now.Add(every).Before(next) {
				next = s.now.Add(every)
			}
		}
		if w := s.m.nextWake(); !w.IsZero() && w.Before(next) {
			next = w
		}
		if next.Before(s.now) {
			next = s.now
		}
		s.now = next
		s.step(sent)
	}
}

// step delivers every event due at s.now.
func (s *sim) step(sent map[int]bool) {
	for i, l := range s.legs {
		id := i + 1
		if l.stopped {
			continue
		}
		if !sent[i] && !l.sentAt.After(s.now) {
			sent[i] = true
			s.m.connected(id, 50*time.Microsecond, mss(l.st))
			s.m.sent(id, s.now, l.hello, pmtu.TCPInfo{BytesAcked: 1}, s.info)
			s.apply()
		}
		if sent[i] && !l.doneAt.IsZero() && !l.doneAt.After(s.now) && !l.stopped {
			l.stopped = true
			if l.res.kind == resRejected && s.info {
				s.m.look(id, s.now, s.reading(l, s.now)) // as the engine does
			}
			s.m.finished(id, s.now, l.res)
			s.apply()
		}
	}
	for i, l := range s.legs {
		if !l.stopped && sent[i] && s.info {
			s.m.observe(i+1, s.now, s.reading(l, s.now), 0)
			s.apply()
		}
	}
	s.m.tick(s.now, func(int) uint64 { return 0 })
	s.apply()
}

func (s *sim) outcomes() []Outcome {
	var o []Outcome
	for _, a := range s.m.report.Attempts {
		o = append(o, a.Outcome)
	}
	return o
}

func (s *sim) winnerMTU() int {
	require.NotZero(s.t, s.m.winner, "the dial should have completed: %v\n%s", s.m.err, s.m.report)
	return s.m.report.Attempts[s.m.winner-1].MTU
}

// checkInvariants holds for every dial, whatever happened.
func (s *sim) checkInvariants() {
	t := s.t
	t.Helper()
	started, ended := map[int]int{}, map[int]int{}
	for _, ef := range s.effects {
		switch ef.kind {
		case effStart:
			started[ef.id]++
			assert.Zero(t, ended[ef.id], "attempt %d ended before it started", ef.id)
		case effEnded:
			ended[ef.id]++
		case effAbort:
			assert.Equal(t, 1, started[ef.id])
		}
	}
	require.True(t, s.m.over, "the dial must end")
	for i, a := range s.m.report.Attempts {
		assert.Equal(t, i+1, a.ID, "start order")
		assert.Equal(t, 1, started[a.ID], "attempt %d started once", a.ID)
		assert.Equal(t, 1, ended[a.ID], "attempt %d ended once: %s", a.ID, s.m.report)
		assert.NotEqual(t, OutcomeRunning, a.Outcome)
		if a.Outcome == OutcomeStall {
			assert.ErrorIs(t, a.Err, ErrStalled)
		}
	}
	assert.LessOrEqual(t, len(s.m.report.Attempts), len(s.m.cfg.steps))
	if s.m.winner == 0 {
		assert.Error(t, s.m.err)
	} else {
		assert.NoError(t, s.m.err)
		assert.Equal(t, OutcomeOK, s.m.report.Attempts[s.m.winner-1].Outcome)
	}
	if s.m.report.Stalls() > 0 || s.hasOutcome(OutcomeReset) {
		assert.NotEqual(t, pmtu.Diagnosis{}, s.m.report.Diagnosis, "a stall explains itself")
	}
}

func (s *sim) hasOutcome(o Outcome) bool {
	for _, a := range s.m.report.Attempts {
		if a.Outcome == o {
			return true
		}
	}
	return false
}

func TestMachineClasses(t *testing.T) {
	tests := []struct {
		name      string
		p         simPath
		info      bool
		want      []Outcome
		wantMTU   int
		wantClass pmtu.Class
		within    time.Duration // the winner completed by then
	}{
		{"healthy", simPath{delay: 2 * time.Millisecond}, true,
			[]Outcome{OutcomeOK}, 0, pmtu.ClassUnknown, 5 * time.Millisecond},
		{"upstream black hole, seen by the kernel", simPath{maxPacket: 1400}, true,
			[]Outcome{OutcomeStall, OutcomeOK}, 1400, pmtu.ClassUpstream, 5 * time.Millisecond},
		{"downstream black hole, seen by the kernel", simPath{maxPacket: 1400, dir: "down", delay: 3 * time.Millisecond}, true,
			[]Outcome{OutcomeStall, OutcomeOK}, 1400, pmtu.ClassDownstream, 15 * time.Millisecond},
		{"behind a proxy at 1400", simPath{maxPacket: 1400, proxied: true}, true,
			[]Outcome{OutcomeStall, OutcomeOK}, 1400, pmtu.ClassSilent, 310 * time.Millisecond},
		{"behind a proxy at 1280", simPath{maxPacket: 1280, proxied: true}, true,
			[]Outcome{OutcomeStall, OutcomeStall, OutcomeOK}, 1280, pmtu.ClassSilent, 1060 * time.Millisecond},
		{"behind a proxy at 576, downstream", simPath{maxPacket: 576, dir: "down", proxied: true}, true,
			[]Outcome{OutcomeStall, OutcomeStall, OutcomeStall, OutcomeOK}, 576, pmtu.ClassSilent, 2560 * time.Millisecond},
		{"timer only, at 1280", simPath{maxPacket: 1280}, false,
			[]Outcome{OutcomeStall, OutcomeStall, OutcomeOK}, 1280, pmtu.ClassUnknown, 1060 * time.Millisecond},
		{"a reset instead of a drop", simPath{maxPacket: 1400, reset: true}, true,
			[]Outcome{OutcomeReset, OutcomeOK}, 1400, pmtu.ClassReset, 5 * time.Millisecond},
		{"slow server: the first attempt wins its race", simPath{delay: 400 * time.Millisecond}, true,
			[]Outcome{OutcomeOK, OutcomeSuperseded}, 0, pmtu.ClassUnknown, 405 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, tt.p, machineConfig{addr: "x", rungs: pqRungs(true)}, tt.info)
			s.run(time.Minute)
			s.checkInvariants()
			assert.Equal(t, tt.want, s.outcomes(), "%s", s.m.report)
			assert.Equal(t, tt.wantMTU, s.winnerMTU())
			assert.Equal(t, tt.wantClass, s.m.report.Diagnosis.Class, "%s", s.m.report)
			assert.LessOrEqual(t, s.m.report.Duration, tt.within, "%s", s.m.report)
			assert.False(t, s.m.report.SecurityReduced, "a clamp never costs the hello")
		})
	}
}

// TestMachineMiddleboxes covers boxes that refuse the hello rather than
// large packets: the Dialer gets through with its compact post-quantum
// hello (the classical one only if allowed), TCPDialer fails with the
// class and the fix, and a learned refusal skips the clamps.
func TestMachineMiddleboxes(t *testing.T) {
	tests := []struct {
		name      string
		p         simPath
		rungs     []rungInfo
		rejected  pmtu.Class // learned
		wantRung  string     // "" → the dial fails with ErrHelloRejected
		wantClass pmtu.Class // of the report's diagnosis
		within    time.Duration
	}{
		{"split-intolerant, drops the tail", simPath{split: "drop"}, dialerRungs(false), 0,
			"pq-compact", pmtu.ClassSplitIntolerant, 30 * time.Millisecond},
		{"split-intolerant, resets", simPath{split: "reset"}, dialerRungs(false), 0,
			"pq-compact", pmtu.ClassContentIntolerant, 15 * time.Millisecond},
		{"hellos over 1450 reset", simPath{maxHello: 1450}, dialerRungs(false), 0,
			"pq-compact", pmtu.ClassContentIntolerant, 15 * time.Millisecond},
		{"hellos over 1000 reset", simPath{maxHello: 1000}, dialerRungs(false), 0,
			"", pmtu.ClassContentIntolerant, 15 * time.Millisecond},
		{"hellos over 1000 reset, classical allowed", simPath{maxHello: 1000}, dialerRungs(true), 0,
			"classical", pmtu.ClassContentIntolerant, 15 * time.Millisecond},
		{"TCPDialer, split-intolerant", simPath{split: "drop"}, []rungInfo{{size: 1500}}, 0,
			"", pmtu.ClassSplitIntolerant, 200 * time.Millisecond},
		{"TCPDialer, refusal learned", simPath{split: "reset"}, []rungInfo{{size: 1500}}, pmtu.ClassSplitIntolerant,
			"", pmtu.ClassSplitIntolerant, 5 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, tt.p, machineConfig{addr: "x", rungs: tt.rungs, rejected: tt.rejected}, true)
			s.run(time.Minute)
			s.checkInvariants()
			r := s.m.report
			t.Logf("%s", r)
			assert.Equal(t, tt.wantClass, r.Diagnosis.Class, "%s", r)
			assert.LessOrEqual(t, r.Duration, tt.within, "%s", r)
			if tt.wantRung == "" {
				require.ErrorIs(t, s.m.err, ErrHelloRejected, "%s", r)
				var he *HelloError
				require.ErrorAs(t, s.m.err, &he)
				assert.True(t, he.Diagnosis.Class.HelloRejected())
				assert.NotEmpty(t, he.Fix)
				e, ok := s.m.remember(s.now)
				assert.True(t, ok, "a refusal is remembered")
				assert.Equal(t, he.Diagnosis.Class, e.Class)
				if tt.rejected != 0 {
					assert.Len(t, r.Attempts, 1, "learned: no clamp")
				}
				return
			}
			require.NotZero(t, s.m.winner, "%v\n%s", s.m.err, r)
			assert.Equal(t, tt.wantRung, r.Rung, "%s", r)
			assert.Equal(t, tt.wantRung == "classical", r.SecurityReduced)
			e, ok := s.m.remember(s.now)
			require.True(t, ok)
			assert.Equal(t, tt.wantRung, e.Rung)
		})
	}
}

func TestMachineOvertakenCarriesEvidence(t *testing.T) {
	s := newSim(t, simPath{maxPacket: 1400, proxied: true}, machineConfig{addr: "x", rungs: pqRungs(false)}, true)
	s.run(time.Minute)
	s.checkInvariants()
	d := s.m.report.Diagnosis
	assert.Equal(t, pmtu.ClassSilent, d.Class)
	assert.Equal(t, 1360, d.Evidence.OvertakenBy)
	assert.Equal(t, 1500, d.Evidence.Sent)
	assert.NotEmpty(t, d.Fix(), "an overtaken silence points at the path")
	var stalls []StallInfo
	for _, ef := range s.effects {
		if ef.kind == effStall {
			stalls = append(stalls, ef.stall)
		}
	}
	require.Len(t, stalls, 1, "Trace.Stall sees the overtaken attempt")
	assert.Equal(t, 1, stalls[0].ID)
	e, ok := s.m.remember(s.now)
	require.True(t, ok)
	assert.Equal(t, pmtu.Entry{MTU: 1400, Rung: "pq"}, e)
}

func TestMachineSlowServerIsLearned(t *testing.T) {
	s := newSim(t, simPath{delay: 700 * time.Millisecond}, machineConfig{addr: "x", rungs: pqRungs(true)}, true)
	s.run(time.Minute)
	s.checkInvariants()
	require.Equal(t, 1, s.m.winner, "%s", s.m.report)
	assert.Zero(t, s.m.report.Stalls(), "the attempts started later were only superseded")
	e, ok := s.m.remember(s.now)
	require.True(t, ok)
	assert.Zero(t, e.MTU)
	assert.InDelta(t, float64(701*time.Millisecond), float64(e.Silence), float64(2*time.Millisecond))

	// The next dial knows: its window covers the server's silence.
	s2 := newSim(t, simPath{delay: 700 * time.Millisecond},
		machineConfig{addr: "x", rungs: pqRungs(true), fromCache: true, silence: e.Silence}, true)
	s2.run(time.Minute)
	s2.checkInvariants()
	assert.Equal(t, []Outcome{OutcomeOK}, s2.outcomes(), "no extra connection once learned: %s", s2.m.report)
}

func TestMachineLadderExhausted(t *testing.T) {
	tests := []struct {
		name      string
		p         simPath
		classical bool
		max       int
		want      []Outcome
		errIs     error
		by        time.Duration
	}{
		{"conclusive on every clamp", simPath{maxPacket: 400}, false, 0,
			[]Outcome{OutcomeStall, OutcomeStall, OutcomeStall, OutcomeStall}, ErrStalled, 10 * time.Millisecond},
		{"conclusive on every clamp, classical allowed", simPath{maxPacket: 560, dir: "up"}, true, 0,
			[]Outcome{OutcomeStall, OutcomeStall, OutcomeStall, OutcomeStall, OutcomeOK}, nil, 10 * time.Millisecond},
		{"resets on every clamp", simPath{maxPacket: 400, reset: true}, false, 0,
			[]Outcome{OutcomeReset, OutcomeReset, OutcomeReset, OutcomeReset}, syscall.ECONNRESET, 10 * time.Millisecond},
		{"one attempt allowed, conclusive", simPath{maxPacket: 1400}, false, 1,
			[]Outcome{OutcomeStall}, ErrStalled, 5 * time.Millisecond},
		{"one attempt allowed, silent: gives up, never forever", simPath{maxPacket: 1400, proxied: true}, false, 1,
			[]Outcome{OutcomeStall}, ErrStalled, giveUpAfter + time.Millisecond},
		{"silent on every clamp: gives up", simPath{never: true}, true, 0,
			[]Outcome{OutcomeStall, OutcomeStall, OutcomeStall, OutcomeStall}, ErrStalled, giveUpAfter + time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, tt.p, machineConfig{addr: "x", rungs: pqRungs(tt.classical), maxAttempts: tt.max}, true)
			s.run(time.Minute)
			s.checkInvariants()
			assert.Equal(t, tt.want, s.outcomes(), "%s", s.m.report)
			if tt.errIs != nil {
				assert.ErrorIs(t, s.m.err, tt.errIs)
			} else {
				assert.NoError(t, s.m.err)
			}
			assert.LessOrEqual(t, s.m.report.Duration, tt.by, "%s", s.m.report)
			assert.Equal(t, s.m.winner != 0 && tt.classical && s.m.report.Rung == "classical", s.m.report.SecurityReduced)
		})
	}
}

// Silence never costs the hello: behind a proxy no clamp helps, and even
// with the classical rung allowed the dial gives up with the full hello.
func TestMachineSilenceNeverShrinksTheHello(t *testing.T) {
	s := newSim(t, simPath{maxPacket: 500, dir: "up", proxied: true}, machineConfig{addr: "x", rungs: pqRungs(true)}, true)
	s.run(time.Minute)
	s.checkInvariants()
	for _, a := range s.m.report.Attempts {
		assert.Equal(t, "pq", a.Rung)
	}
	assert.ErrorIs(t, s.m.err, ErrStalled)
}

func TestMachineCancelAtEveryStage(t *testing.T) {
	stages := []time.Duration{0, 50 * time.Microsecond, 150 * time.Microsecond, time.Millisecond,
		100 * time.Millisecond, 250*time.Millisecond + 50*time.Microsecond, 300 * time.Millisecond, 600 * time.Millisecond}
	for _, at := range stages {
		for _, info := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/info=%t", at, info), func(t *testing.T) {
				s := newSim(t, simPath{maxPacket: 576, proxied: true}, machineConfig{addr: "x", rungs: pqRungs(false)}, info)
				s.run(at)
				require.False(t, s.m.over)
				s.m.cancel(s.now, context.Canceled)
				s.apply()
				s.checkInvariants()
				assert.ErrorIs(t, s.m.err, context.Canceled)
				for _, a := range s.m.report.Attempts {
					assert.Contains(t, []Outcome{OutcomeCanceled, OutcomeStall}, a.Outcome)
				}
				for _, l := range s.legs {
					assert.True(t, l.stopped, "every attempt is closed")
				}
				n := len(s.effects)
				s.m.tick(s.now.Add(time.Hour), func(int) uint64 { return 0 })
				s.m.peer(s.now, news{step: step{mtu: 576}, replied: true})
				s.m.finished(1, s.now, legResult{kind: resOK})
				s.apply()
				assert.Len(t, s.effects, n, "nothing happens after the end")
			})
		}
	}
}

func TestMachineFinalErrors(t *testing.T) {
	s := newSim(t, simPath{maxPacket: 1400, proxied: true}, machineConfig{addr: "x", rungs: pqRungs(true)}, true)
	s.m.begin(s.now)
	s.apply()
	s.m.connected(1, time.Millisecond, 0)
	s.m.sent(1, s.now, 1500, pmtu.TCPInfo{}, true)
	certErr := errors.New("x509: certificate signed by unknown authority")
	s.m.finished(1, s.now.Add(time.Millisecond), legResult{kind: resFailed, err: certErr, replied: true})
	s.apply()
	s.checkInvariants()
	assert.Equal(t, []Outcome{OutcomeError}, s.outcomes(), "a certificate error is final")
	assert.ErrorIs(t, s.m.err, certErr)

	// A refused connect of a parallel attempt does not end the race.
	s = newSim(t, simPath{}, machineConfig{addr: "x", rungs: pqRungs(false)}, true)
	s.m.begin(t0)
	s.m.connected(1, time.Millisecond, 0)
	s.m.sent(1, t0, 1500, pmtu.TCPInfo{}, true)
	s.m.observe(1, t0.Add(time.Second), pmtu.TCPInfo{BytesAcked: 1501}, 0) // silent: hedge
	s.m.finished(2, t0.Add(time.Second), legResult{kind: resFailed, err: syscall.ECONNREFUSED})
	require.False(t, s.m.over)
	s.m.finished(1, t0.Add(2*time.Second), legResult{kind: resOK})
	require.True(t, s.m.over)
	assert.Equal(t, 1, s.m.winner)
}

func TestMachinePeers(t *testing.T) {
	t.Run("a step that worked starts at once", func(t *testing.T) {
		m := newMachine(machineConfig{addr: "x", steps: ladderSteps(defaultMTUs, helloMTU, pqRungs(true)), rungs: pqRungs(true)})
		m.begin(t0)
		m.connected(1, time.Millisecond, 0)
		m.sent(1, t0, 1500, pmtu.TCPInfo{}, true)
		m.drain()
		m.peer(t0.Add(4*time.Millisecond), news{step: step{mtu: 1280}, replied: true})
		assert.Empty(t, m.drain(), "a reply elsewhere alone starts nothing: it does not show the clamp is needed")
		m.peer(t0.Add(5*time.Millisecond), news{step: step{mtu: 1280}, replied: true, needed: true})
		effs := m.drain()
		require.Len(t, effs, 1)
		assert.Equal(t, effect{kind: effStart, id: 2, step: step{mtu: 1280}}, effs[0])
		assert.True(t, m.report.Attempts[1].Hedge)
		m.peer(t0.Add(6*time.Millisecond), news{step: step{mtu: 1280, rung: 1}, replied: true, needed: true})
		assert.Empty(t, m.drain(), "never a smaller hello on another dial's word")
	})
	t.Run("a step that stalled elsewhere races the next here", func(t *testing.T) {
		m := newMachine(machineConfig{addr: "x", steps: ladderSteps(defaultMTUs, helloMTU, pqRungs(false)), rungs: pqRungs(false)})
		m.begin(t0)
		m.connected(1, time.Millisecond, 0)
		m.sent(1, t0, 1500, pmtu.TCPInfo{}, true)
		m.drain()
		m.peer(t0.Add(time.Millisecond), news{step: step{mtu: 0}})
		effs := m.drain()
		require.Len(t, effs, 1, "a hedge tells nothing: silence shows nothing")
		assert.Equal(t, effect{kind: effStart, id: 2, step: step{mtu: 1400}}, effs[0])
	})
}

// Once the server is known to answer at a step — another dial got its
// reply there — silence at that step is a slow server: nothing is raced.
func TestMachineKnownGoodStepIsSlowNotBroken(t *testing.T) {
	m := newMachine(machineConfig{addr: "x", steps: ladderSteps(defaultMTUs, helloMTU, pqRungs(false)), rungs: pqRungs(false)})
	m.begin(t0)
	m.connected(1, time.Millisecond, 0)
	m.sent(1, t0, 1500, pmtu.TCPInfo{}, true)
	m.peer(t0.Add(time.Millisecond), news{step: step{mtu: 0}, replied: true})
	for now := t0; now.Before(t0.Add(giveUpAfter - time.Millisecond)); now = now.Add(10 * time.Millisecond) {
		m.observe(1, now, pmtu.TCPInfo{BytesAcked: 1501}, 0)
	}
	assert.Len(t, m.report.Attempts, 1, "no attempt raced against a server known to answer")
	assert.False(t, m.over)
	m.observe(1, t0.Add(giveUpAfter), pmtu.TCPInfo{BytesAcked: 1501}, 0)
	assert.True(t, m.over, "the give-up bound still holds")

	// A reply seen on this dial's own attempt is shared, once.
	m = newMachine(machineConfig{addr: "x", steps: ladderSteps(defaultMTUs, helloMTU, pqRungs(false)), rungs: pqRungs(false)})
	m.begin(t0)
	m.connected(1, time.Millisecond, 0)
	m.sent(1, t0, 1500, pmtu.TCPInfo{}, true)
	m.drain()
	m.observe(1, t0.Add(time.Millisecond), pmtu.TCPInfo{BytesAcked: 1501, BytesReceived: 100}, 0)
	m.observe(1, t0.Add(2*time.Millisecond), pmtu.TCPInfo{BytesAcked: 1501, BytesReceived: 200}, 0)
	assert.Equal(t, []effect{{kind: effShare, step: step{mtu: 0}, replied: true}}, m.drain())
}

func TestMachineCommit(t *testing.T) {
	m := newMachine(machineConfig{addr: "x", steps: ladderSteps(defaultMTUs, helloMTU, []rungInfo{{}}), rungs: []rungInfo{{}}})
	m.begin(t0)
	m.connected(1, time.Millisecond, 0)
	m.sent(1, t0, 1500, pmtu.TCPInfo{}, false)
	m.tick(t0.Add(time.Second), func(int) uint64 { return 0 }) // silent: attempt 2 starts
	require.Len(t, m.report.Attempts, 2)
	m.commit(t0.Add(time.Second))
	require.True(t, m.over)
	assert.Equal(t, 1, m.winner, "the oldest attempt that sent the hello is kept")
	assert.Equal(t, OutcomeSuperseded, m.report.Attempts[1].Outcome)

	// Nothing connected yet: it waits for the first that is.
	m = newMachine(machineConfig{addr: "x", steps: ladderSteps(defaultMTUs, helloMTU, []rungInfo{{}}), rungs: []rungInfo{{}}})
	m.begin(t0)
	m.commit(t0)
	require.False(t, m.over)
	m.connected(1, time.Millisecond, 0)
	m.sent(1, t0, 1500, pmtu.TCPInfo{}, false)
	require.True(t, m.over)
	assert.Equal(t, 1, m.winner)
}

func TestMachineStartsFromMemoryAndDeadline(t *testing.T) {
	steps := ladderSteps(defaultMTUs, helloMTU, []rungInfo{{}})
	s := newSim(t, simPath{maxPacket: 1280}, machineConfig{addr: "x", steps: steps, rungs: pqRungs(false), first: 2, fromCache: true}, true)
	s.run(time.Minute)
	s.checkInvariants()
	assert.Equal(t, []Outcome{OutcomeOK}, s.outcomes())
	assert.Equal(t, 1280, s.winnerMTU())
	assert.True(t, s.m.report.FromCache)

	m := newMachine(machineConfig{addr: "x", steps: steps, rungs: pqRungs(false), deadline: t0})
	m.begin(t0)
	assert.True(t, m.over)
	assert.ErrorIs(t, m.err, context.DeadlineExceeded)
	assert.Empty(t, m.report.Attempts)
}

// TestMachineAgainstOracle runs the machine over random paths and checks it
// against what the path allows: it completes wherever some step works,
// within a bound set by the evidence the path gives, never with a smaller
// hello than needed, and ends every attempt it starts.
func TestMachineAgainstOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range 3000 {
		p := simPath{
			maxPacket: []int{0, 1400, 1300, 1280, 1000, 576, 500}[rng.IntN(7)],
			dir:       []string{"both", "up", "down"}[rng.IntN(3)],
			proxied:   rng.IntN(3) == 0,
			reset:     rng.IntN(5) == 0,
			delay:     time.Duration(rng.IntN(6)) * time.Duration(rng.IntN(200)+1) * time.Millisecond,
		}
		if rng.IntN(3) == 0 {
			p.split = []string{"drop", "reset"}[rng.IntN(2)]
		} else if rng.IntN(3) == 0 {
			p.maxHello = []int{1000, 1450}[rng.IntN(2)]
		}
		classical := rng.IntN(2) == 0
		info := rng.IntN(4) != 0
		rungs := pqRungs(classical)
		if rng.IntN(2) == 0 {
			rungs = dialerRungs(classical)
		}
		cfg := machineConfig{addr: "x", rungs: rungs}
		if rng.IntN(8) == 0 {
			cfg.maxAttempts = 1 + rng.IntN(3)
		}
		name := fmt.Sprintf("%d:%+v/classical=%t/info=%t/max=%d", i, p, classical, info, cfg.maxAttempts)
		t.Run(name, func(t *testing.T) {
			s := newSim(t, p, cfg, info)
			s.run(time.Minute)
			s.checkInvariants()
			steps := s.m.cfg.steps
			var pqWorks bool // some step that keeps post-quantum works
			for _, st := range steps {
				if r := cfg.rungs[st.rung]; r.pq && p.works(st, r.size) {
					pqWorks = true
				}
			}
			if s.m.winner != 0 {
				w := s.m.report.Attempts[s.m.winner-1]
				assert.True(t, p.works(step{mtu: w.MTU}, w.HelloSize), "the winner's step works")
				if w.Rung == "classical" {
					assert.False(t, pqWorks && !p.proxied && info, "a classical hello only when no post-quantum step could work: %s", s.m.report)
					assert.True(t, classical)
				}
				return
			}
			// A proxy that acknowledges hellos whole and resets those it
			// cannot forward for their size looks like a refusal of
			// every hello once a clamp was refused the same way.
			if pqWorks && cfg.maxAttempts == 0 && !(p.proxied && p.reset) {
				t.Fatalf("a post-quantum step works but the dial failed: %v\n%s", s.m.err, s.m.report)
			}
			if s.m.err != nil && s.m.report.Duration > giveUpAfter+p.delay+time.Second {
				t.Fatalf("gave up after %s", s.m.report.Duration)
			}
		})
	}
}

// The recorded timelines drive the first attempt's TCP_INFO as the kernel
// showed it in the lab; a clamped attempt then answers.
func TestMachineRecordedTimelines(t *testing.T) {
	tests := []struct {
		name      string
		wantClass pmtu.Class
		want      []Outcome
		within    time.Duration
	}{
		{"upstream-head-lost-v4", pmtu.ClassUpstream, []Outcome{OutcomeStall, OutcomeOK}, 5 * time.Millisecond},
		{"upstream-head-lost-v6", pmtu.ClassUpstream, []Outcome{OutcomeStall, OutcomeOK}, 5 * time.Millisecond},
		{"upstream-single-segment-v4", pmtu.ClassUnknown, []Outcome{OutcomeStall, OutcomeOK}, 30 * time.Millisecond},
		{"downstream-v4", pmtu.ClassDownstream, []Outcome{OutcomeStall, OutcomeOK}, 30 * time.Millisecond},
		{"downstream-v6", pmtu.ClassDownstream, []Outcome{OutcomeStall, OutcomeOK}, 30 * time.Millisecond},
		{"downstream-exact-v4", pmtu.ClassSilent, []Outcome{OutcomeStall, OutcomeOK}, 310 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := loadTimeline(t, tt.name)
			m := newMachine(machineConfig{addr: "x", steps: ladderSteps(defaultMTUs, helloMTU, pqRungs(false)), rungs: pqRungs(false)})
			m.begin(t0)
			m.connected(1, 60*time.Microsecond, 0)
			m.sent(1, t0, tl.Sent, tl.Base, true)
			var clampedAt time.Time
			for now := t0; !m.over && now.Before(t0.Add(time.Second)); now = now.Add(pollInterval) {
				m.observe(1, now, tl.At(now.Sub(t0)), 0)
				if len(m.report.Attempts) > 1 && clampedAt.IsZero() {
					clampedAt = now
					m.connected(2, 60*time.Microsecond, 1360)
					m.sent(2, now, tl.Sent, pmtu.TCPInfo{}, true)
				}
				if !clampedAt.IsZero() && now.Sub(clampedAt) >= 2*time.Millisecond {
					m.finished(2, now, legResult{kind: resOK})
				}
			}
			require.True(t, m.over)
			var got []Outcome
			for _, a := range m.report.Attempts {
				got = append(got, a.Outcome)
			}
			assert.Equal(t, tt.want, got, "%s", m.report)
			assert.Equal(t, tt.wantClass, m.report.Diagnosis.Class, "%s", m.report)
			assert.LessOrEqual(t, m.report.Duration, tt.within, "%s", m.report)
		})
	}
}

func loadTimeline(t *testing.T, name string) timeline.Timeline {
	t.Helper()
	tl, err := timeline.Load(name)
	require.NoError(t, err)
	return tl
}
