package pmtu_test

import (
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/timeline"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func loadTimeline(t *testing.T, name string) timeline.Timeline {
	t.Helper()
	tl, err := timeline.Load(name)
	require.NoError(t, err)
	return tl
}

func TestClassifyRecordedTimelines(t *testing.T) {
	type phase struct {
		class pmtu.Class
		by    time.Duration // reached no later than this
	}
	tests := []struct {
		name  string
		want  []phase // the classes the timeline goes through, in order
		final string  // substring of the final explanation
	}{
		{"upstream-head-lost-v4", []phase{{pmtu.ClassUpstream, 2 * time.Millisecond}},
			"1485-byte ClientHello: 1448-byte head retransmitted twice, 37-byte tail SACKed"},
		{"upstream-head-lost-v6", []phase{{pmtu.ClassUpstream, 2 * time.Millisecond}},
			"1428-byte head"},
		{"upstream-single-segment-v4", []phase{
			{pmtu.ClassUnknown, time.Millisecond},
			{pmtu.ClassUpstream, 300 * time.Millisecond}, // the kernel's tail-loss probe
		}, "sent as one segment, retransmitted twice and never acknowledged"},
		{"downstream-v4", []phase{
			{pmtu.ClassSilent, 3 * time.Millisecond},
			{pmtu.ClassDownstream, 20 * time.Millisecond},
		}, "2 segments of the server's reply arrived out of order"},
		{"downstream-v6", []phase{
			{pmtu.ClassSilent, 3 * time.Millisecond},
			{pmtu.ClassDownstream, 20 * time.Millisecond},
		}, "out of order"},
		// A reply of exact full segments leaves no out-of-order tail: it
		// looks like a silent server, which is why fitshake races a clamped
		// attempt instead of guessing.
		{"downstream-exact-v4", []phase{{pmtu.ClassSilent, 3 * time.Millisecond}}, "a slow server, or a reply"},
		{"silent-v4", []phase{{pmtu.ClassSilent, 3 * time.Millisecond}}, "nothing back from the server"},
		{"healthy-reply-v4", []phase{
			{pmtu.ClassSilent, 3 * time.Millisecond},
			{pmtu.ClassReplied, 10 * time.Millisecond},
		}, "answered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := loadTimeline(t, tt.name)
			var got []pmtu.Class
			var last pmtu.Diagnosis
			for _, s := range tl.Snapshots {
				at := s.Elapsed()
				d := pmtu.Classify(tl.Sent, tl.Base, s.Info, at)
				if len(got) == 0 || got[len(got)-1] != d.Class {
					got = append(got, d.Class)
					i := len(got) - 1
					if i < len(tt.want) {
						assert.LessOrEqual(t, at, tt.want[i].by, "%v reached late", d.Class)
					}
				}
				last = d
			}
			var want []pmtu.Class
			for _, p := range tt.want {
				want = append(want, p.class)
			}
			assert.Equal(t, want, got)
			assert.Contains(t, last.String(), tt.final)
			if last.Class.BlackHole() {
				assert.Contains(t, last.Fix(), "maxseg")
			} else {
				assert.NotContains(t, last.Fix(), "maxseg", "nothing points at the path")
				assert.NotEmpty(t, last.Fix(), "every class says what to do")
			}
		})
	}
}

func TestHelloRejectedClasses(t *testing.T) {
	for c := pmtu.ClassUnknown; c <= pmtu.ClassProxy; c++ {
		d := pmtu.Diagnosis{Class: c, Evidence: pmtu.Evidence{Sent: 1479, SegSize: 1448, Acked: 1448, TCPInfo: true}}
		want := c == pmtu.ClassSplitIntolerant || c == pmtu.ClassContentIntolerant || c == pmtu.ClassRefused
		assert.Equal(t, want, c.HelloRejected(), "%v", c)
		assert.Equal(t, want && c != pmtu.ClassRefused, c.SmallerHelloHelps(), "%v", c)
		assert.NotContains(t, c.String(), "Class(")
		assert.NotEmpty(t, d.Fix(), "every class has a fix: %v", c)
		if want {
			assert.False(t, c.BlackHole())
			assert.NotContains(t, d.Fix(), "maxseg", "a clamp does not help %v", c)
			assert.Contains(t, d.String(), "1479-byte ClientHello")
		}
		if c.SmallerHelloHelps() {
			assert.Contains(t, d.Fix(), "TLS inspection", "%v", c)
			assert.Contains(t, d.Fix(), c.ClientFix())
		}
	}
	refused := pmtu.Diagnosis{Class: pmtu.ClassRefused, Evidence: pmtu.Evidence{Sent: 1479, Acked: 1479, TCPInfo: true}}
	assert.Contains(t, refused.String(), "acknowledged whole")
	assert.NotContains(t, refused.Fix(), "AllowClassical", "no smaller hello is the remedy")
	assert.Empty(t, pmtu.ClassRefused.ClientFix())
	proxy := pmtu.Diagnosis{Class: pmtu.ClassProxy, Evidence: pmtu.Evidence{Sent: 1479, SegSize: 524, Acked: 1479, TCPInfo: true}}
	assert.Contains(t, proxy.String(), "acknowledges for the server")
	assert.Contains(t, proxy.Fix(), "far side")
	split := pmtu.Diagnosis{Class: pmtu.ClassSplitIntolerant, Evidence: pmtu.Evidence{Sent: 1479, SegSize: 1448, Acked: 1448}}
	assert.Contains(t, split.String(), "2 segments of up to 1448 bytes: the 1448-byte head was acknowledged")
	assert.Equal(t, 2, split.Evidence.Segments())
	assert.Equal(t, 0, pmtu.Evidence{Sent: 10}.Segments())
}

