package pmtu

import (
	"net"
	"strings"
	"syscall"

	"github.com/fitshake/fitshake/internal/dialctl"
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
	return clampControl(ValidateMSS(mss), mss, mss, next)
}

// ClampMTU is like [ClampMSS] with the MSS that fits mtu for the family of
// the socket being dialed: [MSSForMTU](mtu, false) when network is "tcp4"
// and [MSSForMTU](mtu, true) when it is "tcp6" (net.Dialer passes the
// socket's family in the network argument of its Control function). For a
// plain "tcp" it uses the smaller, IPv6 value, which fits both families.
// An mtu of 0 means no clamp; an mtu that [ValidateMTU] rejects fails every
// dial with an [*MTUError].
func ClampMTU(mtu int, next ControlFunc) ControlFunc {
	return clampControl(ValidateMTU(mtu), MSSForMTU(mtu, false), MSSForMTU(mtu, true), next)
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
	return dialerWithClamp(d, ValidateMTU(mtu), MSSForMTU(mtu, false), MSSForMTU(mtu, true))
}

// CanClamp reports whether this platform can clamp the MSS before connect
// (Linux, macOS and the BSDs; not Windows). Where it cannot, callers should
// leave MSS steps out of their plans rather than fail.
func CanClamp() bool { return clampSupported }

// DialerWithMSS is like [DialerWithMTU] with a fixed TCP_MAXSEG value for
// both families, as [ClampMSS] sets. It returns an [*MSSError] for an mss
// that [ValidateMSS] rejects.
func DialerWithMSS(d *net.Dialer, mss int) (*net.Dialer, error) {
	return dialerWithClamp(d, ValidateMSS(mss), mss, mss)
}

// clampControl is ClampMSS and ClampMTU: a Control function that fails
// with invalid, if not nil; that clamps TCP sockets to v4 or v6 by family
// and then calls next; or, when v4 and v6 are 0 (no clamp), only calls
// next.
func clampControl(invalid error, v4, v6 int, next ControlFunc) ControlFunc {
	switch {
	case invalid != nil:
		return func(string, string, syscall.RawConn) error { return invalid }
	case v4 == 0 && v6 == 0:
		return orNop(next)
	}
	return dialctl.Chain(clampFunc(v4, v6), next)
}

// dialerWithClamp is DialerWithMTU and DialerWithMSS: invalid, if not nil;
// a copy of d clamping TCP sockets to v4 or v6 by family; or, when v4 and
// v6 are 0 (no clamp), a plain copy.
func dialerWithClamp(d *net.Dialer, invalid error, v4, v6 int) (*net.Dialer, error) {
	var f ControlFunc
	switch {
	case invalid != nil:
		return nil, invalid
	case v4 == 0 && v6 == 0:
	case !clampSupported:
		return nil, ErrUnsupported
	default:
		f = clampFunc(v4, v6)
	}
	return dialctl.First(d, f), nil
}

// clampFunc returns the Control function that sets TCP_MAXSEG on a TCP
// socket: v4 for "tcp4", v6 for "tcp6" and plain "tcp". It leaves sockets
// of other networks alone.
func clampFunc(v4, v6 int) ControlFunc {
	return func(network, _ string, c syscall.RawConn) error {
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
}

func orNop(f ControlFunc) ControlFunc {
	if f != nil {
		return f
	}
	return func(string, string, syscall.RawConn) error { return nil }
}
