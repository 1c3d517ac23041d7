package fingerprint

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"slices"
	"testing"

	utls "github.com/refraction-networking/utls"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type testServer struct {
	name  string
	cfg   func() *tls.Config
	tls12 bool        // TLS 1.2 only
	curve tls.CurveID // the only group it accepts; 0: any
}

func testServers() []testServer {
	p := pki()
	with := func(leaf tls.Certificate, maxVersion uint16, curves ...tls.CurveID) func() *tls.Config {
		return func() *tls.Config {
			return &tls.Config{
				Certificates:     []tls.Certificate{leaf},
				NextProtos:       []string{"h2", "http/1.1"},
				MaxVersion:       maxVersion,
				CurvePreferences: curves,
			}
		}
	}
	return []testServer{
		{name: "ecdsa-tls13", cfg: with(p.ecdsaLeaf, 0)},
		{name: "rsa-tls13", cfg: with(p.rsaLeaf, 0)},
		{name: "ecdsa-tls12", cfg: with(p.ecdsaLeaf, tls.VersionTLS12), tls12: true},
		{name: "rsa-tls12", cfg: with(p.rsaLeaf, tls.VersionTLS12), tls12: true},
		{name: "p256only-tls13", cfg: with(p.ecdsaLeaf, 0, tls.CurveP256), curve: tls.CurveP256},
		{name: "p256only-tls12", cfg: with(p.rsaLeaf, tls.VersionTLS12, tls.CurveP256), tls12: true, curve: tls.CurveP256},
		{name: "p384only-tls13", cfg: with(p.ecdsaLeaf, 0, tls.CurveP384), curve: tls.CurveP384},
		{name: "p384only-tls12", cfg: with(p.ecdsaLeaf, tls.VersionTLS12, tls.CurveP384), tls12: true, curve: tls.CurveP384},
		{name: "p521only-tls13", cfg: with(p.rsaLeaf, 0, tls.CurveP521), curve: tls.CurveP521},
	}
}

// clientConfigs are the client option sets of the handshake matrix.
var clientConfigs = []struct {
	name   string
	o      Options
	p256   bool // offers P-256 (CurvePreferences without X25519)
	min13  bool
	max12  bool
	wantPQ bool // a post-quantum rung negotiates X25519MLKEM768 with a TLS 1.3 server
}{
	{name: "default", o: Options{ServerName: testServerName, NextProtos: h2}, wantPQ: true},
	{name: "min1.3", o: Options{ServerName: testServerName, NextProtos: h2, MinVersion: tls.VersionTLS13}, min13: true, wantPQ: true},
	{name: "max1.2", o: Options{ServerName: testServerName, NextProtos: h2, MaxVersion: tls.VersionTLS12}, max12: true},
	// Without X25519 there is no post-quantum share either (utls pairs them).
	{name: "curves-pq-p256", o: Options{ServerName: testServerName, NextProtos: h2, CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.CurveP256}}, p256: true},
}

// TestHandshakeMatrix completes every rung against crypto/tls servers with
// ECDSA and RSA certificates, TLS 1.3 and TLS 1.2 only, and accepting only
// P-256, P-384 or P-521 (a TLS 1.3 one asks for the share with a
// HelloRetryRequest), verifying the certificate, and checks that the first
// Write on the wire is exactly the measured record.
func TestHandshakeMatrix(t *testing.T) {
	for _, r := range Ladder(true) {
		for _, srv := range testServers() {
			for _, cc := range clientConfigs {
				t.Run(r.Name+"/"+srv.name+"/"+cc.name, func(t *testing.T) {
					h, err := Build(r, clientConfig(pki().roots), cc.o)
					require.NoError(t, err)
					first := record(h)
					res := handshake(t, h, srv.cfg())

					// What goes on the wire first is exactly the measured record.
					require.Len(t, res.firstWrite, h.RecordSize, "first Write")
					assert.Equal(t, first[5:], res.firstWrite[5:])

					switch {
					case cc.min13 && srv.tls12:
						// Never below MinVersion.
						require.Error(t, res.clientErr)
						assert.ErrorContains(t, res.serverErr, "unsupported versions")
						return
					case srv.curve != 0 && cc.o.CurvePreferences != nil && !slices.Contains(cc.o.CurvePreferences, srv.curve):
						// No group in common, as with crypto/tls.
						require.Error(t, res.clientErr)
						require.Error(t, res.serverErr)
						return
					}
					require.NoError(t, res.clientErr)
					require.NoError(t, res.serverErr)
					checkNegotiated(t, r, srv, cc.wantPQ, cc.max12, cc.p256, res)
				})
			}
		}
	}
}

