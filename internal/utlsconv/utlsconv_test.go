package utlsconv

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"reflect"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/testcert"

	utls "github.com/refraction-networking/utls"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// notCarried lists the tls.Config fields Config deliberately drops, with the
// reason documented on Config.
var notCarried = map[string]bool{
	"ClientSessionCache":          true, // different types
	"NameToCertificate":           true, // server only
	"GetCertificate":              true,
	"GetConfigForClient":          true,
	"ClientAuth":                  true,
	"ClientCAs":                   true,
	"PreferServerCipherSuites":    true,
	"SessionTicketKey":            true,
	"UnwrapSession":               true,
	"WrapSession":                 true,
	"GetEncryptedClientHelloKeys": true,
	"EncryptedClientHelloKeys":    true,
}

// TestConfigCoversEveryField fails when crypto/tls grows a Config field that
// Config neither carries over nor documents as dropped.
func TestConfigCoversEveryField(t *testing.T) {
	ut := reflect.TypeFor[utls.Config]()
	for f := range reflect.TypeFor[tls.Config]().Fields() {
		if !f.IsExported() || notCarried[f.Name] {
			continue
		}
		_, ok := ut.FieldByName(f.Name)
		assert.Truef(t, ok, "tls.Config.%s has no utls counterpart; carry it over or document it as dropped", f.Name)
	}
}

func TestConfigNil(t *testing.T) {
	assert.Equal(t, &utls.Config{}, Config(nil))
}

func TestConfigFields(t *testing.T) {
	roots := x509.NewCertPool()
	now := func() time.Time { return time.Unix(1, 0) }
	var keylog bytes.Buffer
	errVPC := errors.New("vpc")
	in := &tls.Config{
		Rand:         rand.Reader,
		Time:         now,
		Certificates: []tls.Certificate{{Certificate: [][]byte{{1, 2}}, PrivateKey: "key", SupportedSignatureAlgorithms: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}, OCSPStaple: []byte{3}, SignedCertificateTimestamps: [][]byte{{4}}, Leaf: &x509.Certificate{}}},
		RootCAs:      roots,
		NextProtos:   []string{"h2", "http/1.1"},
		ServerName:   "example.com",
		VerifyPeerCertificate: func([][]byte, [][]*x509.Certificate) error {
			return errVPC
		},
		CipherSuites:                   []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		SessionTicketsDisabled:         true,
		MinVersion:                     tls.VersionTLS12,
		MaxVersion:                     tls.VersionTLS13,
		CurvePreferences:               []tls.CurveID{tls.X25519MLKEM768, tls.CurveP256},
		DynamicRecordSizingDisabled:    true,
		Renegotiation:                  tls.RenegotiateOnceAsClient,
		KeyLogWriter:                   &keylog,
		EncryptedClientHelloConfigList: []byte{9},
		ClientSessionCache:             tls.NewLRUClientSessionCache(1),
		InsecureSkipVerify:             true,
	}
	u := Config(in)

	tests := []struct {
		name      string
		got, want any
	}{
		{"Rand", u.Rand, in.Rand},
		{"Time", u.Time(), now()},
		{"Certificates", u.Certificates, []utls.Certificate{{Certificate: [][]byte{{1, 2}}, PrivateKey: "key", SupportedSignatureAlgorithms: []utls.SignatureScheme{utls.ECDSAWithP256AndSHA256}, OCSPStaple: []byte{3}, SignedCertificateTimestamps: [][]byte{{4}}, Leaf: in.Certificates[0].Leaf}}},
		{"RootCAs", u.RootCAs, roots},
		{"NextProtos", u.NextProtos, []string{"h2", "http/1.1"}},
		{"ServerName", u.ServerName, "example.com"},
		{"InsecureSkipVerify", u.InsecureSkipVerify, true},
		{"VerifyPeerCertificate", u.VerifyPeerCertificate(nil, nil), errVPC},
		{"CipherSuites", u.CipherSuites, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
		{"SessionTicketsDisabled", u.SessionTicketsDisabled, true},
		{"MinVersion", u.MinVersion, uint16(tls.VersionTLS12)},
		{"MaxVersion", u.MaxVersion, uint16(tls.VersionTLS13)},
		{"CurvePreferences", u.CurvePreferences, []utls.CurveID{utls.X25519MLKEM768, utls.CurveP256}},
		{"DynamicRecordSizingDisabled", u.DynamicRecordSizingDisabled, true},
		{"Renegotiation", u.Renegotiation, utls.RenegotiateOnceAsClient},
		{"KeyLogWriter", u.KeyLogWriter, io.Writer(&keylog)},
		{"EncryptedClientHelloConfigList", u.EncryptedClientHelloConfigList, []byte{9}},
		{"ClientSessionCache not carried", u.ClientSessionCache, nil},
		{"GetClientCertificate unset", u.GetClientCertificate == nil, true},
		{"VerifyConnection unset", u.VerifyConnection == nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.got)
		})
	}
}

