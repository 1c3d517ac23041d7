package probe

import (
	"context"
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestDialSpecForcesDF: a spec that forces DF sets IP_PMTUDISC_DO on the
// socket, beside a NetDialer's own ControlContext.
func TestDialSpecForcesDF(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	nd := &net.Dialer{ControlContext: func(context.Context, string, string, syscall.RawConn) error { return nil }}
	c, err := dialSpec(context.Background(), nd, "tcp4", ln.Addr().String(), spec{packet: 1000, forceDF: true})
	require.NoError(t, err)
	defer c.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	var mode int
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		mode, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER)
	}))
	require.NoError(t, serr)
	assert.Equal(t, unix.IP_PMTUDISC_DO, mode)
}
