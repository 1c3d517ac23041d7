package pmtu_test

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fitshake/fitshake/pmtu"
)

func TestListenConfigInvalid(t *testing.T) {
	orig := &net.ListenConfig{KeepAlive: time.Second}
	tests := []struct {
		name    string
		new     func() (*net.ListenConfig, error)
		wantMSS int
		wantMTU int
	}{
		{name: "MTU", new: func() (*net.ListenConfig, error) { return pmtu.ListenConfigWithMTU(orig, 100) }, wantMTU: 100},
		{name: "MTU nil config", new: func() (*net.ListenConfig, error) { return pmtu.ListenConfigWithMTU(nil, -1) }, wantMTU: -1},
		{name: "MSS", new: func() (*net.ListenConfig, error) { return pmtu.ListenConfigWithMSS(orig, 42) }, wantMSS: 42},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lc, err := tt.new()
			assert.Nil(t, lc)
			assertInvalid(t, err, tt.wantMSS, tt.wantMTU)
		})
	}
}

// Zero is a plain copy, MPTCP setting included; a nil config is the zero
// net.ListenConfig.
func TestListenConfigZero(t *testing.T) {
	for _, name := range []string{"MTU", "MSS"} {
		t.Run(name, func(t *testing.T) {
			var next recorder
			orig := &net.ListenConfig{KeepAlive: time.Second, Control: next.control}
			orig.SetMultipathTCP(false)
			with := pmtu.ListenConfigWithMTU
			if name == "MSS" {
				with = pmtu.ListenConfigWithMSS
			}
			lc, err := with(orig, 0)
			require.NoError(t, err)
			require.NotSame(t, orig, lc)
			assert.Equal(t, orig.KeepAlive, lc.KeepAlive)
			assert.False(t, lc.MultipathTCP())
			require.NotNil(t, lc.Control)
			require.NoError(t, lc.Control("tcp4", "", &fakeRawConn{}))
			assert.Equal(t, []string{"tcp4"}, next.calls(), "the copy's Control is orig's")

			lc, err = with(nil, 0)
			require.NoError(t, err)
			assert.Nil(t, lc.Control)
		})
	}
}

// The clamp runs first, then the config's own Control; the original is
// left alone; an error from the clamp fails the listen before the config's
// own Control runs.
func TestListenConfigComposition(t *testing.T) {
	next := recorder{err: errBoom}
	orig := &net.ListenConfig{Control: next.control}
	orig.SetMultipathTCP(false) // else Go retries a failed MPTCP listen as plain TCP: two calls
	lc, err := pmtu.ListenConfigWithMTU(orig, 1400)
	if !pmtu.CanClamp() || err != nil {
		require.ErrorIs(t, err, pmtu.ErrUnsupported)
		assert.Nil(t, lc)
		return
	}
	var rc fakeRawConn
	assert.Error(t, lc.Control("tcp4", "", &rc), "setsockopt on a closed descriptor")
	assert.Empty(t, next.calls(), "next ran after a failed clamp")
	assert.Equal(t, 1, rc.calls)

	_, err = lc.Listen(t.Context(), "tcp4", "127.0.0.1:0")
	assert.ErrorIs(t, err, errBoom, "the config's own Control ran after the clamp")
	assert.Equal(t, []string{"tcp4"}, next.calls())
	assert.True(t, orig.Control != nil && orig.KeepAlive == 0, "orig untouched")
}
