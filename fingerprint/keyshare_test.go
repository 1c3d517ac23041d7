package fingerprint

import (
	"crypto/mlkem"
	"crypto/tls"
	"errors"
	"testing"

	utls "github.com/refraction-networking/utls"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wireShares returns the key share data of the ClientHello on the wire, by
// group.
func wireShares(t *testing.T, record []byte) map[utls.CurveID][]byte {
	t.Helper()
	msg, _ := parseHello(t, record)
	out := map[utls.CurveID][]byte{}
	for _, ks := range msg.KeyShares {
		out[ks.Group] = ks.Data
	}
	return out
}

// TestSharedX25519Key checks that a post-quantum hello uses one X25519 key
// for its X25519MLKEM768 and X25519 shares, as crypto/tls does: the same
// public key bytes in both shares on the wire, the private key utls holds
// for each matching them, a fresh key on every connection, and handshakes
// that complete whichever group the server picks, TLS 1.2 included.
func TestSharedX25519Key(t *testing.T) {
	p := pki()
	server := func(maxVersion uint16, curves ...tls.CurveID) func() *tls.Config {
		return func() *tls.Config {
			return &tls.Config{
				Certificates:     []tls.Certificate{p.ecdsaLeaf},
				NextProtos:       h2,
				MaxVersion:       maxVersion,
				CurvePreferences: curves,
			}
		}
	}
	tests := []struct {
		name      string
		server    func() *tls.Config
		wantVers  uint16
		wantCurve tls.CurveID
	}{
		// Go servers ignore the order of CurvePreferences and prefer the
		// hybrid group whenever they enable it.
		{name: "default server", server: server(0), wantVers: tls.VersionTLS13, wantCurve: tls.X25519MLKEM768},
		{name: "X25519MLKEM768-only server", server: server(0, tls.X25519MLKEM768), wantVers: tls.VersionTLS13, wantCurve: tls.X25519MLKEM768},
		{name: "X25519-only server", server: server(0, tls.X25519), wantVers: tls.VersionTLS13, wantCurve: tls.X25519},
		{name: "TLS 1.2 server", server: server(tls.VersionTLS12), wantVers: tls.VersionTLS12, wantCurve: tls.X25519},
	}
	seen := map[string]string{} // X25519 public key → test that used it
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range 3 {
				h, err := Build(rungPostQuantum, clientConfig(p.roots), Options{ServerName: testServerName, NextProtos: h2})
				require.NoError(t, err)
				require.True(t, h.PostQuantum)

				shares := wireShares(t, record(h))
				require.Len(t, shares, 2)
				hybrid, x25519 := shares[utls.X25519MLKEM768], shares[utls.X25519]
				require.Len(t, hybrid, mlkem.EncapsulationKeySize768+32)
				require.Len(t, x25519, 32)
				assert.Equal(t, x25519, hybrid[mlkem.EncapsulationKeySize768:], "one X25519 public key in both shares")

				keys := h.Conn.HandshakeState.State13.KeyShareKeys
				require.NotNil(t, keys)
				require.NotNil(t, keys.Ecdhe)
				assert.Same(t, keys.Ecdhe, keys.MlkemEcdhe, "one X25519 private key for both shares")
				assert.Equal(t, x25519, keys.Ecdhe.PublicKey().Bytes())
				require.NotNil(t, keys.Mlkem)
				assert.Equal(t, hybrid[:mlkem.EncapsulationKeySize768], keys.Mlkem.EncapsulationKey().Bytes())

				key := string(x25519)
				require.NotContains(t, seen, key, "X25519 key reused (connection %d of %q, first used by %q)", i, tt.name, seen[key])
				seen[key] = tt.name

				res := handshake(t, h, tt.server())
				require.NoError(t, res.clientErr)
				require.NoError(t, res.serverErr)
				assert.Equal(t, tt.wantVers, res.client.Version)
				assert.Equal(t, tt.wantCurve, res.server.CurveID)
				assert.False(t, res.server.HelloRetryRequest)
				require.NotEmpty(t, res.client.VerifiedChains, "certificate verified")
				a, err := res.server.ExportKeyingMaterial("EXPORTER-fitshake", nil, 16)
				require.NoError(t, err)
				b, err := res.client.ExportKeyingMaterial("EXPORTER-fitshake", nil, 16)
				require.NoError(t, err)
				assert.Equal(t, a, b, "same keys on both sides")
			}
		})
	}
}