func TestClassifyTable(t *testing.T) {
	base := pmtu.TCPInfo{BytesAcked: 1, SndMSS: 1448, PMTU: 1500}
	with := func(f func(*pmtu.TCPInfo)) pmtu.TCPInfo { i := base; f(&i); return i }
	tests := []struct {
		name string
		cur  pmtu.TCPInfo
		want pmtu.Class
	}{
		{"nothing yet", base, pmtu.ClassUnknown},
		{"head lost, tail sacked", with(func(i *pmtu.TCPInfo) { i.Sacked = 1 }), pmtu.ClassUpstream},
		{"one segment, retransmitted, nothing acked", with(func(i *pmtu.TCPInfo) { i.SndMSS = 1500; i.TotalRetrans = 1 }), pmtu.ClassUpstream},
		// A box that dropped the whole flow on a split hello: even the
		// small tail, which a path dropping large packets delivers.
		{"two segments, retransmitted, nothing acked or SACKed", with(func(i *pmtu.TCPInfo) { i.TotalRetrans = 1 }), pmtu.ClassSplitIntolerant},
		{"partly acked, hole behind", with(func(i *pmtu.TCPInfo) { i.BytesAcked = 1000; i.Sacked = 1 }), pmtu.ClassUpstream},
		// A split-intolerant box: the full-size head acked, the tail
		// retransmitted and never SACKed.
		{"head acked, tail retransmitted, no SACK", with(func(i *pmtu.TCPInfo) { i.BytesAcked = 1449; i.TotalRetrans = 1 }), pmtu.ClassSplitIntolerant},
		{"head acked, tail not yet retransmitted", with(func(i *pmtu.TCPInfo) { i.BytesAcked = 1449 }), pmtu.ClassUnknown},
		{"one segment, partly acked, retransmitted", with(func(i *pmtu.TCPInfo) { i.SndMSS = 1500; i.BytesAcked = 500; i.TotalRetrans = 1 }), pmtu.ClassUpstream},
		{"acked, silent", with(func(i *pmtu.TCPInfo) { i.BytesAcked = 1501 }), pmtu.ClassSilent},
		{"acked, reply out of order", with(func(i *pmtu.TCPInfo) { i.BytesAcked = 1501; i.RcvOOOPack = 3 }), pmtu.ClassDownstream},
		{"reply in order", with(func(i *pmtu.TCPInfo) { i.BytesAcked = 1501; i.BytesReceived = 90 }), pmtu.ClassReplied},
		{"reply in order despite a reordered segment", with(func(i *pmtu.TCPInfo) { i.BytesAcked = 1501; i.BytesReceived = 90; i.RcvOOOPack = 1 }), pmtu.ClassReplied},
		{"counters older than base are not negative", pmtu.TCPInfo{}, pmtu.ClassUnknown},
		{"head lost but ICMP lowered the path MTU: PMTUD at work", with(func(i *pmtu.TCPInfo) { i.PMTU = 1400; i.Sacked = 1; i.TotalRetrans = 1 }), pmtu.ClassUnknown},
		{"path MTU fell but the flight is acked: judged as usual", with(func(i *pmtu.TCPInfo) { i.PMTU = 1400; i.BytesAcked = 1501; i.RcvOOOPack = 2 }), pmtu.ClassDownstream},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := pmtu.Classify(1500, base, tt.cur, 5*time.Millisecond)
			assert.Equal(t, tt.want, d.Class)
			assert.NotEmpty(t, d.String())
			assert.GreaterOrEqual(t, d.Evidence.Acked, 0)
		})
	}
}
