package fingerprint

import (
	"crypto/tls"
	"strings"
	"testing"

	utls "github.com/refraction-networking/utls"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOptionsFrom(t *testing.T) {
	tests := []struct {
		name       string
		cfg        *tls.Config
		serverName string
		want       Options
	}{
		{name: "nil config", serverName: "a.test", want: Options{ServerName: "a.test"}},
		{name: "dialled name", cfg: &tls.Config{}, serverName: "a.test", want: Options{ServerName: "a.test"}},
		{name: "config name wins", cfg: &tls.Config{ServerName: "b.test"}, serverName: "a.test", want: Options{ServerName: "b.test"}},
		{
			name: "all fields",
			cfg: &tls.Config{
				NextProtos: h2, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13,
				CipherSuites:     []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
				CurvePreferences: []tls.CurveID{tls.X25519},
			},
			serverName: "a.test",
			want: Options{
				ServerName: "a.test", NextProtos: h2, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13,
				CipherSuites:     []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
				CurvePreferences: []tls.CurveID{tls.X25519},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, OptionsFrom(tt.cfg, tt.serverName))
		})
	}

	// No aliasing with the config.
	cfg := &tls.Config{NextProtos: []string{"h2"}, CipherSuites: []uint16{1}, CurvePreferences: []tls.CurveID{tls.X25519}}
	o := OptionsFrom(cfg, "")
	o.NextProtos[0], o.CipherSuites[0], o.CurvePreferences[0] = "x", 2, tls.CurveP256
	assert.Equal(t, []string{"h2"}, cfg.NextProtos)
	assert.Equal(t, []uint16{1}, cfg.CipherSuites)
	assert.Equal(t, []tls.CurveID{tls.X25519}, cfg.CurvePreferences)
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		o       Options
		wantErr error
	}{
		{name: "zero", o: Options{}},
		{name: "MaxVersion 1.1", o: Options{MaxVersion: tls.VersionTLS11}, wantErr: errMaxVersion},
		{name: "Min above Max", o: Options{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS12}, wantErr: errVersions},
		{name: "MinVersion from the future", o: Options{MinVersion: 0x0305}, wantErr: errVersions},
		{name: "only post-quantum group", o: Options{CurvePreferences: []tls.CurveID{tls.X25519MLKEM768}}, wantErr: errNoGroup},
		{name: "only P-384", o: Options{CurvePreferences: []tls.CurveID{tls.CurveP384}}},
		{name: "only hybrids", o: Options{CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768}}, wantErr: errNoGroup},
		{name: "empty CurvePreferences", o: Options{CurvePreferences: []tls.CurveID{}}, wantErr: errNoGroup},
		{name: "only CBC suites, TLS 1.2", o: Options{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}}, wantErr: errNoSuite},
		{name: "only CBC suites, TLS 1.3 allowed", o: Options{CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}}},
		{name: "empty ALPN", o: Options{NextProtos: []string{"h2", ""}}, wantErr: errALPN},
		{name: "ALPN of 256 bytes", o: Options{NextProtos: []string{strings.Repeat("a", 256)}}, wantErr: errALPN},
		{name: "ALPN of 255 bytes", o: Options{NextProtos: []string{strings.Repeat("a", 255)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
			assert.True(t, strings.HasPrefix(err.Error(), "fingerprint: "), err.Error())
			for _, r := range Ladder(true) {
				assert.Nil(t, r.Spec(tt.o))
				_, err := r.RecordSize(tt.o)
				assert.ErrorIs(t, err, tt.wantErr)
				_, err = Build(r, &utls.Config{InsecureSkipVerify: true}, tt.o)
				assert.ErrorIs(t, err, tt.wantErr)
			}
		})
	}
}