// TestSharedX25519KeyFreshMLKEM checks that the ML-KEM key, too, is new on
// every hello.
func TestSharedX25519KeyFreshMLKEM(t *testing.T) {
	o := Options{ServerName: testServerName, NextProtos: h2}
	seen := map[string]bool{}
	for range 8 {
		h, err := Build(rungPostQuantum, &utls.Config{}, o)
		require.NoError(t, err)
		hybrid := wireShares(t, record(h))[utls.X25519MLKEM768]
		require.NotEmpty(t, hybrid)
		require.False(t, seen[string(hybrid)], "hybrid share reused")
		seen[string(hybrid)] = true
	}
}

// TestShareX25519OnlyWithBothShares checks that hellos without both the
// hybrid and the X25519 share keep utls's own key generation.
func TestShareX25519OnlyWithBothShares(t *testing.T) {
	tests := []struct {
		name string
		r    Rung
		o    Options
	}{
		{name: "classical", r: rungClassical, o: Options{ServerName: testServerName}},
		{name: "P-256", r: rungPostQuantum, o: Options{ServerName: testServerName, CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.CurveP256}}},
		{name: "TLS 1.2 only", r: rungPostQuantum, o: Options{ServerName: testServerName, MaxVersion: tls.VersionTLS12}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.r.Spec(tt.o)
			require.NotNil(t, spec)
			if ks := keyShareExtension(spec); ks != nil {
				keys, err := shareX25519(ks, configRand(&utls.Config{}))
				require.NoError(t, err)
				assert.Nil(t, keys)
				for _, s := range ks.KeyShares {
					assert.Empty(t, s.Data, "%v share filled", s.Group)
				}
			}
			h, err := Build(tt.r, &utls.Config{}, tt.o)
			require.NoError(t, err)
			assert.False(t, h.PostQuantum)
			keys := h.Conn.HandshakeState.State13.KeyShareKeys
			require.NotNil(t, keys)
			assert.Nil(t, keys.Mlkem)
			assert.Nil(t, keys.MlkemEcdhe)
		})
	}
}

type failingReader struct{}

var errNoEntropy = errors.New("no entropy")

func (failingReader) Read([]byte) (int, error) { return 0, errNoEntropy }

// TestBuildRandError checks that a failing Config.Rand fails Build, as it
// fails utls's own key generation.
func TestBuildRandError(t *testing.T) {
	_, err := Build(rungPostQuantum, &utls.Config{Rand: failingReader{}}, Options{ServerName: testServerName})
	require.ErrorIs(t, err, errNoEntropy)
	assert.Contains(t, err.Error(), "fingerprint: ")
}

// TestAgainReusesTheKeyShares checks that Again builds the same rung for
// another connection with the first hello's key shares — the same bytes on
// the wire, the same private keys — and a fresh random, and that both
// handshakes complete, the later hello's first, whichever group the server
// picks; a rung without post-quantum shares gets new keys.
func TestAgainReusesTheKeyShares(t *testing.T) {
	p := pki()
	o := Options{ServerName: testServerName, NextProtos: h2}
	for _, curves := range [][]tls.CurveID{nil, {tls.X25519}} {
		h1, err := Build(rungPostQuantum, clientConfig(p.roots), o)
		require.NoError(t, err)
		again, err := h1.Again(clientConfig(p.roots), o)
		require.NoError(t, err)
		assert.Equal(t, h1.RecordSize, again.RecordSize)
		assert.Equal(t, wireShares(t, record(h1)), wireShares(t, record(again)), "the same key shares")
		assert.Same(t, h1.Conn.HandshakeState.State13.KeyShareKeys, again.Conn.HandshakeState.State13.KeyShareKeys)
		assert.NotEqual(t, h1.Conn.HandshakeState.Hello.Random, again.Conn.HandshakeState.Hello.Random, "a fresh random")
		srv := &tls.Config{Certificates: []tls.Certificate{p.ecdsaLeaf}, NextProtos: h2, CurvePreferences: curves}
		for _, h := range []*Hello{again, h1} {
			res := handshake(t, h, srv)
			require.NoError(t, res.clientErr)
			require.NoError(t, res.serverErr)
		}
	}
	c1, err := Build(rungClassical, &utls.Config{}, o)
	require.NoError(t, err)
	c2, err := c1.Again(&utls.Config{}, o)
	require.NoError(t, err)
	assert.NotEqual(t, wireShares(t, record(c1)), wireShares(t, record(c2)), "classical: new keys")
}
