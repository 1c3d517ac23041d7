package fingerprint

import (
	"crypto/tls"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	utls "github.com/refraction-networking/utls"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// versionConfigs are the version bounds every rule is checked under.
var versionConfigs = []struct {
	name     string
	min, max uint16
	want     []uint16 // supported versions offered, highest first
}{
	{name: "default", want: []uint16{tls.VersionTLS13, tls.VersionTLS12}},
	{name: "min1.0", min: tls.VersionTLS10, want: []uint16{tls.VersionTLS13, tls.VersionTLS12}},
	{name: "1.2-1.3", min: tls.VersionTLS12, max: tls.VersionTLS13, want: []uint16{tls.VersionTLS13, tls.VersionTLS12}},
	{name: "min1.3", min: tls.VersionTLS13, want: []uint16{tls.VersionTLS13}},
	{name: "max1.2", max: tls.VersionTLS12, want: []uint16{tls.VersionTLS12}},
	{name: "max-future", max: 0x0305, want: []uint16{tls.VersionTLS13, tls.VersionTLS12}},
}

var h2 = []string{"h2", "http/1.1"}

func TestLadder(t *testing.T) {
	tests := []struct {
		name           string
		allowClassical bool
		wantNames      []string
		wantPQ         []bool
	}{
		{name: "post-quantum only", allowClassical: false, wantNames: []string{"pq", "pq-compact"}, wantPQ: []bool{true, true}},
		{name: "with classical", allowClassical: true, wantNames: []string{"pq", "pq-compact", "classical"}, wantPQ: []bool{true, true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := Ladder(tt.allowClassical)
			var names []string
			var pq []bool
			for _, r := range l {
				names = append(names, r.Name)
				pq = append(pq, r.PostQuantum)
			}
			assert.Equal(t, tt.wantNames, names)
			assert.Equal(t, tt.wantPQ, pq)

			// Largest first, for every version config that offers TLS
			// 1.3 (with TLS 1.2 only no rung is post-quantum, and the
			// compact one is the smallest: callers skip what is not
			// smaller).
			for _, vc := range versionConfigs {
				if vc.want[0] != tls.VersionTLS13 {
					continue
				}
				o := Options{ServerName: "example.com", NextProtos: h2, MinVersion: vc.min, MaxVersion: vc.max}
				prev := 1 << 30
				for _, r := range l {
					n, err := r.RecordSize(o)
					require.NoError(t, err)
					assert.Less(t, n, prev, "%s/%s", vc.name, r.Name)
					prev = n
				}
			}

			// A new slice every call.
			l[0].Name = "changed"
			assert.Equal(t, "pq", Ladder(tt.allowClassical)[0].Name)
		})
	}
}

// TestClassicalFitsSmallMSS checks the point of the classical rung: one TCP
// segment even at MSS 536, for any name up to 253 bytes.
func TestClassicalFitsSmallMSS(t *testing.T) {
	for _, vc := range versionConfigs {
		for n := 0; n <= 253; n++ {
			o := Options{ServerName: strings.Repeat("a", n), NextProtos: h2, MinVersion: vc.min, MaxVersion: vc.max}
			size, err := rungClassical.RecordSize(o)
			require.NoError(t, err)
			require.LessOrEqual(t, size, 536, "%s, name of %d bytes", vc.name, n)
		}
	}
}

// TestSpecIsFresh checks utls trap 7: a spec must never be reused, so two
// calls must not share anything utls writes into.
func TestSpecIsFresh(t *testing.T) {
	o := Options{ServerName: "example.com", NextProtos: h2}
	for _, r := range Ladder(true) {
		a, b := r.Spec(o), r.Spec(o)
		require.NotNil(t, a)
		require.NotSame(t, a, b)
		assert.Equal(t, a.CipherSuites, b.CipherSuites)
		assert.Len(t, b.Extensions, len(a.Extensions))
		assert.NotSame(t, &a.CipherSuites[0], &b.CipherSuites[0])
		for i := range a.Extensions {
			if reflect.TypeOf(a.Extensions[i]).Elem().Size() > 0 { // empty structs may share an address
				assert.NotSame(t, a.Extensions[i], b.Extensions[i], "%s extension %d shared", r.Name, i)
			}
			if ks, ok := a.Extensions[i].(*utls.KeyShareExtension); ok {
				assert.NotSame(t, &ks.KeyShares[0], &b.Extensions[i].(*utls.KeyShareExtension).KeyShares[0])
			}
		}
		// Nor with the caller's options.
		alpn := a.Extensions[slices.IndexFunc(a.Extensions, func(e utls.TLSExtension) bool {
			_, ok := e.(*utls.ALPNExtension)
			return ok
		})].(*utls.ALPNExtension)
		alpn.AlpnProtocols[0] = "changed"
		assert.Equal(t, "h2", o.NextProtos[0])
	}
}

// TestBuildReusesRungConcurrently builds many hellos from the same rungs at
// once (run with -race): nothing is shared between connections.
func TestBuildReusesRungConcurrently(t *testing.T) {
	o := Options{ServerName: "example.com", NextProtos: h2}
	var wg sync.WaitGroup
	for range 8 {
		for _, r := range Ladder(true) {
			wg.Go(func() {
				h, err := Build(r, &utls.Config{}, o)
				if assert.NoError(t, err) {
					want, _ := r.RecordSize(o)
					assert.Equal(t, want, h.RecordSize)
				}
			})
		}
	}
	wg.Wait()
}

var (
	aeadSuites13 = []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256}
	aeadSuites12 = []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
)

