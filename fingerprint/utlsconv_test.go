package fingerprint

import (
	"crypto/tls"
	"testing"

	"github.com/fitshake/fitshake/internal/utlsconv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestWithConvertedConfig runs the path tlsdial takes: a crypto/tls config,
// converted by utlsconv, a hello built from it, and the state converted back.
func TestWithConvertedConfig(t *testing.T) {
	for _, r := range Ladder(true) {
		for _, srv := range testServers()[:4] {
			t.Run(r.Name+"/"+srv.name, func(t *testing.T) {
				verified := false
				cfg := &tls.Config{
					RootCAs:    pki().roots,
					NextProtos: []string{"h2", "http/1.1"},
					VerifyConnection: func(cs tls.ConnectionState) error {
						verified = len(cs.VerifiedChains) > 0
						return nil
					},
					ClientSessionCache: tls.NewLRUClientSessionCache(4),
				}
				h, err := Build(r, utlsconv.Config(cfg), OptionsFrom(cfg, testServerName))
				require.NoError(t, err)
				res := handshake(t, h, srv.cfg())
				require.NoError(t, res.clientErr)
				assert.True(t, verified, "VerifyConnection saw verified chains")

				cs := utlsconv.ConnectionState(res.client)
				assert.Equal(t, res.server.Version, cs.Version)
				assert.Equal(t, res.server.CurveID, cs.CurveID)
				assert.Equal(t, "h2", cs.NegotiatedProtocol)
				if cs.Version == tls.VersionTLS13 {
					assert.Equal(t, res.server.CurveID, utlsconv.CurveID(h.Conn))
				}
				assert.Equal(t, []string{"h2", "http/1.1"}, cfg.NextProtos, "caller's config untouched")
				assert.Empty(t, cfg.ServerName, "caller's config untouched")
			})
		}
	}
}
