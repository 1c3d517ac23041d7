//go:build !linux

package steer_test

import (
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fitshake/fitshake/internal/steer"
)

// Outside Linux a Group is a plain listener: it accepts, and steering
// fails with ErrUnsupported, except for clamping no one.
func TestGroupFallback(t *testing.T) {
	g, err := steer.Listen(t.Context(), "tcp4", "127.0.0.1:0", 1340)
	require.NoError(t, err)
	defer g.Close()
	assert.ErrorIs(t, g.SetClamped([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}), steer.ErrUnsupported)
	assert.NoError(t, g.SetClamped(nil))
	c, err := net.Dial("tcp4", g.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	s, err := g.Accept()
	require.NoError(t, err)
	s.Close()
	require.NoError(t, g.Close())
	_, err = g.Accept()
	assert.ErrorIs(t, err, net.ErrClosed)
}
