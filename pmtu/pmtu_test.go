package pmtu_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fitshake/fitshake/internal/testcert"
	"github.com/fitshake/fitshake/pmtu"
)

func TestValidateMSS(t *testing.T) {
	tests := []struct {
		name    string
		mss     int
		wantErr bool
	}{
		{name: "zero means no clamp", mss: 0},
		{name: "min", mss: pmtu.MinMSS},
		{name: "below min", mss: pmtu.MinMSS - 1, wantErr: true},
		{name: "ethernet v4", mss: 1460},
		{name: "black hole v4", mss: 1360},
		{name: "max", mss: pmtu.MaxMSS},
		{name: "above max", mss: pmtu.MaxMSS + 1, wantErr: true},
		{name: "negative", mss: -1, wantErr: true},
		{name: "tiny", mss: 42, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := pmtu.ValidateMSS(tt.mss)
			if !tt.wantErr {
				assert.NoError(t, err)
				return
			}
			var mssErr *pmtu.MSSError
			require.ErrorAs(t, err, &mssErr)
			assert.Equal(t, tt.mss, mssErr.MSS)
			assert.Nil(t, errors.Unwrap(err), "MSSError wraps nothing")
		})
	}
}

func TestMSSErrorMessage(t *testing.T) {
	assert.EqualError(t, pmtu.ValidateMSS(42), "pmtu: invalid MSS 42: want 0 (no clamp) or 88..32767")
	assert.EqualError(t, pmtu.ValidateMTU(100), "pmtu: invalid MTU 100: want 0 (no clamp) or 148..65535")
}

func TestValidateMTU(t *testing.T) {
	tests := []struct {
		name    string
		mtu     int
		wantErr bool
	}{
		{name: "zero means no clamp", mtu: 0},
		{name: "min", mtu: pmtu.MinMTU},
		{name: "below min", mtu: pmtu.MinMTU - 1, wantErr: true},
		{name: "ipv6 minimum link", mtu: 1280},
		{name: "black hole", mtu: 1400},
		{name: "ethernet", mtu: 1500},
		{name: "loopback", mtu: 65536, wantErr: true},
		{name: "max", mtu: pmtu.MaxMTU},
		{name: "negative", mtu: -1400, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := pmtu.ValidateMTU(tt.mtu)
			if !tt.wantErr {
				assert.NoError(t, err)
				return
			}
			var mtuErr *pmtu.MTUError
			require.ErrorAs(t, err, &mtuErr)
			assert.Equal(t, tt.mtu, mtuErr.MTU)
		})
	}
}

func TestMSSForMTU(t *testing.T) {
	tests := []struct {
		name string
		mtu  int
		ipv6 bool
		want int
	}{
		{name: "black hole v4", mtu: 1400, want: 1360},
		{name: "black hole v6", mtu: 1400, ipv6: true, want: 1340},
		{name: "ethernet v4", mtu: 1500, want: 1460},
		{name: "ethernet v6", mtu: 1500, ipv6: true, want: 1440},
		{name: "ipv6 minimum", mtu: 1280, ipv6: true, want: 1220},
		{name: "min v6", mtu: pmtu.MinMTU, ipv6: true, want: pmtu.MinMSS},
		{name: "min v4", mtu: pmtu.MinMTU, want: pmtu.MinMSS + 20},
		{name: "capped at MaxMSS", mtu: pmtu.MaxMTU, want: pmtu.MaxMSS},
		{name: "zero", mtu: 0, want: 0},
		{name: "zero v6", mtu: 0, ipv6: true, want: 0},
		{name: "negative", mtu: -1, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, pmtu.MSSForMTU(tt.mtu, tt.ipv6))
		})
	}
}

// Every MTU that ValidateMTU accepts gives an MSS that ValidateMSS accepts.
func TestHeaderBytes(t *testing.T) {
	tests := []struct {
		name             string
		ipv6, timestamps bool
		want             int
	}{
		{"IPv4", false, false, 40},
		{"IPv4, timestamps", false, true, 52},
		{"IPv6", true, false, 60},
		{"IPv6, timestamps", true, true, 72},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, pmtu.HeaderBytes(tt.ipv6, tt.timestamps))
			assert.Equal(t, 1400, pmtu.MSSForMTU(1400, tt.ipv6)+pmtu.HeaderBytes(tt.ipv6, false), "an MSS for an MTU leaves room for the headers")
		})
	}
}

