package pmtu_test

import (
	"context"
	"errors"
	"net"
	"os"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fitshake/fitshake/pmtu"
)

var errBoom = errors.New("boom")

// fakeRawConn is a syscall.RawConn whose Control fails with err or, if err
// is nil, runs f on a descriptor that is not open.
type fakeRawConn struct {
	err   error
	calls int
}

func (f *fakeRawConn) Control(fn func(fd uintptr)) error {
	f.calls++
	if f.err != nil {
		return f.err
	}
	fn(1 << 30) // not an open descriptor: EBADF
	return nil
}

func (f *fakeRawConn) Read(func(fd uintptr) bool) error  { return errors.ErrUnsupported }
func (f *fakeRawConn) Write(func(fd uintptr) bool) error { return errors.ErrUnsupported }

// recorder is a ControlFunc that records its calls.
type recorder struct {
	mu       sync.Mutex
	networks []string
	err      error
}

func (r *recorder) control(network, _ string, _ syscall.RawConn) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.networks = append(r.networks, network)
	return r.err
}

func (r *recorder) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.networks...)
}

func TestClampInvalid(t *testing.T) {
	tests := []struct {
		name    string
		clamp   func(pmtu.ControlFunc) pmtu.ControlFunc
		wantMSS int // MSSError.MSS, or 0 for an MTUError
		wantMTU int // MTUError.MTU
	}{
		{name: "MSS below min", clamp: func(n pmtu.ControlFunc) pmtu.ControlFunc { return pmtu.ClampMSS(42, n) }, wantMSS: 42},
		{name: "MSS above max", clamp: func(n pmtu.ControlFunc) pmtu.ControlFunc { return pmtu.ClampMSS(40000, n) }, wantMSS: 40000},
		{name: "MSS negative", clamp: func(n pmtu.ControlFunc) pmtu.ControlFunc { return pmtu.ClampMSS(-1, n) }, wantMSS: -1},
		{name: "MTU below min", clamp: func(n pmtu.ControlFunc) pmtu.ControlFunc { return pmtu.ClampMTU(100, n) }, wantMTU: 100},
		{name: "MTU above max", clamp: func(n pmtu.ControlFunc) pmtu.ControlFunc { return pmtu.ClampMTU(65536, n) }, wantMTU: 65536},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var next recorder
			f := tt.clamp(next.control)
			require.NotNil(t, f)

			var rc fakeRawConn
			err := f("tcp4", "192.0.2.1:443", &rc)
			assertInvalid(t, err, tt.wantMSS, tt.wantMTU)
			assert.Zero(t, rc.calls, "socket touched")
			assert.Empty(t, next.calls(), "next called")

			// The error surfaces from the dial, inside a *net.OpError.
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			require.NoError(t, err)
			defer ln.Close()
			d := &net.Dialer{Control: f, Timeout: 5 * time.Second}
			c, err := d.Dial("tcp", ln.Addr().String())
			if c != nil {
				c.Close()
			}
			var opErr *net.OpError
			require.ErrorAs(t, err, &opErr)
			assertInvalid(t, err, tt.wantMSS, tt.wantMTU)
		})
	}
}

func assertInvalid(t *testing.T, err error, wantMSS, wantMTU int) {
	t.Helper()
	if wantMTU != 0 {
		var mtuErr *pmtu.MTUError
		require.ErrorAs(t, err, &mtuErr)
		assert.Equal(t, wantMTU, mtuErr.MTU)
		return
	}
	var mssErr *pmtu.MSSError
	require.ErrorAs(t, err, &mssErr)
	assert.Equal(t, wantMSS, mssErr.MSS)
}

// A zero MSS or MTU means no clamp: the socket is left alone and only next
// is called, and a nil next gives a no-op rather than a nil func.
func TestClampZero(t *testing.T) {
	tests := []struct {
		name  string
		clamp func(pmtu.ControlFunc) pmtu.ControlFunc
	}{
		{name: "ClampMSS", clamp: func(n pmtu.ControlFunc) pmtu.ControlFunc { return pmtu.ClampMSS(0, n) }},
		{name: "ClampMTU", clamp: func(n pmtu.ControlFunc) pmtu.ControlFunc { return pmtu.ClampMTU(0, n) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rc fakeRawConn
			f := tt.clamp(nil)
			require.NotNil(t, f)
			assert.NoError(t, f("tcp4", "192.0.2.1:443", &rc))

			next := recorder{err: errBoom}
			f = tt.clamp(next.control)
			assert.ErrorIs(t, f("tcp6", "[2001:db8::1]:443", &rc), errBoom)
			assert.Equal(t, []string{"tcp6"}, next.calls())
			assert.Zero(t, rc.calls, "socket touched")
		})
	}
}