// TestConfigDoesNotAlias checks that writes into the utls.Config (utls does
// write into its Config) never reach the caller's tls.Config, and back.
func TestConfigDoesNotAlias(t *testing.T) {
	in := &tls.Config{
		Certificates:                   []tls.Certificate{{Certificate: [][]byte{{1}}, SupportedSignatureAlgorithms: []tls.SignatureScheme{tls.PSSWithSHA256}, SignedCertificateTimestamps: [][]byte{{1}}, OCSPStaple: []byte{1}}},
		NextProtos:                     []string{"h2"},
		CipherSuites:                   []uint16{1},
		CurvePreferences:               []tls.CurveID{tls.X25519},
		EncryptedClientHelloConfigList: []byte{1},
	}
	u := Config(in)
	u.Certificates[0].Certificate[0] = nil
	u.Certificates[0].SupportedSignatureAlgorithms[0] = 0
	u.Certificates[0].SignedCertificateTimestamps[0] = nil
	u.Certificates[0].OCSPStaple[0] = 0
	u.NextProtos[0] = "x"
	u.CipherSuites[0] = 2
	u.CurvePreferences[0] = 0
	u.EncryptedClientHelloConfigList[0] = 0

	assert.Equal(t, [][]byte{{1}}, in.Certificates[0].Certificate)
	assert.Equal(t, []tls.SignatureScheme{tls.PSSWithSHA256}, in.Certificates[0].SupportedSignatureAlgorithms)
	assert.Equal(t, [][]byte{{1}}, in.Certificates[0].SignedCertificateTimestamps)
	assert.Equal(t, []byte{1}, in.Certificates[0].OCSPStaple)
	assert.Equal(t, []string{"h2"}, in.NextProtos)
	assert.Equal(t, []uint16{1}, in.CipherSuites)
	assert.Equal(t, []tls.CurveID{tls.X25519}, in.CurvePreferences)
	assert.Equal(t, []byte{1}, in.EncryptedClientHelloConfigList)
}

func TestGetClientCertificateWrapper(t *testing.T) {
	errNoCert := errors.New("no cert")
	leaf := &x509.Certificate{}
	tests := []struct {
		name    string
		ret     *tls.Certificate
		retErr  error
		want    *utls.Certificate
		wantErr error
	}{
		{name: "certificate", ret: &tls.Certificate{Certificate: [][]byte{{7}}, PrivateKey: "k", Leaf: leaf}, want: &utls.Certificate{Certificate: [][]byte{{7}}, PrivateKey: "k", Leaf: leaf}},
		{name: "nil becomes empty", ret: nil, want: &utls.Certificate{}},
		{name: "error", retErr: errNoCert, wantErr: errNoCert},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *tls.CertificateRequestInfo
			u := Config(&tls.Config{GetClientCertificate: func(ri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
				got = ri
				return tt.ret, tt.retErr
			}})
			ri := &utls.CertificateRequestInfo{AcceptableCAs: [][]byte{{1}}, SignatureSchemes: []utls.SignatureScheme{utls.Ed25519}, Version: utls.VersionTLS13}
			cert, err := u.GetClientCertificate(ri)
			require.ErrorIs(t, err, tt.wantErr)
			assert.Equal(t, tt.want, cert)
			assert.Equal(t, [][]byte{{1}}, got.AcceptableCAs)
			assert.Equal(t, []tls.SignatureScheme{tls.Ed25519}, got.SignatureSchemes)
			assert.Equal(t, uint16(tls.VersionTLS13), got.Version)
		})
	}
}