func TestMSSForMTUValid(t *testing.T) {
	for mtu := pmtu.MinMTU - 1; mtu <= pmtu.MaxMTU+1; mtu++ {
		mtuOK := pmtu.ValidateMTU(mtu) == nil
		for _, ipv6 := range []bool{false, true} {
			mssOK := pmtu.ValidateMSS(pmtu.MSSForMTU(mtu, ipv6)) == nil
			if mtuOK && !mssOK {
				t.Fatalf("MSSForMTU(%d, %v) = %d: invalid MSS", mtu, ipv6, pmtu.MSSForMTU(mtu, ipv6))
			}
		}
	}
}

// skipUnlessClamp skips tests that need a working TCP_MAXSEG clamp.
func skipUnlessClamp(t *testing.T) {
	t.Helper()
	if _, err := pmtu.DialerWithMSS(nil, 1360); errors.Is(err, pmtu.ErrUnsupported) {
		t.Skipf("MSS clamp not supported on %s", runtime.GOOS)
	}
}

// skipUnlessLinux skips tests of values measured on Linux.
func skipUnlessLinux(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("effective MSS values measured on Linux only, not %s", runtime.GOOS)
	}
}

// loopbackAddr returns the loopback listen address for network, skipping
// the test if the family is unavailable.
func loopbackAddr(t *testing.T, network string) string {
	t.Helper()
	if network == "tcp6" {
		ln, err := net.Listen("tcp6", "[::1]:0")
		if err != nil {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		ln.Close()
		return "[::1]:0"
	}
	return "127.0.0.1:0"
}

// dialPair dials a loopback listener with d and returns the client conn and
// the server's accepted conn, both closed at the end of the test.
func dialPair(t *testing.T, network string, d *net.Dialer) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen(network, loopbackAddr(t, network))
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })

	type result struct {
		c   net.Conn
		err error
	}
	accepted := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		accepted <- result{c, err}
	}()

	if d == nil {
		d = new(net.Dialer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, err = d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		ln.Close()
		<-accepted
		require.NoError(t, err)
	}
	t.Cleanup(func() { client.Close() })

	r := <-accepted
	require.NoError(t, r.err)
	t.Cleanup(func() { r.c.Close() })
	return client, r.c
}

func TestEffectiveMSS(t *testing.T) {
	skipUnlessClamp(t)
	skipUnlessLinux(t)

	tests := []struct {
		name    string
		network string
		control pmtu.ControlFunc
		// Both ends see the same MSS: the clamp less 12 bytes of
		// timestamps.
		want int
	}{
		{name: "v4 ClampMSS 1360", network: "tcp4", control: pmtu.ClampMSS(1360, nil), want: 1348},
		{name: "v4 ClampMSS 536", network: "tcp4", control: pmtu.ClampMSS(536, nil), want: 524},
		{name: "v4 ClampMSS min", network: "tcp4", control: pmtu.ClampMSS(pmtu.MinMSS, nil), want: pmtu.MinMSS - 12},
		{name: "v4 ClampMTU 1400", network: "tcp4", control: pmtu.ClampMTU(1400, nil), want: 1348},
		{name: "v6 ClampMTU 1400", network: "tcp6", control: pmtu.ClampMTU(1400, nil), want: 1340 - 12},
		{name: "v6 ClampMSS 1360", network: "tcp6", control: pmtu.ClampMSS(1360, nil), want: 1348},
		{name: "v6 ClampMTU 1280", network: "tcp6", control: pmtu.ClampMTU(1280, nil), want: 1220 - 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := dialPair(t, tt.network, &net.Dialer{Control: tt.control})

			got, err := pmtu.EffectiveMSS(client)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got, "client")

			got, err = pmtu.EffectiveMSS(server)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got, "accepted server socket")
		})
	}
}