// Extension code points, from the IANA registry.
const (
	extSNI             = 0
	extStatusRequest   = 5
	extGroups          = 10
	extPointFormats    = 11
	extSigAlgs         = 13
	extALPN            = 16
	extSCT             = 18
	extPadding         = 21
	extEMS             = 23
	extSessionTicket   = 35
	extPSK             = 41
	extEarlyData       = 42
	extVersions        = 43
	extPSKModes        = 45
	extRenegotiation   = 0xff01
	extECH             = 0xfe0d
	extSigAlgsCert     = 50
	extRecordSizeLimit = 28
)

// TestRungRules checks each rule of the product issue on the bytes each rung
// builds, parsed by both utls and crypto/tls, under every version config.
func TestRungRules(t *testing.T) {
	for _, r := range Ladder(true) {
		for _, vc := range versionConfigs {
			t.Run(r.Name+"/"+vc.name, func(t *testing.T) {
				o := Options{ServerName: "example.com", NextProtos: h2, MinVersion: vc.min, MaxVersion: vc.max}
				cfg := &utls.Config{}
				h, err := Build(r, cfg, o)
				require.NoError(t, err)
				msg, info := parseHello(t, record(h))
				tls13 := vc.want[0] == tls.VersionTLS13
				tls12 := slices.Contains(vc.want, tls.VersionTLS12)

				// Versions: exactly the allowed ones, never below MinVersion.
				if tls13 {
					assert.Equal(t, vc.want, info.SupportedVersions)
					assert.Contains(t, info.Extensions, uint16(extVersions))
				} else {
					assert.NotContains(t, info.Extensions, uint16(extVersions), "no supported_versions without TLS 1.3")
					assert.NotContains(t, info.Extensions, uint16(extKeyShare), "no key_share without TLS 1.3")
					assert.NotContains(t, info.Extensions, uint16(extPSKModes))
				}
				// legacy_version; without supported_versions it is the
				// maximum, and the Config's MinVersion (checked in
				// TestNeverBelowMinVersion) refuses anything lower.
				assert.Equal(t, uint16(tls.VersionTLS12), msg.Vers, "legacy_version")
				assert.Equal(t, vc.want[len(vc.want)-1], cfg.MinVersion, "utls refuses a ServerHello below this")
				assert.Equal(t, vc.want[0], cfg.MaxVersion)

				// AEAD suites only; TLS 1.3 suites iff TLS 1.3, ECDHE AEAD
				// suites iff TLS 1.2 (the compact rung: one per
				// certificate type).
				var want []uint16
				if tls13 {
					want = append(want, aeadSuites13...)
				}
				if tls12 && r.Compact {
					want = append(want, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
				} else if tls12 {
					want = append(want, aeadSuites12...)
				}
				assert.Equal(t, want, info.CipherSuites)

				checkGroups(t, r, h, msg, info, tls13)

				// Signature algorithms like Go's, never SHA-1, no PKCS #1 v1.5
				// when TLS 1.2 is not offered; one per key type at least.
				for _, s := range info.SignatureSchemes {
					assert.NotContains(t, []tls.SignatureScheme{tls.PKCS1WithSHA1, tls.ECDSAWithSHA1}, s)
					if !tls12 {
						assert.NotContains(t, []tls.SignatureScheme{tls.PKCS1WithSHA256, tls.PKCS1WithSHA384, tls.PKCS1WithSHA512}, s)
					}
				}
				for _, s := range []tls.SignatureScheme{tls.PSSWithSHA256, tls.ECDSAWithP256AndSHA256, tls.ECDSAWithP384AndSHA384, tls.ECDSAWithP521AndSHA512, tls.Ed25519} {
					assert.Contains(t, info.SignatureSchemes, s)
				}
				if tls12 {
					assert.Contains(t, info.SignatureSchemes, tls.PKCS1WithSHA256)
				}

				// ALPN, SNI; OCSP, SCT and the legacy session ID except on
				// the compact rung.
				assert.Equal(t, h2, info.SupportedProtos)
				assert.Equal(t, "example.com", info.ServerName)
				assert.Equal(t, !r.Compact, msg.OcspStapling)
				assert.Equal(t, !r.Compact, msg.Scts)
				assert.Len(t, msg.SessionId, map[bool]int{true: 0, false: 32}[r.Compact])

				// TLS 1.2 protections.
				if tls12 {
					assert.True(t, msg.Ems, "extended_master_secret")
					assert.Contains(t, info.Extensions, uint16(extRenegotiation))
					assert.Equal(t, []uint8{0}, info.SupportedPoints)
				} else {
					assert.NotContains(t, info.Extensions, uint16(extEMS))
				}
				assert.Empty(t, msg.PskModes, "no psk_key_exchange_modes: no tickets to issue")

				// Nothing that would make the size unknowable or resume.
				for _, e := range []uint16{extSessionTicket, extPSK, extEarlyData, extECH} {
					assert.NotContains(t, info.Extensions, e)
				}
				assert.Empty(t, msg.PskIdentities)

				// The size.
				n := len(h.Conn.HandshakeState.Hello.Raw)
				assert.False(t, n >= 256 && n <= 511, "handshake message of %d bytes", n)
				want2, err := r.RecordSize(o)
				require.NoError(t, err)
				assert.Equal(t, want2, h.RecordSize)
				assert.Equal(t, n+5, h.RecordSize)
			})
		}
	}
}

// checkGroups checks supported_groups and the key shares of h: every
// classical group, post-quantum exactly when it should be and never without
// its share, one classical share.
func checkGroups(t *testing.T, r Rung, h *Hello, msg *utls.PubClientHelloMsg, info *tls.ClientHelloInfo, tls13 bool) {
	t.Helper()
	wantPQ := r.PostQuantum && tls13
	assert.Equal(t, wantPQ, h.PostQuantum)
	want := []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}
	if wantPQ {
		want = append([]tls.CurveID{tls.X25519MLKEM768}, want...)
	}
	assert.Equal(t, want, info.SupportedCurves)
	var shares []utls.CurveID
	for _, ks := range msg.KeyShares {
		shares = append(shares, ks.Group)
		assert.Equal(t, keyShareLen[uint16(ks.Group)], len(ks.Data), "share of %v", ks.Group)
	}
	switch {
	case !tls13:
		assert.Empty(t, shares)
	case wantPQ:
		assert.Equal(t, []utls.CurveID{utls.X25519MLKEM768, utls.X25519}, shares)
	default:
		assert.Equal(t, []utls.CurveID{utls.X25519}, shares)
	}
}

