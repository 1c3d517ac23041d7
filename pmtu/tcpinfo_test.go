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

const tcpEstablished = 1

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