// Sockets of other networks are left alone, so one dialer serves UDP too.
func TestClampNonTCP(t *testing.T) {
	for _, network := range []string{"udp", "udp4", "udp6", "unix", "ip4:icmp"} {
		t.Run(network, func(t *testing.T) {
			var rc fakeRawConn
			var next recorder
			assert.NoError(t, pmtu.ClampMSS(1360, next.control)(network, "x", &rc))
			assert.NoError(t, pmtu.ClampMTU(1400, next.control)(network, "x", &rc))
			assert.Zero(t, rc.calls, "socket touched")
			assert.Equal(t, []string{network, network}, next.calls())
		})
	}

	skipUnlessClamp(t)
	t.Run("real UDP dial", func(t *testing.T) {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		require.NoError(t, err)
		defer pc.Close()
		d, err := pmtu.DialerWithMTU(nil, 1400)
		require.NoError(t, err)
		c, err := d.Dial("udp", pc.LocalAddr().String())
		require.NoError(t, err)
		c.Close()
	})
}

// Errors from the socket are returned, wrapped as the house style wants,
// and next is not called.
func TestClampSocketErrors(t *testing.T) {
	skipUnlessClamp(t)
	tests := []struct {
		name    string
		rc      *fakeRawConn
		wantErr error
		wantSys bool // wrapped in *os.SyscallError "setsockopt"
	}{
		{name: "RawConn.Control fails", rc: &fakeRawConn{err: errBoom}, wantErr: errBoom},
		{name: "setsockopt fails", rc: &fakeRawConn{}, wantErr: syscall.EBADF, wantSys: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, f := range []pmtu.ControlFunc{
				pmtu.ClampMSS(1360, (&recorder{err: errors.New("next called")}).control),
				pmtu.ClampMTU(1400, (&recorder{err: errors.New("next called")}).control),
			} {
				err := f("tcp4", "192.0.2.1:443", tt.rc)
				require.ErrorIs(t, err, tt.wantErr)
				var sysErr *os.SyscallError
				if tt.wantSys {
					require.ErrorAs(t, err, &sysErr)
					assert.Equal(t, "setsockopt", sysErr.Syscall)
				} else {
					assert.False(t, errors.As(err, &sysErr))
				}
			}
		})
	}
}

// A plain "tcp" network (never passed by net.Dialer, which passes the
// socket's family) gets the IPv6 value, which fits both families.
func TestClampMTUPlainTCP(t *testing.T) {
	skipUnlessClamp(t)
	skipUnlessLinux(t)
	var got []string
	d := &net.Dialer{Control: func(network, address string, c syscall.RawConn) error {
		got = append(got, network)
		return pmtu.ClampMTU(1400, nil)("tcp", address, c)
	}}
	client, _ := dialPair(t, "tcp4", d)
	assert.Equal(t, []string{"tcp4"}, got)
	mss, err := pmtu.EffectiveMSS(client)
	require.NoError(t, err)
	assert.Equal(t, 1340-12, mss)
}

type ctxKey struct{}

// The clamp composes with the dialer's own Control or ControlContext: ours
// first, then theirs, so a clamp set by theirs wins (1000 → 988); net.Dialer
// ignores Control when ControlContext is set, and so do we. The input dialer
// is never modified.
func TestDialerComposition(t *testing.T) {
	skipUnlessClamp(t)
	skipUnlessLinux(t)

	type hooks struct {
		control, controlCtx recorder
		ctxValues           []any
	}
	tests := []struct {
		name       string
		control    bool // set the dialer's Control
		controlCtx bool // set the dialer's ControlContext
		// theirs clamps the MSS to 1000 when it runs
		wantControl, wantControlCtx []string
		wantMSS                     int
	}{
		{name: "neither", wantMSS: 1348},
		{name: "Control", control: true, wantControl: []string{"tcp4"}, wantMSS: 988},
		{name: "ControlContext", controlCtx: true, wantControlCtx: []string{"tcp4"}, wantMSS: 988},
		{name: "both: ControlContext only", control: true, controlCtx: true, wantControlCtx: []string{"tcp4"}, wantMSS: 988},
	}
	constructors := []struct {
		name string
		new  func(*net.Dialer) (*net.Dialer, error)
	}{
		{name: "DialerWithMTU", new: func(d *net.Dialer) (*net.Dialer, error) { return pmtu.DialerWithMTU(d, 1400) }},
		{name: "DialerWithMSS", new: func(d *net.Dialer) (*net.Dialer, error) { return pmtu.DialerWithMSS(d, 1360) }},
	}
	for _, ctor := range constructors {
		for _, tt := range tests {
			t.Run(ctor.name+"/"+tt.name, func(t *testing.T) {
				var h hooks
				orig := &net.Dialer{
					Timeout:   5 * time.Second,
					KeepAlive: -1,
					LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)},
				}
				if tt.control {
					orig.Control = pmtu.ClampMSS(1000, h.control.control)
				}
				if tt.controlCtx {
					clamp := pmtu.ClampMSS(1000, h.controlCtx.control)
					orig.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
						h.ctxValues = append(h.ctxValues, ctx.Value(ctxKey{}))
						return clamp(network, address, c)
					}
				}
				before := snapshot(orig)

				d, err := ctor.new(orig)
				require.NoError(t, err)
				require.NotSame(t, orig, d)
				assert.Equal(t, before, snapshot(orig), "input dialer modified")
				assert.Equal(t, orig.Timeout, d.Timeout)
				assert.Equal(t, orig.KeepAlive, d.KeepAlive)
				assert.Same(t, orig.LocalAddr, d.LocalAddr)

				ln, err := net.Listen("tcp4", "127.0.0.1:0")
				require.NoError(t, err)
				defer ln.Close()
				ctx := context.WithValue(context.Background(), ctxKey{}, "v")
				client, err := d.DialContext(ctx, "tcp", ln.Addr().String())
				require.NoError(t, err)
				defer client.Close()

				mss, err := pmtu.EffectiveMSS(client)
				require.NoError(t, err)
				assert.Equal(t, tt.wantMSS, mss)
				assert.Equal(t, tt.wantControl, h.control.calls(), "Control calls")
				assert.Equal(t, tt.wantControlCtx, h.controlCtx.calls(), "ControlContext calls")
				if tt.controlCtx {
					assert.Equal(t, []any{"v"}, h.ctxValues, "ControlContext's context")
				}
				assert.Equal(t, before, snapshot(orig), "input dialer modified by a dial")

				// The original dialer still dials without our clamp.
				if !tt.control && !tt.controlCtx {
					c2, err := orig.Dial("tcp", ln.Addr().String())
					require.NoError(t, err)
					defer c2.Close()
					mss, err := pmtu.EffectiveMSS(c2)
					require.NoError(t, err)
					assert.Greater(t, mss, 1448, "original dialer clamped")
				}
			})
		}
	}
}

