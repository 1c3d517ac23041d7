package reset_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/reset"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestClose closes a loopback connection with a reset and a pipe as usual:
// the TCP peer reads ECONNRESET, not an end of stream.
func TestClose(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	require.NoError(t, err)
	peer, err := ln.Accept()
	require.NoError(t, err)
	defer peer.Close()

	require.NoError(t, reset.Close(c))
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = peer.Read(make([]byte, 1))
	require.Error(t, err)
	assert.NotErrorIs(t, err, io.EOF, "a reset, not an end of stream")
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "a reset, not silence: %v", err)

	a, b := net.Pipe()
	defer b.Close()
	assert.NoError(t, reset.Close(a), "not TCP: closed as usual")
}
