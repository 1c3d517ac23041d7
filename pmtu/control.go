package pmtu

import (
	"context"
	"net"
	"strings"
	"syscall"
)

// ControlFunc is the type of [net.Dialer.Control].
type ControlFunc = func(network, address string, c syscall.RawConn) error

// ClampMSS returns a function for [net.Dialer.Control] that sets TCP_MAXSEG
// to mss on the socket before it connects, and then calls next (which may be
// nil). The connection then announces mss in its SYN, and on Linux both
// directions use segments of mss less the TCP options (1360 → 1348).
//
// The clamp only applies to TCP sockets: for other networks the function
// just calls next. An mss of 0 means no clamp: the function only calls next.
// An mss that [ValidateMSS] rejects is reported when dialing, not here: the
// function then fails every dial with an [*MSSError]. Where the platform
// cannot clamp the MSS it fails every TCP dial with an error wrapping
// [ErrUnsupported]. A failing setsockopt is returned as an [*os.SyscallError]
// and next is not called. The dialer wraps all these errors in a
// [*net.OpError].
func ClampMSS(mss int, next ControlFunc) ControlFunc {
	if err := ValidateMSS(mss); err != nil {
		return func(string, string, syscall.RawConn) error { return err }
	}
	if mss == 0 {
		return orNop(next)
	}
	return func(network, address string, c syscall.RawConn) error {
		if err := clamp(network, c, mss, mss); err != nil {
			return err
		}
		if next != nil {
			return next(network, address, c)
		}
		return nil
	}
}

// ClampMTU is like [ClampMSS] with the MSS that fits mtu for the family of
// the socket being dialed: [MSSForMTU](mtu, false) when network is "tcp4"
// and [MSSForMTU](mtu, true) when it is "tcp6" (net.Dialer passes the
// socket's family in the network argument of its Control function). For a
// plain "tcp" it uses the smaller, IPv6 value, which fits both families.
// An mtu of 0 means no clamp; an mtu that [ValidateMTU] rejects fails every
// dial with an [*MTUError].
func ClampMTU(mtu int, next ControlFunc) ControlFunc {
	if err := ValidateMTU(mtu); err != nil {
		return func(string, string, syscall.RawConn) error { return err }
	}
	if mtu == 0 {
		return orNop(next)
	}
	v4, v6 := MSSForMTU(mtu, false), MSSForMTU(mtu, true)
	return func(network, address string, c syscall.RawConn) error {
		if err := clamp(network, c, v4, v6); err != nil {
			return err
		}
		if next != nil {
			return next(network, address, c)
		}
		return nil
	}
}

// DialerWithMTU returns a copy of d whose TCP dials clamp the MSS so that
// every packet fits mtu, as [ClampMTU] does. A nil d is the zero
// [net.Dialer]. The clamp is composed with d's own ControlContext or, if that
// is nil, with its Control (net.Dialer ignores Control when ControlContext
// is set): the clamp runs first, then d's function, and an error from either
// fails the dial. Set Control or ControlContext on d before calling: the
// copy's clamp is lost if ControlContext is set on the copy afterwards.
//
// An mtu of 0 returns a plain copy. DialerWithMTU returns an [*MTUError] for
// an mtu that [ValidateMTU] rejects, and [ErrUnsupported] for a non-zero mtu
// where the platform cannot clamp the MSS. It never modifies d.
func DialerWithMTU(d *net.Dialer, mtu int) (*net.Dialer, error) {
	if err := ValidateMTU(mtu); err != nil {
		return nil, err
	}
	if mtu == 0 {
		return copyDialer(d), nil
	}
	if !clampSupported {
		return nil, ErrUnsupported
	}
	return withClamp(d, MSSForMTU(mtu, false), MSSForMTU(mtu, true)), nil
}

// CanClamp reports whether this platform can clamp the MSS before connect
// (Linux, macOS and the BSDs; not Windows). Where it cannot, callers should
// leave MSS steps out of their plans rather than fail.
func CanClamp() bool { return clampSupported }

// DialerWithMSS is like [DialerWithMTU] with a fixed TCP_MAXSEG value for
// both families, as [ClampMSS] sets. It returns an [*MSSError] for an mss
// that [ValidateMSS] rejects.
func DialerWithMSS(d *net.Dialer, mss int) (*net.Dialer, error) {
	if err := ValidateMSS(mss); err != nil {
		return nil, err
	}
	if mss == 0 {
		return copyDialer(d), nil
	}
	if !clampSupported {
		return nil, ErrUnsupported
	}
	return withClamp(d, mss, mss), nil
}

func copyDialer(d *net.Dialer) *net.Dialer {
	if d == nil {
		return new(net.Dialer)
	}
	d2 := *d
	return &d2
}

// withClamp returns a copy of d clamping TCP sockets to v4 or v6 by family.
func withClamp(d *net.Dialer, v4, v6 int) *net.Dialer {
	d2 := copyDialer(d)
	if next := d2.ControlContext; next != nil {
		d2.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
			if err := clamp(network, c, v4, v6); err != nil {
				return err
			}
			return next(ctx, network, address, c)
		}
		return d2
	}
	next := d2.Control
	d2.Control = func(network, address string, c syscall.RawConn) error {
		if err := clamp(network, c, v4, v6); err != nil {
			return err
		}
		if next != nil {
			return next(network, address, c)
		}
		return nil
	}
	return d2
}

// clamp sets TCP_MAXSEG on a TCP socket: v4 for "tcp4", v6 for "tcp6" and
// plain "tcp". It leaves sockets of other networks alone.
func clamp(network string, c syscall.RawConn, v4, v6 int) error {
	if !strings.HasPrefix(network, "tcp") {
		return nil
	}
	mss := v6
	if network == "tcp4" {
		mss = v4
	}
	if mss == 0 {
		return nil
	}
	if !clampSupported {
		return ErrUnsupported
	}
	return setMSS(c, mss)
}

func orNop(f ControlFunc) ControlFunc {
	if f != nil {
		return f
	}
	return func(string, string, syscall.RawConn) error { return nil }
}