// TestCompactFitsOneSegment checks the point of the compact rung: with ALPN
// h2 and http/1.1, its record fits one full-size segment of a 1,500-byte
// path with TCP timestamps (1,448 bytes on IPv4) for names up to 41 bytes,
// and on IPv6 (1,428) up to 21, and it is the full rung's hello otherwise.
func TestCompactFitsOneSegment(t *testing.T) {
	for n := 0; n <= 253; n++ {
		o := Options{ServerName: sniOfLen(n), NextProtos: h2}
		size, err := rungCompact.RecordSize(o)
		require.NoError(t, err)
		want := 1398 // no SNI extension
		if n > 0 {
			want = 1407 + n
		}
		assert.Equal(t, want, size, "name of %d bytes", n)
		if n <= 41 {
			assert.LessOrEqual(t, size, 1448, "IPv4, name of %d bytes", n)
		}
		if n <= 21 {
			assert.LessOrEqual(t, size, 1428, "IPv6, name of %d bytes", n)
		}
		full, err := rungPostQuantum.RecordSize(o)
		require.NoError(t, err)
		assert.Equal(t, 61, full-size, "what compact leaves out")
	}
}

// TestNoForbiddenRange checks that no rung, under any version config, with
// or without ALPN, builds a handshake message of 256–511 bytes for any SNI
// length from 0 to 253 — both by arithmetic and by building it.
func TestNoForbiddenRange(t *testing.T) {
	alpns := [][]string{nil, h2}
	count := 0
	for _, r := range Ladder(true) {
		for _, vc := range versionConfigs {
			for _, alpn := range alpns {
				for n := 0; n <= 253; n++ {
					name := sniOfLen(n)
					o := Options{ServerName: name, NextProtos: alpn, MinVersion: vc.min, MaxVersion: vc.max}
					want, err := r.RecordSize(o)
					require.NoError(t, err)
					hs := want - 5
					require.False(t, hs >= 256 && hs <= 511, "%s/%s alpn=%v sni=%d: %d", r.Name, vc.name, alpn, n, hs)
					if testing.Short() && n%16 != 0 {
						continue
					}
					h, err := Build(r, &utls.Config{InsecureSkipVerify: true}, o)
					require.NoError(t, err)
					require.Equal(t, want, h.RecordSize, "%s/%s alpn=%v sni=%d", r.Name, vc.name, alpn, n)
					count++
				}
			}
		}
	}
	t.Logf("built %d hellos", count)
}