// snapshot is what a dialer's fields compare as: funcs by code pointer.
func snapshot(d *net.Dialer) map[string]any {
	fn := func(f any) uintptr {
		v := reflect.ValueOf(f)
		if v.IsNil() {
			return 0
		}
		return v.Pointer()
	}
	return map[string]any{
		"Timeout":        d.Timeout,
		"KeepAlive":      d.KeepAlive,
		"LocalAddr":      d.LocalAddr,
		"Control":        fn(d.Control),
		"ControlContext": fn(d.ControlContext),
	}
}

func TestDialerErrorsPropagate(t *testing.T) {
	skipUnlessClamp(t)
	tests := []struct {
		name string
		d    *net.Dialer
	}{
		{name: "Control", d: &net.Dialer{Control: (&recorder{err: errBoom}).control}},
		{name: "ControlContext", d: &net.Dialer{ControlContext: func(context.Context, string, string, syscall.RawConn) error { return errBoom }}},
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := pmtu.DialerWithMTU(tt.d, 1400)
			require.NoError(t, err)
			c, err := d.Dial("tcp", ln.Addr().String())
			if c != nil {
				c.Close()
			}
			require.ErrorIs(t, err, errBoom)
			var opErr *net.OpError
			assert.ErrorAs(t, err, &opErr)
		})
	}
}

func TestDialerInvalid(t *testing.T) {
	orig := &net.Dialer{Timeout: time.Second}
	tests := []struct {
		name    string
		new     func() (*net.Dialer, error)
		wantMSS int
		wantMTU int
	}{
		{name: "MTU", new: func() (*net.Dialer, error) { return pmtu.DialerWithMTU(orig, 100) }, wantMTU: 100},
		{name: "MTU nil dialer", new: func() (*net.Dialer, error) { return pmtu.DialerWithMTU(nil, -1) }, wantMTU: -1},
		{name: "MSS", new: func() (*net.Dialer, error) { return pmtu.DialerWithMSS(orig, 42) }, wantMSS: 42},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := tt.new()
			assert.Nil(t, d)
			assertInvalid(t, err, tt.wantMSS, tt.wantMTU)
		})
	}
}

// Zero is a plain copy; a nil dialer is the zero net.Dialer.
func TestDialerZero(t *testing.T) {
	var next recorder
	orig := &net.Dialer{Timeout: time.Second, Control: next.control}
	tests := []struct {
		name string
		new  func(*net.Dialer) (*net.Dialer, error)
	}{
		{name: "DialerWithMTU", new: func(d *net.Dialer) (*net.Dialer, error) { return pmtu.DialerWithMTU(d, 0) }},
		{name: "DialerWithMSS", new: func(d *net.Dialer) (*net.Dialer, error) { return pmtu.DialerWithMSS(d, 0) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := tt.new(orig)
			require.NoError(t, err)
			require.NotSame(t, orig, d)
			assert.Equal(t, snapshot(orig), snapshot(d))

			d, err = tt.new(nil)
			require.NoError(t, err)
			require.NotNil(t, d)
			assert.Equal(t, snapshot(new(net.Dialer)), snapshot(d))
		})
	}
}

// One clamped dialer is safe for concurrent dials.
func TestDialerConcurrent(t *testing.T) {
	skipUnlessClamp(t)
	skipUnlessLinux(t)
	var next recorder
	d, err := pmtu.DialerWithMTU(&net.Dialer{Control: next.control}, 1400)
	require.NoError(t, err)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()

	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			c, err := d.Dial("tcp", ln.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			mss, err := pmtu.EffectiveMSS(c)
			if err == nil && mss != 1348 {
				err = errors.New("wrong MSS")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	assert.Len(t, next.calls(), n)
}
