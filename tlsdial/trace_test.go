package tlsdial_test

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"

	"github.com/fitshake/fitshake/internal/leaktest"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMultiTraceCallsEachInOrder(t *testing.T) {
	assert.Nil(t, tlsdial.MultiTrace())
	assert.Nil(t, tlsdial.MultiTrace(nil, nil))

	var calls []string
	a := &tlsdial.Trace{Done: func(tlsdial.DoneInfo) { calls = append(calls, "a.Done") }}
	b := &tlsdial.Trace{
		AttemptStart: func(tlsdial.AttemptStartInfo) { calls = append(calls, "b.AttemptStart") },
		Done:         func(tlsdial.DoneInfo) { calls = append(calls, "b.Done") },
	}
	m := tlsdial.MultiTrace(a, nil, b, &tlsdial.Trace{})
	require.NotNil(t, m)
	assert.Nil(t, m.Stall, "no trace has Stall")
	assert.Nil(t, m.AttemptDone, "no trace has AttemptDone")
	m.AttemptStart(tlsdial.AttemptStartInfo{})
	m.Done(tlsdial.DoneInfo{})
	assert.Equal(t, []string{"b.AttemptStart", "a.Done", "b.Done"}, calls)

	empty := tlsdial.MultiTrace(&tlsdial.Trace{})
	require.NotNil(t, empty)
	assert.True(t, empty.AttemptStart == nil && empty.Stall == nil && empty.AttemptDone == nil && empty.Done == nil)
}

// Two traces joined on the dialer and one in the context each see every
// event of a dial, for both dialers, through a black hole and on a
// healthy path; Recovered tells the two apart.
func TestMultiTraceOnDialerAndContext(t *testing.T) {
	srv := startServer(t, 0)
	hole := blackHole(t, srv.addr, 1400, pmtutest.Both)
	for _, k := range kinds {
		for _, path := range []struct {
			name          string
			addr          string
			wantRecovered bool
		}{
			{"blackhole", hole, true},
			{"healthy", srv.addr, false},
		} {
			t.Run(k.name+"/"+path.name, func(t *testing.T) {
				leaktest.Check(t)
				var own, metrics, inCtx recorder
				ctx := tlsdial.WithTrace(context.Background(), inCtx.trace())
				c, rep, err := k.dial(ctx, path.addr, srv.config(), options{
					cache: &pmtu.Cache{},
					trace: tlsdial.MultiTrace(own.trace(), metrics.trace()),
				})
				require.NoError(t, err)
				defer c.Close()
				for _, r := range []*recorder{&own, &metrics, &inCtx} {
					r.checkTrace(t, rep)
					assert.Equal(t, path.wantRecovered, r.done[0].Recovered(), "%s", rep)
					cs := r.done[0].ConnectionState
					if k.name == "TCPDialer" {
						assert.Nil(t, cs, "the TLS stack is above a TCPDialer")
						continue
					}
					require.NotNil(t, cs)
					assert.True(t, cs.HandshakeComplete)
					assert.Equal(t, c.(*tlsdial.Conn).ConnectionState().Version, cs.Version)
					assert.Equal(t, uint16(tls.VersionTLS13), cs.Version)
					assert.Equal(t, "h2", cs.NegotiatedProtocol)
				}
			})
		}
	}
}

func TestDoneInfoRecovered(t *testing.T) {
	stall := tlsdial.Attempt{ID: 1, Outcome: tlsdial.OutcomeStall}
	reset := tlsdial.Attempt{ID: 1, Outcome: tlsdial.OutcomeReset}
	ok := tlsdial.Attempt{ID: 2, Outcome: tlsdial.OutcomeOK}
	superseded := tlsdial.Attempt{ID: 1, Outcome: tlsdial.OutcomeSuperseded}
	for _, tc := range []struct {
		name string
		info tlsdial.DoneInfo
		want bool
	}{
		{"first attempt", tlsdial.DoneInfo{Report: tlsdial.Report{Attempts: []tlsdial.Attempt{{ID: 1, Outcome: tlsdial.OutcomeOK}}}}, false},
		{"after a stall", tlsdial.DoneInfo{Report: tlsdial.Report{Attempts: []tlsdial.Attempt{stall, ok}}}, true},
		{"after a reset", tlsdial.DoneInfo{Report: tlsdial.Report{Attempts: []tlsdial.Attempt{reset, ok}}}, true},
		{"slow server, hedge lost", tlsdial.DoneInfo{Report: tlsdial.Report{Attempts: []tlsdial.Attempt{{ID: 1, Outcome: tlsdial.OutcomeOK}, superseded}}}, false},
		{"failed after a stall", tlsdial.DoneInfo{Report: tlsdial.Report{Attempts: []tlsdial.Attempt{stall}}, Err: errors.New("x")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.info.Recovered())
		})
	}
}

func TestDoneInfoConnectionStateNilOnFailure(t *testing.T) {
	leaktest.Check(t)
	srv := startServer(t, 0)
	var r recorder
	_, _, err := kinds[0].dial(context.Background(), srv.addr, &tls.Config{ServerName: serverName}, options{
		cache: &pmtu.Cache{}, trace: r.trace(),
	})
	require.Error(t, err, "the server's CA is not trusted")
	require.Len(t, r.done, 1)
	assert.Error(t, r.done[0].Err)
	assert.Nil(t, r.done[0].ConnectionState)
}
