package probe

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// assertDF asserts that c's socket sends with DF set (IP_PMTUDISC_DO).
func assertDF(t *testing.T, c net.Conn) {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	var mode int
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		mode, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER)
	}))
	require.NoError(t, serr)
	assert.Equal(t, unix.IP_PMTUDISC_DO, mode, "DF forced on")
}