func TestCertificateRequestInfoContext(t *testing.T) {
	assert.Nil(t, CertificateRequestInfo(nil))
	ctx := context.WithValue(context.Background(), struct{}{}, "v")
	ri := &utls.CertificateRequestInfo{}
	require.True(t, setUnexported(ri, "ctx", ctx), "utls.CertificateRequestInfo lost its ctx field")
	assert.Equal(t, ctx, CertificateRequestInfo(ri).Context())
	assert.Nil(t, CertificateRequestInfo(&utls.CertificateRequestInfo{}).Context())
}

func TestSetUnexported(t *testing.T) {
	var s struct {
		n int
		f func() int
	}
	assert.True(t, setUnexported(&s, "n", 3))
	assert.Equal(t, 3, s.n)
	assert.True(t, setUnexported(&s, "f", func() int { return 4 }))
	assert.Equal(t, 4, s.f())
	assert.False(t, setUnexported(&s, "n", "wrong type"))
	assert.False(t, setUnexported(&s, "missing", 1))
}

func TestCurveIDNotYetKnown(t *testing.T) {
	assert.Equal(t, tls.CurveID(0), CurveID(nil))
	uc := utls.UClient(nil, &utls.Config{ServerName: "x"}, utls.HelloCustom)
	assert.Equal(t, tls.CurveID(0), CurveID(uc))
}

func TestConnectionStateZero(t *testing.T) {
	got := ConnectionState(utls.ConnectionState{})
	assert.Equal(t, tls.ConnectionState{}, got)
}

// TestConnectionStateCoversEveryField fails when crypto/tls grows a
// ConnectionState field that ConnectionState does not fill.
func TestConnectionStateCoversEveryField(t *testing.T) {
	// LocalCertificate (Go 1.27) is documented as left nil.
	filled := map[string]bool{"CurveID": true, "HelloRetryRequest": true, "LocalCertificate": true}
	ut := reflect.TypeFor[utls.ConnectionState]()
	for f := range reflect.TypeFor[tls.ConnectionState]().Fields() {
		if !f.IsExported() || filled[f.Name] {
			continue
		}
		_, ok := ut.FieldByName(f.Name)
		assert.Truef(t, ok, "tls.ConnectionState.%s is not converted", f.Name)
	}
	// The unexported utls fields read by ConnectionState must still exist.
	for _, name := range []string{"testingOnlyCurveID", "testingOnlyDidHRR", "ekm"} {
		_, ok := ut.FieldByName(name)
		assert.Truef(t, ok, "utls.ConnectionState.%s is gone", name)
	}
	_, ok := reflect.TypeFor[tls.ConnectionState]().FieldByName("ekm")
	assert.True(t, ok, "tls.ConnectionState.ekm is gone")
}

