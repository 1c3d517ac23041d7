package fitgrpc_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/fitshake/fitshake/examples/grpc/fitgrpc"
	"github.com/fitshake/fitshake/internal/testcert"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/credentials"
)

// tlsServer accepts TLS connections on loopback and completes their
// handshakes until the test ends.
func tlsServer(t *testing.T, cfg *tls.Config) string {
	ln, err := tls.Listen("tcp4", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					c.Read(make([]byte, 1))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// handshake runs the credentials' client handshake on addr as grpc would:
// its context dialer first.
func handshake(t *testing.T, creds credentials.TransportCredentials, authority, addr string) (net.Conn, credentials.AuthInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := fitgrpc.ContextDialer(ctx, addr)
	require.NoError(t, err)
	return creds.ClientHandshake(ctx, authority, raw)
}

func TestCredentials(t *testing.T) {
	leakCheck(t)
	scfg, ccfg, err := testcert.Configs([]string{"grpc.fitshake.test"}, 0)
	require.NoError(t, err)
	h2 := scfg.Clone()
	h2.NextProtos = []string{"h2"}
	addrH2, addrNoALPN := tlsServer(t, h2), tlsServer(t, scfg)
	d := &tlsdial.Dialer{Config: &tls.Config{RootCAs: ccfg.RootCAs}, Cache: &pmtu.Cache{}}

	t.Run("server name from the authority", func(t *testing.T) {
		conn, info, err := handshake(t, fitgrpc.Credentials(d), "grpc.fitshake.test:443", addrH2)
		require.NoError(t, err)
		defer conn.Close()
		ti, ok := info.(credentials.TLSInfo)
		require.True(t, ok, "%T", info)
		assert.Equal(t, "h2", ti.State.NegotiatedProtocol)
		assert.Equal(t, "grpc.fitshake.test", ti.State.ServerName)
		assert.Equal(t, credentials.PrivacyAndIntegrity, ti.SecurityLevel)
		assert.IsType(t, &tlsdial.Conn{}, conn)
		assert.Nil(t, d.Config.NextProtos, "the Dialer's Config is not modified")
	})
	t.Run("wrong authority", func(t *testing.T) {
		_, _, err := handshake(t, fitgrpc.Credentials(d), "other.fitshake.test:443", addrH2)
		var herr x509.HostnameError
		assert.True(t, errors.As(err, &herr), "%v", err)
	})
	t.Run("override server name", func(t *testing.T) {
		c := fitgrpc.Credentials(d)
		require.NoError(t, c.OverrideServerName("grpc.fitshake.test")) //nolint:staticcheck // what grpc still calls
		conn, _, err := handshake(t, c, "127.0.0.1:443", addrH2)
		require.NoError(t, err)
		conn.Close()
	})
	t.Run("no h2", func(t *testing.T) {
		_, _, err := handshake(t, fitgrpc.Credentials(d), "grpc.fitshake.test", addrNoALPN)
		assert.ErrorIs(t, err, fitgrpc.ErrNoH2)
	})
	t.Run("without the context dialer", func(t *testing.T) {
		raw, err := net.Dial("tcp4", addrH2)
		require.NoError(t, err)
		defer raw.Close()
		_, _, err = fitgrpc.Credentials(d).ClientHandshake(context.Background(), "grpc.fitshake.test:443", raw)
		assert.ErrorIs(t, err, fitgrpc.ErrNoDialer)
	})
	t.Run("server side", func(t *testing.T) {
		_, _, err := fitgrpc.Credentials(nil).ServerHandshake(nil)
		assert.Error(t, err)
		assert.Equal(t, "tls", fitgrpc.Credentials(nil).Info().SecurityProtocol)
	})
}
