//go:build !linux

package probe

import (
	"net"
	"testing"
)

// assertDF checks nothing: forceDF is a no-op without Linux's
// IP_MTU_DISCOVER.
func assertDF(*testing.T, net.Conn) {}