// checkNegotiated checks what a completed handshake of rung r with srv
// agreed on: version, group (and whether it took a HelloRetryRequest),
// ALPN, SNI, a verified chain, an AEAD suite and working keys.
func checkNegotiated(t *testing.T, r Rung, srv testServer, wantPQ, max12, p256 bool, res result) {
	t.Helper()
	wantVers := uint16(tls.VersionTLS13)
	if srv.tls12 || max12 {
		wantVers = tls.VersionTLS12
	}
	share := tls.X25519 // the client's classical share
	if p256 {
		share = tls.CurveP256
	}
	wantCurve := share
	switch {
	case srv.curve != 0:
		wantCurve = srv.curve
	case r.PostQuantum && wantPQ && wantVers == tls.VersionTLS13:
		wantCurve = tls.X25519MLKEM768
	}
	assert.Equal(t, wantVers, res.client.Version)
	assert.Equal(t, wantCurve, res.server.CurveID)
	assert.Equal(t, wantVers == tls.VersionTLS13 && wantCurve != share && wantCurve != tls.X25519MLKEM768,
		res.server.HelloRetryRequest, "HelloRetryRequest")
	assert.Equal(t, "h2", res.client.NegotiatedProtocol)
	assert.Equal(t, "h2", res.server.NegotiatedProtocol)
	assert.Equal(t, testServerName, res.server.ServerName, "SNI")
	assert.False(t, res.client.DidResume)
	require.NotEmpty(t, res.client.VerifiedChains, "certificate verified")
	assert.Len(t, res.client.VerifiedChains[0], 2)
	assert.Contains(t, append(aeadSuites13, aeadSuites12...), res.client.CipherSuite)

	// Keying material export works (Build keeps the Config's
	// RenegotiateNever).
	a, err := res.server.ExportKeyingMaterial("EXPORTER-fitshake", nil, 16)
	require.NoError(t, err)
	b, err := res.client.ExportKeyingMaterial("EXPORTER-fitshake", nil, 16)
	require.NoError(t, err)
	assert.Equal(t, a, b)
}

// TestVerification checks that every rung verifies the server certificate:
// a wrong name and an unknown CA fail, an IP address is verified without SNI.
func TestVerification(t *testing.T) {
	p := pki()
	tests := []struct {
		name    string
		roots   *x509.CertPool
		server  string
		wantErr func(error) bool // nil: success
	}{
		{name: "ok", roots: p.roots, server: testServerName},
		{name: "wrong name", roots: p.roots, server: "other.test", wantErr: isHostnameError},
		{name: "unknown CA", roots: p.otherRoots, server: testServerName, wantErr: isUnknownAuthority},
		{name: "IP, no SNI", roots: p.roots, server: "127.0.0.1"},
		{name: "wrong IP", roots: p.roots, server: "127.0.0.2", wantErr: isHostnameError},
	}
	for _, r := range Ladder(true) {
		for _, srv := range testServers()[:4] {
			for _, tt := range tests {
				t.Run(r.Name+"/"+srv.name+"/"+tt.name, func(t *testing.T) {
					cfg := &utls.Config{RootCAs: tt.roots}
					h, err := Build(r, cfg, Options{ServerName: tt.server, NextProtos: h2})
					require.NoError(t, err)
					assert.Equal(t, tt.server, cfg.ServerName, "Build sets the name to verify")
					res := handshake(t, h, srv.cfg())
					if tt.wantErr == nil {
						require.NoError(t, res.clientErr)
						require.NotEmpty(t, res.client.VerifiedChains)
						if tt.server == "127.0.0.1" {
							assert.Empty(t, res.server.ServerName, "no SNI for an IP")
						}
						return
					}
					require.Error(t, res.clientErr)
					assert.True(t, tt.wantErr(res.clientErr), "%v", res.clientErr)
				})
			}
		}
	}
}