// Without a clamp loopback's 64 KiB MTU allows a larger MSS than
// TCP_MAXSEG itself accepts. Measured on Linux 6.18: the client reports
// 32741 (IPv6: 32732), the accepted socket 32768, even after it has sent
// data: both far above Ethernet's 1448.
func TestEffectiveMSSUnclamped(t *testing.T) {
	skipUnlessLinux(t)
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			client, server := dialPair(t, network, nil)
			c, err := pmtu.EffectiveMSS(client)
			require.NoError(t, err)
			s, err := pmtu.EffectiveMSS(server)
			require.NoError(t, err)
			assert.Greater(t, c, 32000, "client")
			assert.Greater(t, s, 32000, "server")

			_, err = server.Write([]byte("x"))
			require.NoError(t, err)
			_, err = io.ReadFull(client, make([]byte, 1))
			require.NoError(t, err)
			s2, err := pmtu.EffectiveMSS(server)
			require.NoError(t, err)
			t.Logf("unclamped %s loopback MSS: client %d, server %d, server after a write %d", network, c, s, s2)
		})
	}
}

type wrapper struct {
	net.Conn
	inner net.Conn
}

func (w wrapper) NetConn() net.Conn { return w.inner }

// selfWrapper's NetConn returns itself: unwrapping must give up.
type selfWrapper struct{ net.Conn }

func (w *selfWrapper) NetConn() net.Conn { return w }

func TestEffectiveMSSUnwrap(t *testing.T) {
	skipUnlessClamp(t)
	skipUnlessLinux(t)
	d, err := pmtu.DialerWithMSS(nil, 1360)
	require.NoError(t, err)
	client, _ := dialPair(t, "tcp4", d)

	tlsConn := tls.Client(client, &tls.Config{InsecureSkipVerify: true})
	tests := []struct {
		name string
		conn net.Conn
	}{
		{name: "tls.Conn", conn: tlsConn},
		{name: "wrapped tls.Conn", conn: wrapper{Conn: tlsConn, inner: tlsConn}},
		{name: "wrapper of a wrapper", conn: wrapper{inner: wrapper{inner: client}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pmtu.EffectiveMSS(tt.conn)
			require.NoError(t, err)
			assert.Equal(t, 1348, got)
		})
	}
}

func TestEffectiveMSSNotTCP(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()

	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer udp.Close()
	udpConn, err := net.Dial("udp4", udp.LocalAddr().String())
	require.NoError(t, err)
	defer udpConn.Close()

	tests := []struct {
		name string
		conn net.Conn
	}{
		{name: "nil", conn: nil},
		{name: "net.Pipe", conn: c1},
		{name: "tls over net.Pipe", conn: tls.Client(c1, &tls.Config{})},
		{name: "UDP", conn: udpConn},
		{name: "wrapper returning itself", conn: &selfWrapper{Conn: c1}},
		{name: "wrapper returning nil", conn: wrapper{Conn: c1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pmtu.EffectiveMSS(tt.conn)
			assert.ErrorIs(t, err, pmtu.ErrNotTCP)
			_, err = pmtu.ReadTCPInfo(tt.conn)
			assert.ErrorIs(t, err, pmtu.ErrNotTCP)
		})
	}
}

func TestEffectiveMSSClosed(t *testing.T) {
	skipUnlessClamp(t)
	client, _ := dialPair(t, "tcp4", nil)
	require.NoError(t, client.Close())
	_, err := pmtu.EffectiveMSS(client)
	assert.Error(t, err)
	assert.NotErrorIs(t, err, pmtu.ErrNotTCP)
}

// selfSignedTLS returns a server config and a client config trusting it.
func selfSignedTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	server, client, err := testcert.Configs([]string{"localhost"}, 0)
	require.NoError(t, err)
	return server, client
}

// EffectiveMSS and ReadTCPInfo see through a *tls.Conn after a handshake,
// on both ends.
func TestEffectiveMSSTLS(t *testing.T) {
	skipUnlessClamp(t)
	skipUnlessLinux(t)
	serverConf, clientConf := selfSignedTLS(t)
	d, err := pmtu.DialerWithMTU(nil, 1400)
	require.NoError(t, err)
	client, server := dialPair(t, "tcp4", d)

	tlsServer := tls.Server(server, serverConf)
	errc := make(chan error, 1)
	go func() { errc <- tlsServer.Handshake() }()
	tlsClient := tls.Client(client, clientConf)
	require.NoError(t, tlsClient.Handshake())
	require.NoError(t, <-errc)

	for name, c := range map[string]net.Conn{"client": tlsClient, "server": tlsServer} {
		got, err := pmtu.EffectiveMSS(c)
		require.NoError(t, err, name)
		assert.Equal(t, 1348, got, name)
	}
}
