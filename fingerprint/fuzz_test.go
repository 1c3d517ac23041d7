package fingerprint

import (
	"crypto/tls"
	"strings"
	"testing"

	utls "github.com/refraction-networking/utls"
	"github.com/stretchr/testify/require"
)

// FuzzBuild builds every rung for arbitrary server names and ALPN lists
// (comma-separated; empty entries are invalid): Build never panics, never
// produces a handshake message of 256–511 bytes, and its size is the one
// RecordSize computed from the spec.
func FuzzBuild(f *testing.F) {
	f.Add("example.com", "h2,http/1.1", uint8(0))
	f.Add("", "", uint8(1))
	f.Add("127.0.0.1", "h2", uint8(2))
	f.Add("[::1]", "http/1.1", uint8(3))
	f.Add("example.com.", ",", uint8(0))
	f.Add(strings.Repeat("a", 253), strings.Repeat("b", 255), uint8(0))
	f.Add(strings.Repeat("a.", 40), "h2,h2,h2", uint8(1))
	versions := [][2]uint16{{0, 0}, {tls.VersionTLS13, 0}, {0, tls.VersionTLS12}, {tls.VersionTLS13, tls.VersionTLS12}, {0, tls.VersionTLS11}}
	f.Fuzz(func(t *testing.T, serverName, alpn string, v uint8) {
		var protos []string
		if alpn != "" {
			protos = strings.Split(alpn, ",")
		}
		vv := versions[int(v)%len(versions)]
		o := Options{ServerName: serverName, NextProtos: protos, MinVersion: vv[0], MaxVersion: vv[1]}
		for _, r := range Ladder(true) {
			want, sizeErr := r.RecordSize(o)
			h, err := Build(r, &utls.Config{InsecureSkipVerify: true}, o)
			if sizeErr != nil {
				require.Error(t, err, "RecordSize failed (%v), Build did not", sizeErr)
				continue
			}
			if want-5 > maxHandshakeLen {
				require.ErrorContains(t, err, "does not fit one TLS record")
				continue
			}
			require.NoError(t, err)
			n := len(h.Conn.HandshakeState.Hello.Raw)
			require.False(t, n >= 256 && n <= 511, "handshake message of %d bytes", n)
			require.Equal(t, want, h.RecordSize, "RecordSize vs marshalled size")
			require.Equal(t, n+5, h.RecordSize)
			require.NotNil(t, utls.UnmarshalClientHello(h.Conn.HandshakeState.Hello.Raw), "unparseable hello")
		}
	})
}
