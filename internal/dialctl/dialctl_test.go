package dialctl_test

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"

	"github.com/fitshake/fitshake/internal/dialctl"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder returns a Func that appends name to *calls and returns err.
func recorder(calls *[]string, name string, err error) dialctl.Func {
	return func(string, string, syscall.RawConn) error {
		*calls = append(*calls, name)
		return err
	}
}

func TestChain(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name      string
		a, b      bool // present
		aErr      error
		wantCalls []string
		wantErr   error
	}{
		{"both", true, true, nil, []string{"a", "b"}, nil},
		{"a fails: b not called", true, true, boom, []string{"a"}, boom},
		{"no b", true, false, nil, []string{"a"}, nil},
		{"no a", false, true, nil, []string{"b"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls []string
			var a, b dialctl.Func
			if tt.a {
				a = recorder(&calls, "a", tt.aErr)
			}
			if tt.b {
				b = recorder(&calls, "b", nil)
			}
			err := dialctl.Chain(a, b)("tcp4", "", nil)
			assert.ErrorIs(t, err, tt.wantErr)
			assert.Equal(t, tt.wantCalls, calls)
		})
	}
	assert.Nil(t, dialctl.Chain(nil, nil))
}

// TestFirst dials loopback with dialers whose own function is Control,
// ControlContext or none: f runs first, then the dialer's own, and the
// argument is left alone.
func TestFirst(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var calls []string
	own := recorder(&calls, "own", nil)
	ownCtx := func(_ context.Context, n, a string, c syscall.RawConn) error { return own(n, a, c) }
	tests := []struct {
		name string
		d    *net.Dialer
		want []string
	}{
		{"nil", nil, []string{"f"}},
		{"Control", &net.Dialer{Control: own}, []string{"f", "own"}},
		{"ControlContext", &net.Dialer{ControlContext: ownCtx}, []string{"f", "own"}},
		{"ControlContext wins over Control", &net.Dialer{Control: recorder(&calls, "ignored", nil), ControlContext: ownCtx}, []string{"f", "own"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls = nil
			var before net.Dialer
			if tt.d != nil {
				before = *tt.d
			}
			d := dialctl.First(tt.d, recorder(&calls, "f", nil))
			c, err := d.Dial("tcp4", ln.Addr().String())
			require.NoError(t, err)
			c.Close()
			assert.Equal(t, tt.want, calls)
			if tt.d != nil {
				assert.Equal(t, before.Control == nil, tt.d.Control == nil, "d untouched")
				assert.Equal(t, before.ControlContext == nil, tt.d.ControlContext == nil, "d untouched")
			}
		})
	}
	t.Run("f fails the dial", func(t *testing.T) {
		calls = nil
		boom := errors.New("boom")
		d := dialctl.First(&net.Dialer{ControlContext: ownCtx}, recorder(&calls, "f", boom))
		_, err := d.Dial("tcp4", ln.Addr().String())
		assert.ErrorIs(t, err, boom)
		assert.Equal(t, []string{"f"}, calls)
	})
	t.Run("nil f: a copy", func(t *testing.T) {
		d := &net.Dialer{Control: own}
		d2 := dialctl.First(d, nil)
		assert.NotSame(t, d, d2)
		assert.NotNil(t, d2.Control)
	})
}