// TestSessionCache checks utls trap 6: sequential connections whose Configs
// (fresh clones) share a ClientSessionCache neither panic nor resume, and the
// hello keeps its measured size. Without psk_key_exchange_modes, TLS 1.3
// servers issue no ticket at all.
func TestSessionCache(t *testing.T) {
	base := clientConfig(pki().roots)
	base.ClientSessionCache = utls.NewLRUClientSessionCache(8)
	for _, r := range Ladder(true) {
		for _, srv := range testServers()[:4] {
			t.Run(r.Name+"/"+srv.name, func(t *testing.T) {
				srvCfg := srv.cfg()
				for i := range 3 {
					h, err := Build(r, base.Clone(), Options{ServerName: testServerName, NextProtos: h2})
					require.NoError(t, err)
					res := handshake(t, h, srvCfg)
					require.NoError(t, res.clientErr, "connection %d", i)
					require.NoError(t, res.serverErr)
					assert.False(t, res.client.DidResume)
					assert.Len(t, res.firstWrite, h.RecordSize)
					if !srv.tls12 {
						_, ok := base.ClientSessionCache.Get(testServerName)
						assert.False(t, ok, "no TLS 1.3 ticket issued")
					}
				}
			})
		}
	}
}

// TestBuildRenegotiation checks that the Config's renegotiation setting
// survives Build (utls copies the spec's into the Config).
func TestBuildRenegotiation(t *testing.T) {
	for _, reneg := range []utls.RenegotiationSupport{utls.RenegotiateNever, utls.RenegotiateOnceAsClient, utls.RenegotiateFreelyAsClient} {
		cfg := &utls.Config{Renegotiation: reneg}
		_, err := Build(rungPostQuantum, cfg, Options{ServerName: "example.com"})
		require.NoError(t, err)
		assert.Equal(t, reneg, cfg.Renegotiation)
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name    string
		r       Rung
		cfg     *utls.Config
		o       Options
		wantErr error
		wantMsg string
	}{
		{name: "zero rung", r: Rung{}, o: Options{ServerName: "a"}, wantErr: errZeroRung},
		{name: "ECH", r: rungPostQuantum, cfg: &utls.Config{EncryptedClientHelloConfigList: []byte{1}}, o: Options{ServerName: "a"}, wantErr: errECH},
		{name: "max version", r: rungPostQuantum, o: Options{ServerName: "a", MaxVersion: tls.VersionTLS11}, wantErr: errMaxVersion},
		{name: "too large", r: rungClassical, o: Options{ServerName: "a", NextProtos: manyProtos(100, 200)}, wantMsg: "does not fit one TLS record"},
		{name: "no name, verifying", r: rungClassical, cfg: &utls.Config{}, o: Options{}, wantMsg: "ServerName"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := Build(tt.r, tt.cfg, tt.o)
			require.Error(t, err)
			assert.Nil(t, h)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
			}
			assert.Contains(t, err.Error(), "fingerprint: ")
			assert.Contains(t, err.Error(), tt.wantMsg)
		})
	}
}

func manyProtos(n, l int) []string {
	p := make([]string, n)
	for i := range p {
		b := make([]byte, l)
		for j := range b {
			b[j] = 'a' + byte(i%26)
		}
		p[i] = string(b)
	}
	return p
}

func isHostnameError(err error) bool {
	var e x509.HostnameError
	return errors.As(err, &e)
}

func isUnknownAuthority(err error) bool {
	var e x509.UnknownAuthorityError
	return errors.As(err, &e)
}
