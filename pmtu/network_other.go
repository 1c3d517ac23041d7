//go:build !linux

package pmtu

import "net/netip"

// lookupRoute reads no route outside Linux: LocalNetwork returns "".
func lookupRoute(netip.Addr) (route, error) { return route{}, ErrUnsupported }