// TestRestrictions checks that CipherSuites and CurvePreferences only ever
// remove from what a rung offers.
func TestRestrictions(t *testing.T) {
	tests := []struct {
		name       string
		o          Options
		wantGroups map[string][]tls.CurveID // by rung
		wantSuites []uint16
		wantVers   []uint16
	}{
		{
			name:       "defaults",
			wantGroups: map[string][]tls.CurveID{"pq": {tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}, "pq-compact": {tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}, "classical": {tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}},
			wantSuites: append(append([]uint16(nil), aeadSuites13...), aeadSuites12...),
			wantVers:   []uint16{tls.VersionTLS13, tls.VersionTLS12},
		},
		{
			name:       "Go default curve list",
			o:          Options{CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024, tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}},
			wantGroups: map[string][]tls.CurveID{"pq": {tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}, "pq-compact": {tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}, "classical": {tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}},
			wantSuites: append(append([]uint16(nil), aeadSuites13...), aeadSuites12...),
			wantVers:   []uint16{tls.VersionTLS13, tls.VersionTLS12},
		},
		{
			name:       "no post-quantum",
			o:          Options{CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}},
			wantGroups: map[string][]tls.CurveID{"pq": {tls.X25519, tls.CurveP256}, "pq-compact": {tls.X25519, tls.CurveP256}, "classical": {tls.X25519, tls.CurveP256}},
			wantSuites: append(append([]uint16(nil), aeadSuites13...), aeadSuites12...),
			wantVers:   []uint16{tls.VersionTLS13, tls.VersionTLS12},
		},
		{
			name:       "P-256 only",
			o:          Options{CurvePreferences: []tls.CurveID{tls.X25519MLKEM768, tls.CurveP256}},
			wantGroups: map[string][]tls.CurveID{"pq": {tls.CurveP256}, "pq-compact": {tls.CurveP256}, "classical": {tls.CurveP256}},
			wantSuites: append(append([]uint16(nil), aeadSuites13...), aeadSuites12...),
			wantVers:   []uint16{tls.VersionTLS13, tls.VersionTLS12},
		},
		{
			name: "cipher suites with CBC and RSA kex asked for",
			o: Options{CipherSuites: []uint16{
				tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
				tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			}},
			wantGroups: map[string][]tls.CurveID{"pq": {tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}, "pq-compact": {tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}, "classical": {tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}},
			wantSuites: append(append([]uint16(nil), aeadSuites13...), tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
			wantVers:   []uint16{tls.VersionTLS13, tls.VersionTLS12},
		},
		{
			name:       "no TLS 1.2 suite left: TLS 1.3 only",
			o:          Options{CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}},
			wantGroups: map[string][]tls.CurveID{"pq": {tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}, "pq-compact": {tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}, "classical": {tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}},
			wantSuites: aeadSuites13,
			wantVers:   []uint16{tls.VersionTLS13},
		},
	}
	for _, tt := range tests {
		for _, r := range Ladder(true) {
			t.Run(tt.name+"/"+r.Name, func(t *testing.T) {
				o := tt.o
				o.ServerName = "example.com"
				h, err := Build(r, &utls.Config{}, o)
				require.NoError(t, err)
				_, info := parseHello(t, record(h))
				assert.Equal(t, tt.wantGroups[r.Name], info.SupportedCurves)
				if r.Compact {
					assert.Subset(t, tt.wantSuites, info.CipherSuites)
				} else {
					assert.Equal(t, tt.wantSuites, info.CipherSuites)
				}
				assert.Equal(t, tt.wantVers, info.SupportedVersions)
				assert.Equal(t, tt.wantGroups[r.Name][0] == tls.X25519MLKEM768, h.PostQuantum)
			})
		}
	}
}

func TestHostnameInSNI(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"example.com", "example.com"},
		{"example.com.", "example.com"},
		{"example.com..", "example.com"},
		{"192.0.2.1", ""},
		{"2001:db8::1", ""},
		{"[2001:db8::1]", ""},
		{"fe80::1%eth0", ""},
		{"[fe80::1%eth0]", ""},
		{"localhost", "localhost"},
		{"::.", ""},
		{"192.0.2.1.", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			assert.Equal(t, tt.want, hostnameInSNI(tt.in))
			// And no SNI extension is sent when the name is empty.
			spec := rungClassical.Spec(Options{ServerName: tt.in})
			require.NotNil(t, spec)
			hasSNI := false
			for _, e := range spec.Extensions {
				_, ok := e.(*utls.SNIExtension)
				hasSNI = hasSNI || ok
			}
			assert.Equal(t, tt.want != "", hasSNI)
		})
	}
}
