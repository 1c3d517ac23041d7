package fingerprint

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// offered returns what crypto/tls's ClientHello for cfg offers, as a
// server reads it, and the hello's record size.
func offered(t *testing.T, cfg *tls.Config) *tls.ClientHelloInfo {
	t.Helper()
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	go tls.Client(cc, cfg).Handshake()
	var hello *tls.ClientHelloInfo
	stop := errors.New("seen")
	err := tls.Server(sc, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		hello = h
		return nil, stop
	}}).Handshake()
	require.ErrorIs(t, err, stop)
	return hello
}

func TestStdConfigKeepsTheLaddersRules(t *testing.T) {
	cbc := tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA
	user := &tls.Config{
		ServerName:         "example.com",
		NextProtos:         []string{"h2"},
		MinVersion:         tls.VersionTLS10,
		CipherSuites:       []uint16{cbc, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
		ClientSessionCache: tls.NewLRUClientSessionCache(1),
	}
	o := OptionsFrom(user, "")
	cfg, ok := Ladder(false)[0].StdConfig(user, o)
	require.True(t, ok)
	assert.Equal(t, uint16(tls.VersionTLS10), user.MinVersion, "the caller's Config is not modified")
	assert.NotNil(t, user.ClientSessionCache)
	assert.Nil(t, cfg.ClientSessionCache, "no resumption")

	h := offered(t, cfg)
	assert.Equal(t, "example.com", h.ServerName)
	assert.Equal(t, []string{"h2"}, h.SupportedProtos)
	assert.Equal(t, []uint16{tls.VersionTLS13, tls.VersionTLS12}, h.SupportedVersions, "nothing below TLS 1.2")
	assert.NotContains(t, h.CipherSuites, cbc, "no CBC suite, though the Config lists one")
	assert.Contains(t, h.CipherSuites, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
	assert.Contains(t, h.SupportedCurves, tls.X25519MLKEM768)

	rec, err := StdHello(cfg)
	require.NoError(t, err)
	require.Greater(t, len(rec), 9)
	assert.Equal(t, []byte{22, 3, 1}, rec[:3], "a handshake record")
	assert.Equal(t, byte(1), rec[5], "a ClientHello")
	n := len(rec)
	assert.Equal(t, n, 5+(int(rec[3])<<8|int(rec[4])), "one whole record")
	pq, err := Ladder(false)[0].RecordSize(o)
	require.NoError(t, err)
	// crypto/tls's hello carries the same key shares, and a few
	// extensions more.
	assert.GreaterOrEqual(t, n, pq)
	assert.Less(t, n, pq+100)
}

func TestStdConfigOnlyForTheFullPostQuantumHello(t *testing.T) {
	o := Options{ServerName: "example.com"}
	for _, r := range Ladder(true)[1:] {
		_, ok := r.StdConfig(nil, o)
		assert.False(t, ok, r.Name)
	}
	full := Ladder(false)[0]
	_, ok := full.StdConfig(nil, o)
	assert.True(t, ok, "a nil Config")
	for name, c := range map[string]*tls.Config{
		"TLS 1.2 only":      {MaxVersion: tls.VersionTLS12},
		"no hybrid group":   {CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}},
		"hybrid, no X25519": {CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.CurveP256}},
		"ECH":               {EncryptedClientHelloConfigList: []byte{0}},
	} {
		_, ok := full.StdConfig(c, OptionsFrom(c, "example.com"))
		assert.False(t, ok, name)
	}
}

func TestHasPostQuantumShare(t *testing.T) {
	cfg, ok := Ladder(false)[0].StdConfig(nil, Options{ServerName: "example.com"})
	require.True(t, ok)
	hello, err := StdHello(cfg)
	require.NoError(t, err)
	assert.True(t, HasPostQuantumShare(hello))
	for n := range len(hello) {
		assert.False(t, HasPostQuantumShare(hello[:n]), "cut at %d", n) // and no panic
	}
	for _, r := range Ladder(true) {
		h, err := Build(r, nil, Options{ServerName: "example.com"})
		require.NoError(t, err)
		rec := append([]byte{22, 3, 1, byte(len(h.Conn.HandshakeState.Hello.Raw) >> 8), byte(len(h.Conn.HandshakeState.Hello.Raw))}, h.Conn.HandshakeState.Hello.Raw...)
		assert.Equal(t, h.PostQuantum, HasPostQuantumShare(rec), r.Name)
	}

	// The process can turn crypto/tls's share off; the check tells.
	t.Setenv("GODEBUG", "tlsmlkem=0")
	hello, err = StdHello(cfg)
	require.NoError(t, err)
	assert.False(t, HasPostQuantumShare(hello), "crypto/tls under tlsmlkem=0")
}