// sniOfLen returns a valid DNS name of n bytes: labels of 63 letters.
func sniOfLen(n int) string {
	b := []byte(strings.Repeat("a", n))
	for i := 63; i < n-1; i += 64 {
		b[i] = '.'
	}
	return string(b)
}

func TestSNILen(t *testing.T) {
	for n := 0; n <= 253; n++ {
		s := sniOfLen(n)
		require.Len(t, s, n)
		require.False(t, strings.HasSuffix(s, "."), s)
	}
}

func TestSizes(t *testing.T) {
	// Print the ladder for the common case (visible with -v).
	for _, vc := range versionConfigs {
		for _, r := range Ladder(true) {
			n, err := r.RecordSize(Options{ServerName: "example.com", NextProtos: h2, MinVersion: vc.min, MaxVersion: vc.max})
			require.NoError(t, err)
			t.Log(fmt.Sprintf("%-10s %-10s %5d", vc.name, r.Name, n))
		}
	}
}

// TestNoPostQuantumHelloFits1400 backs the claim that on a path that drops
// packets over 1,400 bytes only the MSS helps a post-quantum hello: one
// with nothing but what TLS 1.3 requires around an X25519MLKEM768 share
// (one suite, one signature algorithm, no SNI, no ALPN) is still larger
// than a 1,400-byte IPv4 packet can carry in one TCP segment.
func TestNoPostQuantumHelloFits1400(t *testing.T) {
	spec := &utls.ClientHelloSpec{
		CipherSuites:       []uint16{tls.TLS_AES_128_GCM_SHA256},
		CompressionMethods: []uint8{0},
		Extensions: []utls.TLSExtension{
			&utls.SupportedCurvesExtension{Curves: []utls.CurveID{utls.X25519MLKEM768, utls.X25519}},
			&utls.SignatureAlgorithmsExtension{SupportedSignatureAlgorithms: []utls.SignatureScheme{utls.ECDSAWithP256AndSHA256}},
			&utls.SupportedVersionsExtension{Versions: []uint16{tls.VersionTLS13}},
			&utls.KeyShareExtension{KeyShares: []utls.KeyShare{{Group: utls.X25519MLKEM768}, {Group: utls.X25519}}},
		},
	}
	uc := utls.UClient(nil, &utls.Config{InsecureSkipVerify: true}, utls.HelloCustom)
	require.NoError(t, uc.ApplyPreset(spec))
	require.NoError(t, uc.BuildHandshakeState())
	record := len(uc.HandshakeState.Hello.Raw) + 5
	t.Logf("smallest post-quantum ClientHello record: %d bytes", record)
	assert.Greater(t, record, 1400-20-20, "fits a 1,400-byte IPv4 packet")
	assert.Greater(t, record, 1370)
}
