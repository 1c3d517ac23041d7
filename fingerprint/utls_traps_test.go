package fingerprint

import (
	"crypto/tls"
	"testing"

	utls "github.com/refraction-networking/utls"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests pin the utls v1.8.2 behaviours the rung design rests on. If
// one starts failing after a utls upgrade, revisit plan() in options.go.

// customHello builds a hello like the pq rung's but with the given
// supported_groups and key shares.
func customHello(t *testing.T, groups, shares []utls.CurveID) *Hello {
	t.Helper()
	p, err := Options{ServerName: testServerName, NextProtos: h2}.plan(true, false)
	require.NoError(t, err)
	spec := p.spec()
	for _, e := range spec.Extensions {
		switch e := e.(type) {
		case *utls.SupportedCurvesExtension:
			e.Curves = groups
		case *utls.KeyShareExtension:
			e.KeyShares = nil
			for _, g := range shares {
				e.KeyShares = append(e.KeyShares, utls.KeyShare{Group: g})
			}
		}
	}
	uc := utls.UClient(nil, clientConfig(pki().roots), utls.HelloCustom)
	require.NoError(t, uc.ApplyPreset(spec))
	require.NoError(t, uc.BuildHandshakeState())
	return &Hello{Conn: uc, RecordSize: len(uc.HandshakeState.Hello.Raw) + 5}
}

func TestUTLSTraps(t *testing.T) {
	servers := testServers()
	normal, p256Only := servers[0], servers[4]
	mlkem, x25519, p256 := utls.X25519MLKEM768, utls.X25519, utls.CurveP256
	tests := []struct {
		name      string
		groups    []utls.CurveID
		shares    []utls.CurveID
		server    testServer
		wantErr   string // "" → success
		wantCurve tls.CurveID
		wantHRR   bool
	}{
		{
			name:   "second classical share is unusable",
			groups: []utls.CurveID{x25519, p256}, shares: []utls.CurveID{x25519, p256},
			server: p256Only, wantErr: "invalid server key share",
		},
		{
			name:   "hybrid share needs X25519 as the classical share",
			groups: []utls.CurveID{mlkem, p256}, shares: []utls.CurveID{mlkem, p256},
			server: normal, wantErr: "invalid server key share",
		},
		{
			name:   "post-quantum group without its share aborts on HelloRetryRequest (trap 1)",
			groups: []utls.CurveID{mlkem, x25519}, shares: []utls.CurveID{x25519},
			server: normal, wantErr: "unsupported curve",
		},
		{
			// What every rung relies on for P-256-only servers: a
			// classical group listed without its share is answered with
			// a HelloRetryRequest, which works.
			name:   "classical group without its share: HelloRetryRequest works",
			groups: []utls.CurveID{mlkem, x25519, p256}, shares: []utls.CurveID{mlkem, x25519},
			server: p256Only, wantCurve: tls.CurveP256, wantHRR: true,
		},
		{
			name:   "same hello, normal server: post-quantum, no HelloRetryRequest",
			groups: []utls.CurveID{mlkem, x25519, p256}, shares: []utls.CurveID{mlkem, x25519},
			server: normal, wantCurve: tls.X25519MLKEM768,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := customHello(t, tt.groups, tt.shares)
			res := handshake(t, h, tt.server.cfg())
			if tt.wantErr != "" {
				require.Error(t, res.clientErr)
				assert.ErrorContains(t, res.clientErr, tt.wantErr)
				return
			}
			require.NoError(t, res.clientErr)
			assert.Equal(t, tt.wantCurve, res.server.CurveID)
			assert.Equal(t, tt.wantHRR, res.server.HelloRetryRequest)
		})
	}
}

// TestUTLSRenegotiationOverwrite pins why Build sets the spec's
// renegotiation_info from the Config: utls copies the extension's setting
// into the Config, and anything but RenegotiateNever disables
// ExportKeyingMaterial.
func TestUTLSRenegotiationOverwrite(t *testing.T) {
	p, err := Options{ServerName: testServerName}.plan(false, false)
	require.NoError(t, err)
	spec := p.spec()
	for _, e := range spec.Extensions {
		if ri, ok := e.(*utls.RenegotiationInfoExtension); ok {
			ri.Renegotiation = utls.RenegotiateOnceAsClient
		}
	}
	cfg := clientConfig(pki().roots)
	uc := utls.UClient(nil, cfg, utls.HelloCustom)
	require.NoError(t, uc.ApplyPreset(spec))
	require.NoError(t, uc.BuildHandshakeState())
	assert.Equal(t, utls.RenegotiateOnceAsClient, cfg.Renegotiation, "utls wrote into the Config")

	res := handshake(t, &Hello{Conn: uc}, testServers()[0].cfg())
	require.NoError(t, res.clientErr)
	_, err = res.client.ExportKeyingMaterial("EXPORTER-x", nil, 8)
	assert.ErrorContains(t, err, "renegotiation")
}
