// Package dialctl composes the functions a [net.Dialer] calls on a socket
// before it connects (Control and ControlContext), so that an option set
// by one package does not displace another's.
package dialctl

import (
	"context"
	"net"
	"syscall"
)

// Func is the type of [net.Dialer.Control].
type Func = func(network, address string, c syscall.RawConn) error

// Chain returns a Func that calls a, then b unless a failed. A nil a or b
// is left out.
func Chain(a, b Func) Func {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return func(network, address string, c syscall.RawConn) error {
		if err := a(network, address, c); err != nil {
			return err
		}
		return b(network, address, c)
	}
}

// First returns a copy of d (the zero net.Dialer when d is nil) whose dials
// call f on the socket first, then d's own ControlContext or, when that is
// nil, its Control (net.Dialer ignores Control when ControlContext is set).
// An error from either fails the dial. A nil f gives a plain copy. It never
// modifies d.
func First(d *net.Dialer, f Func) *net.Dialer {
	d2 := new(net.Dialer)
	if d != nil {
		*d2 = *d
	}
	switch next := d2.ControlContext; {
	case f == nil:
	case next != nil:
		d2.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
			if err := f(network, address, c); err != nil {
				return err
			}
			return next(ctx, network, address, c)
		}
	default:
		d2.Control = Chain(f, d2.Control)
	}
	return d2
}
