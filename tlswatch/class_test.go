package tlswatch

import (
	"testing"
	"time"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/stretchr/testify/assert"
)

// TestClassify judges observations as the lab recorded them (the TCP_INFO
// counts of TestLabWatchServer's connections) and edge cases around them.
func TestClassify(t *testing.T) {
	ts := uint8(1) // TCPI_OPT_TIMESTAMPS
	for _, tc := range []struct {
		name string
		o    observation
		want Class
		syn  int
	}{
		{"completed", observation{stage: StageDone, read: 1600, helloLen: 1523, wrote: 1966,
			info: pmtu.TCPInfo{Options: ts, SndMSS: 1448, RcvMSS: 1448, BytesAcked: 1967, BytesReceived: 1600}, infoOK: true}, Healthy, 1460},
		{"completed without TCP_INFO", observation{stage: StageDone, read: 1600, helloLen: 1523, wrote: 1966}, Healthy, 0},
		{"hello tail out of order, nothing in order", observation{stage: StageNothing,
			info: pmtu.TCPInfo{Options: ts, SndMSS: 1448, RcvOOOPack: 1, BytesAcked: 1}, infoOK: true}, BlackHoleUpstream, 1460},
		{"hello head in, middle lost, tail out of order", observation{stage: StageHelloPartial, read: 1448, helloLen: 3000,
			info: pmtu.TCPInfo{RcvOOOPack: 1, BytesReceived: 1448}, infoOK: true}, BlackHoleUpstream, 0},
		{"scanner: nothing, then FIN", observation{stage: StageNothing, end: EndEOF,
			info: pmtu.TCPInfo{BytesReceived: 1, BytesAcked: 1}, infoOK: true}, Idle, 0},
		{"nothing at all, stalled", observation{stage: StageNothing, info: pmtu.TCPInfo{BytesAcked: 1}, infoOK: true}, Idle, 0},
		{"nothing, then reset", observation{stage: StageNothing, end: EndReset}, Reset, 0},
		{"hello partial and stopped", observation{stage: StageHelloPartial, read: 600, helloLen: 1523,
			info: pmtu.TCPInfo{BytesReceived: 600}, infoOK: true}, HelloPartial, 0},
		{"hello partial, then FIN", observation{stage: StageHelloPartial, read: 600, helloLen: 1523, end: EndEOF}, Reset, 0},
		{"hello in, client closed", observation{stage: StageHello, read: 1523, helloLen: 1523, end: EndEOF}, Reset, 0},
		{"flight unacked, tail SACKed", observation{stage: StageFlight, read: 1523, helloLen: 1523, wrote: 5626,
			info: pmtu.TCPInfo{Unacked: 4, Sacked: 1, TotalRetrans: 1, BytesAcked: 1, Delivered: 2}, infoOK: true}, BlackHoleDownstream, 0},
		{"flight unacked, retransmitted", observation{stage: StageFlight, wrote: 1966,
			info: pmtu.TCPInfo{Unacked: 2, TotalRetrans: 3, BytesAcked: 1, Delivered: 1}, infoOK: true}, BlackHoleDownstream, 0},
		// A reset clears unacked and sacked, not delivered.
		{"flight unacked, tail SACKed, then reset", observation{stage: StageFlight, wrote: 5626, end: EndReset,
			info: pmtu.TCPInfo{BytesAcked: 1, Delivered: 2}, infoOK: true}, BlackHoleDownstream, 0},
		{"flight not yet acked, reset", observation{stage: StageFlight, wrote: 5626, end: EndReset,
			info: pmtu.TCPInfo{BytesAcked: 1, Delivered: 1}, infoOK: true}, Reset, 0},
		{"flight acked, client quiet", observation{stage: StageFlight, wrote: 1966,
			info: pmtu.TCPInfo{BytesAcked: 1967, Delivered: 3}, infoOK: true}, Idle, 0},
		// Recorded in the lab: fitshake's racing attempt, answered whole,
		// dropped when its first attempt won.
		{"flight acked, client reset", observation{stage: StageFlight, wrote: 1967, read: 1485, helloLen: 1485, end: EndReset,
			info: pmtu.TCPInfo{Options: ts, SndMSS: 1328, RcvMSS: 1328, BytesAcked: 1968, Delivered: 3}, infoOK: true}, Idle, 1340},
		{"flight partly acked, client closed", observation{stage: StageFlight, wrote: 1966, end: EndEOF,
			info: pmtu.TCPInfo{BytesAcked: 1449, Delivered: 2}, infoOK: true}, Reset, 0},
		{"flight sent, client closed, no TCP_INFO", observation{stage: StageFlight, wrote: 1966, end: EndEOF}, Reset, 0},
		{"client alert", observation{stage: StageFlight, alert: "client alert"}, TLSError, 0},
		{"server alert beats a lost-looking flight", observation{stage: StageFlight, wrote: 7, alert: "server alert",
			info: pmtu.TCPInfo{Unacked: 1, TotalRetrans: 1}, infoOK: true}, TLSError, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.elapsed = 5 * time.Millisecond
			c, ev := classify(tc.o)
			assert.Equal(t, tc.want, c, "%+v", ev)
			assert.Equal(t, tc.syn, ev.SYNMSS)
			assert.NotEmpty(t, ev.Sentence(c))
			assert.Equal(t, tc.want.Failed(), c != Healthy && c != Idle)
		})
	}
}

func TestPrefixClass(t *testing.T) {
	n := func(kv map[Class]int) counts {
		var c counts
		for k, v := range kv {
			c.byClass[classIndex(k)] = v
		}
		return c
	}
	for _, tc := range []struct {
		c    counts
		want Class
	}{
		{n(map[Class]int{Healthy: 10}), Healthy},
		{n(map[Class]int{Healthy: 9, BlackHoleUpstream: 1}), Healthy}, // 90%
		{n(map[Class]int{Healthy: 8, BlackHoleUpstream: 2, Reset: 1}), BlackHoleUpstream},
		{n(map[Class]int{BlackHoleUpstream: 2, BlackHoleDownstream: 1}), BlackHole},
		{n(map[Class]int{Idle: 5}), Idle},
		{n(map[Class]int{Idle: 5, TLSError: 1}), TLSError},
		{n(map[Class]int{Reset: 3, HelloPartial: 4}), HelloPartial},
	} {
		assert.Equal(t, tc.want, tc.c.class(), "%+v", tc.c)
	}
}

func pmtuInfo(sndMSS uint32, acked uint64, ooo uint32) pmtu.TCPInfo {
	return pmtu.TCPInfo{Options: 1, SndMSS: sndMSS, RcvMSS: sndMSS, BytesAcked: acked, RcvOOOPack: ooo, Delivered: 1}
}
