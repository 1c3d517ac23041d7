package pmtu_test

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fitshake/fitshake/pmtu"
)

const (
	tcpEstablished = 1
	tcpClose       = 7
)

func TestReadTCPInfo(t *testing.T) {
	if runtime.GOOS != "linux" {
		client, _ := dialPair(t, "tcp4", nil)
		_, err := pmtu.ReadTCPInfo(client)
		assert.ErrorIs(t, err, pmtu.ErrUnsupported)
		return
	}
	d, err := pmtu.DialerWithMSS(nil, 1360)
	require.NoError(t, err)
	client, server := dialPair(t, "tcp4", d)

	before, err := pmtu.ReadTCPInfo(client)
	require.NoError(t, err)
	assert.Equal(t, uint8(tcpEstablished), before.State)
	assert.Equal(t, uint32(1348), before.SndMSS)
	assert.EqualValues(t, 1, before.BytesAcked, "the SYN counts one byte")
	assert.Zero(t, before.BytesSent)
	assert.NotZero(t, before.Options&1, "timestamps")

	const n = 5000 // four segments of 1348 bytes at most
	_, err = client.Write(make([]byte, n))
	require.NoError(t, err)
	_, err = io.ReadFull(server, make([]byte, n))
	require.NoError(t, err)

	// The server reads before its ACK reaches the client's TCP_INFO.
	var ti pmtu.TCPInfo
	require.Eventually(t, func() bool {
		ti, err = pmtu.ReadTCPInfo(client)
		require.NoError(t, err)
		return ti.BytesAcked == n+1
	}, 5*time.Second, time.Millisecond, "bytes_acked never reached %d", n+1)
	assert.EqualValues(t, n, ti.BytesSent)
	assert.Zero(t, ti.Unacked)
	assert.Zero(t, ti.BytesRetrans)
	assert.Zero(t, ti.TotalRetrans)
	assert.GreaterOrEqual(t, ti.DataSegsOut, uint32(4))
	assert.Positive(t, ti.RTT)
	assert.Positive(t, ti.RTO)
	assert.Positive(t, ti.SndCwnd)
	assert.Less(t, ti.LastDataSent, time.Minute)

	sti, err := pmtu.ReadTCPInfo(server)
	require.NoError(t, err)
	assert.EqualValues(t, n, sti.BytesReceived)
	assert.Equal(t, uint32(1348), sti.SndMSS)
	assert.Zero(t, sti.RcvOOOPack)
	t.Logf("client after %d bytes: %+v", n, ti)
}

// ReadTCPInfo unwraps a *tls.Conn like EffectiveMSS.
func TestReadTCPInfoTLS(t *testing.T) {
	skipUnlessLinux(t)
	client, _ := dialPair(t, "tcp4", nil)
	ti, err := pmtu.ReadTCPInfo(tls.Client(client, &tls.Config{}))
	require.NoError(t, err)
	assert.Equal(t, uint8(tcpEstablished), ti.State)
}

func TestReadTCPInfoClosed(t *testing.T) {
	client, _ := dialPair(t, "tcp4", nil)
	require.NoError(t, client.Close())
	_, err := pmtu.ReadTCPInfo(client)
	require.Error(t, err)
	assert.True(t, errors.Is(err, net.ErrClosed) || errors.Is(err, pmtu.ErrUnsupported), "got %v", err)
}

// BeforeWrite, from the read after a write, gives the read before it:
// here on loopback, where the write is acknowledged at once.
func TestBeforeWriteLoopback(t *testing.T) {
	skipUnlessLinux(t)
	client, server := dialPair(t, "tcp4", nil)
	const n = 1513
	for range 3 { // each write answered before the next, as a hello is
		before, err := pmtu.ReadTCPInfo(client)
		require.NoError(t, err)
		_, err = client.Write(make([]byte, n))
		require.NoError(t, err)
		after, err := pmtu.ReadTCPInfo(client)
		require.NoError(t, err)
		got := after.BeforeWrite(n)
		assert.Equal(t, before.BytesAcked, got.BytesAcked, "after: %+v", after)
		assert.Equal(t, before.BytesSent, got.BytesSent)
		assert.Equal(t, before.NotSent, got.NotSent)
		_, err = io.ReadFull(server, make([]byte, n))
		require.NoError(t, err)
		_, err = server.Write([]byte{1})
		require.NoError(t, err)
		_, err = io.ReadFull(client, make([]byte, 1))
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			ti, err := pmtu.ReadTCPInfo(client)
			return err == nil && ti.Unacked == 0
		}, 5*time.Second, time.Millisecond)
	}
}

// BeforeWrite on what a slow path shows right after a write: the bytes
// in flight, or acknowledged in part, or some not yet sent.
func TestBeforeWrite(t *testing.T) {
	const n = 1500
	for _, tc := range []struct {
		name                string
		after               pmtu.TCPInfo
		wantAcked, wantSent uint64
	}{
		{"all in flight", pmtu.TCPInfo{Unacked: 2, BytesSent: 100 + n, BytesAcked: 101}, 101, 100},
		{"head acknowledged", pmtu.TCPInfo{Unacked: 1, BytesSent: 100 + n, BytesAcked: 101 + 1000}, 101, 100},
		{"all acknowledged", pmtu.TCPInfo{BytesSent: n, BytesAcked: 1 + n}, 1, 0},
		{"a retransmission before", pmtu.TCPInfo{Unacked: 2, BytesSent: 300 + n, BytesRetrans: 200, BytesAcked: 101}, 101, 300},
		{"part not sent", pmtu.TCPInfo{Unacked: 1, NotSent: 500, BytesSent: n - 500, BytesAcked: 1}, 1, 0},
		{"old kernel, in flight", pmtu.TCPInfo{Unacked: 2, BytesAcked: 1}, 1, 0},
		{"old kernel, acknowledged", pmtu.TCPInfo{State: tcpEstablished, BytesAcked: 1 + n}, 1, 0},
		{"old kernel, reset", pmtu.TCPInfo{State: tcpClose, BytesAcked: 1}, 1, 0},
		// A reset before the read leaves nothing in flight and nothing
		// acknowledged (seen in the lab: the box resets within a round trip).
		{"reset", pmtu.TCPInfo{State: tcpClose, BytesSent: n, BytesAcked: 1}, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.after.BeforeWrite(n)
			assert.Equal(t, tc.wantAcked, got.BytesAcked, "BytesAcked")
			assert.Equal(t, tc.wantSent, got.BytesSent, "BytesSent")
			assert.Zero(t, got.NotSent)
			assert.Equal(t, tc.after.Unacked, got.Unacked, "other fields as read")
		})
	}
}
