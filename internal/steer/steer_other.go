//go:build !linux

package steer

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// Listen returns a [Group] of one plain listener on addr: outside Linux
// there is no steering, and [Group.SetClamped] fails for any prefix with
// an error wrapping [ErrUnsupported]. network and mss are checked as on
// Linux.
func Listen(ctx context.Context, network, addr string, mss int) (*Group, error) {
	return ListenTwins(ctx, network, addr, []int{mss})
}

// ListenTwins is Listen with a clamped twin for each of mss, as on Linux:
// here a plain listener, mss only checked.
func ListenTwins(ctx context.Context, network, addr string, mss []int) (*Group, error) {
	if err := validate(network, mss); err != nil {
		return nil, err
	}
	ln, err := new(net.ListenConfig).Listen(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return newGroup([]*net.TCPListener{ln.(*net.TCPListener)}, mss), nil
}

// attach has nothing to attach to: no prefix can be steered.
func (g *Group) attach(ps []netip.Prefix, _ []uint32) error {
	if len(ps) == 0 {
		return nil
	}
	return fmt.Errorf("steer: clamping %d prefixes: %w", len(ps), ErrUnsupported)
}