// TestHandshake runs real handshakes against crypto/tls servers and checks
// the converted state against what the server saw.
func TestHandshake(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name       string
		server     *tls.Config
		groups     []utls.CurveID // supported_groups; key share is the first
		wantVers   uint16
		wantCurve  tls.CurveID
		wantHRR    bool
		clientAuth bool
	}{
		{name: "TLS 1.3 X25519", server: &tls.Config{}, groups: []utls.CurveID{utls.X25519}, wantVers: tls.VersionTLS13, wantCurve: tls.X25519},
		{name: "TLS 1.3 HRR to P-256", server: &tls.Config{CurvePreferences: []tls.CurveID{tls.CurveP256}}, groups: []utls.CurveID{utls.X25519, utls.CurveP256}, wantVers: tls.VersionTLS13, wantCurve: tls.CurveP256, wantHRR: true},
		{name: "TLS 1.2 X25519", server: &tls.Config{MaxVersion: tls.VersionTLS12}, groups: []utls.CurveID{utls.X25519}, wantVers: tls.VersionTLS12, wantCurve: tls.X25519},
		{name: "TLS 1.2 P-256", server: &tls.Config{MaxVersion: tls.VersionTLS12, CurvePreferences: []tls.CurveID{tls.CurveP256}}, groups: []utls.CurveID{utls.X25519, utls.CurveP256}, wantVers: tls.VersionTLS12, wantCurve: tls.CurveP256},
		{name: "TLS 1.3 client certificate", server: &tls.Config{ClientAuth: tls.RequireAnyClientCert}, groups: []utls.CurveID{utls.X25519}, wantVers: tls.VersionTLS13, wantCurve: tls.X25519, clientAuth: true},
		{name: "TLS 1.2 client certificate", server: &tls.Config{MaxVersion: tls.VersionTLS12, ClientAuth: tls.RequireAnyClientCert}, groups: []utls.CurveID{utls.X25519}, wantVers: tls.VersionTLS12, wantCurve: tls.X25519, clientAuth: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srvCfg := tt.server.Clone()
			srvCfg.Certificates = []tls.Certificate{ca.leaf}
			srvCfg.NextProtos = []string{"h2"}

			var verified tls.ConnectionState
			var gotCRI *tls.CertificateRequestInfo
			var criCtxErr error
			cliCfg := &tls.Config{
				RootCAs:    ca.pool,
				ServerName: "server.test",
				NextProtos: []string{"h2", "http/1.1"},
				VerifyConnection: func(s tls.ConnectionState) error {
					verified = s
					return nil
				},
			}
			if tt.clientAuth {
				cliCfg.GetClientCertificate = func(ri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
					gotCRI = ri
					if ri.Context() == nil {
						criCtxErr = errors.New("nil context")
					} else {
						criCtxErr = ri.Context().Err()
					}
					return &ca.leaf, nil
				}
			}

			cliConn, srvConn := testcert.TCPPair(t)
			defer cliConn.Close()
			srv := tls.Server(srvConn, srvCfg)
			defer srv.Close()
			srvErr := make(chan error, 1)
			go func() { srvErr <- srv.Handshake() }()

			uc := utls.UClient(cliConn, Config(cliCfg), utls.HelloCustom)
			require.NoError(t, uc.ApplyPreset(testSpec(tt.groups)))
			require.NoError(t, uc.HandshakeContext(context.Background()))
			require.NoError(t, <-srvErr)

			got := ConnectionState(uc.ConnectionState())
			want := srv.ConnectionState()
			assert.Equal(t, tt.wantVers, got.Version)
			assert.Equal(t, want.Version, got.Version)
			assert.True(t, got.HandshakeComplete)
			assert.False(t, got.DidResume)
			assert.Equal(t, want.CipherSuite, got.CipherSuite)
			assert.Equal(t, tt.wantCurve, got.CurveID)
			assert.Equal(t, want.CurveID, got.CurveID)
			assert.Equal(t, tt.wantHRR, got.HelloRetryRequest)
			assert.Equal(t, want.HelloRetryRequest, got.HelloRetryRequest)
			assert.Equal(t, "h2", got.NegotiatedProtocol)
			assert.True(t, got.NegotiatedProtocolIsMutual)
			assert.Equal(t, "server.test", got.ServerName)
			require.Len(t, got.PeerCertificates, 1)
			assert.Equal(t, ca.leaf.Certificate[0], got.PeerCertificates[0].Raw)
			require.Len(t, got.VerifiedChains, 1)
			assert.Len(t, got.VerifiedChains[0], 2)
			assert.Equal(t, want.TLSUnique, got.TLSUnique)
			assert.False(t, got.ECHAccepted)

			if tt.wantVers == tls.VersionTLS13 {
				assert.Equal(t, tt.wantCurve, CurveID(uc))
			} else {
				assert.Equal(t, tls.CurveID(0), CurveID(uc), "TLS 1.2 has no ServerHello key share")
			}

			// The converted state exports the same keying material as the server.
			wantEKM, err := want.ExportKeyingMaterial("EXPORTER-test", []byte("ctx"), 32)
			require.NoError(t, err)
			gotEKM, err := got.ExportKeyingMaterial("EXPORTER-test", []byte("ctx"), 32)
			require.NoError(t, err)
			assert.Equal(t, wantEKM, gotEKM)

			// VerifyConnection saw the converted state during the handshake.
			assert.Equal(t, got.Version, verified.Version)
			assert.Equal(t, got.CipherSuite, verified.CipherSuite)
			assert.Equal(t, got.PeerCertificates, verified.PeerCertificates)

			if tt.clientAuth {
				require.NotNil(t, gotCRI)
				assert.Equal(t, tt.wantVers, gotCRI.Version)
				assert.NotEmpty(t, gotCRI.SignatureSchemes)
				assert.NoError(t, criCtxErr, "handshake context must be live in GetClientCertificate")
				require.Len(t, want.PeerCertificates, 1)
				assert.Equal(t, ca.leaf.Certificate[0], want.PeerCertificates[0].Raw)
			}
		})
	}
}

