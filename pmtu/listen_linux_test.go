package pmtu_test

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fitshake/fitshake/pmtu"
)

// loopbackMSS dials ln and returns the effective MSS of both ends once
// accepted. On loopback each end's MSS is bounded by what the other
// announced, as on a real path (1360 → 1348 with timestamps).
func loopbackMSS(t *testing.T, ln net.Listener, after func(net.Conn)) (client, server int) {
	t.Helper()
	c, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	s, err := ln.Accept()
	require.NoError(t, err)
	defer s.Close()
	if after != nil {
		after(s)
	}
	client, err = pmtu.EffectiveMSS(c)
	require.NoError(t, err)
	server, err = pmtu.EffectiveMSS(s)
	require.NoError(t, err)
	return client, server
}

// TCP_MAXSEG on the listening socket clamps both ends of every accepted
// connection, with Multipath TCP on (Go's default where the kernel has it)
// or off, per family.
func TestListenConfigWithMTU(t *testing.T) {
	for _, mptcp := range []bool{true, false} {
		for _, tt := range []struct {
			network, addr string
			want          int // 1400 − 40 or 60, less 12 bytes of timestamps
		}{
			{"tcp4", "127.0.0.1:0", 1348},
			{"tcp6", "[::1]:0", 1328},
		} {
			name := tt.network + map[bool]string{true: "/mptcp", false: "/tcp"}[mptcp]
			t.Run(name, func(t *testing.T) {
				base := new(net.ListenConfig)
				base.SetMultipathTCP(mptcp)
				lc, err := pmtu.ListenConfigWithMTU(base, 1400)
				require.NoError(t, err)
				ln, err := lc.Listen(t.Context(), tt.network, tt.addr)
				if err != nil && tt.network == "tcp6" {
					t.Skipf("no IPv6 loopback: %v", err)
				}
				require.NoError(t, err)
				defer ln.Close()
				client, server := loopbackMSS(t, ln, nil)
				assert.Equal(t, tt.want, client, "client's send MSS: the SYN-ACK advertised the clamp")
				assert.Equal(t, tt.want, server, "server's send MSS: bounded by the clamp")
			})
		}
	}
}

// Setting TCP_MAXSEG on an accepted connection does not clamp it: the
// SYN-ACK has gone, and the send MSS stays. Hence the listener option.
func TestClampAfterAcceptDoesNothing(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	client, server := loopbackMSS(t, ln, func(s net.Conn) {
		rc, err := s.(*net.TCPConn).SyscallConn()
		require.NoError(t, err)
		require.NoError(t, pmtu.ClampMSS(1360, nil)("tcp4", "", rc), "the kernel accepts the option")
	})
	assert.Greater(t, client, 1360)
	assert.Greater(t, server, 1360)
}