func TestVerifyConnectionError(t *testing.T) {
	ca := newTestCA(t)
	errReject := errors.New("rejected")
	cliConn, srvConn := testcert.TCPPair(t)
	defer cliConn.Close()
	srv := tls.Server(srvConn, &tls.Config{Certificates: []tls.Certificate{ca.leaf}})
	defer srv.Close()
	go func() { _ = srv.Handshake() }()

	uc := utls.UClient(cliConn, Config(&tls.Config{
		RootCAs: ca.pool, ServerName: "server.test",
		VerifyConnection: func(tls.ConnectionState) error { return errReject },
	}), utls.HelloCustom)
	require.NoError(t, uc.ApplyPreset(testSpec([]utls.CurveID{utls.X25519})))
	err := uc.Handshake()
	require.ErrorIs(t, err, errReject)
}

func testSpec(groups []utls.CurveID) *utls.ClientHelloSpec {
	return &utls.ClientHelloSpec{
		CipherSuites: []uint16{
			utls.TLS_AES_128_GCM_SHA256,
			utls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		},
		CompressionMethods: []uint8{0},
		Extensions: []utls.TLSExtension{
			&utls.SNIExtension{},
			&utls.SupportedCurvesExtension{Curves: groups},
			&utls.SupportedPointsExtension{SupportedPoints: []uint8{0}},
			&utls.SignatureAlgorithmsExtension{SupportedSignatureAlgorithms: []utls.SignatureScheme{utls.ECDSAWithP256AndSHA256, utls.PSSWithSHA256}},
			&utls.ALPNExtension{AlpnProtocols: []string{"h2", "http/1.1"}},
			&utls.ExtendedMasterSecretExtension{},
			&utls.RenegotiationInfoExtension{Renegotiation: utls.RenegotiateNever}, // OnceAsClient would overwrite Config.Renegotiation and disable ExportKeyingMaterial
			&utls.KeyShareExtension{KeyShares: []utls.KeyShare{{Group: groups[0]}}},
			&utls.PSKKeyExchangeModesExtension{Modes: []uint8{utls.PskModeDHE}},
			&utls.SupportedVersionsExtension{Versions: []uint16{utls.VersionTLS13, utls.VersionTLS12}},
		},
	}
}

type testCA struct {
	pool *x509.CertPool
	leaf tls.Certificate // for server.test, signed by the CA
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "utlsconv test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "server.test"},
		DNSNames:     []string{"server.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return testCA{pool: pool, leaf: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}
