package fingerprint

import (
	"bytes"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	utls "github.com/refraction-networking/utls"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGoldenRecordSizes pins the record size of every rung's ClientHello for
// SNI "example.com" and ALPN h2, http/1.1. A change here changes what goes
// on the wire: review it, then run go test ./fingerprint -run Golden -update.
func TestGoldenRecordSizes(t *testing.T) {
	configs := []struct {
		name     string
		min, max uint16
	}{
		{"tls1.2-1.3", 0, 0},
		{"tls1.3", tls.VersionTLS13, 0},
		{"tls1.2", 0, tls.VersionTLS12},
	}
	var b bytes.Buffer
	fmt.Fprintln(&b, "# TLS record size in bytes of each rung's ClientHello,")
	fmt.Fprintln(&b, "# SNI \"example.com\", ALPN h2,http/1.1. Regenerate with:")
	fmt.Fprintln(&b, "#   go test ./fingerprint -run TestGoldenRecordSizes -update")
	fmt.Fprintf(&b, "%-12s %-10s %s\n", "# versions", "rung", "bytes")
	for _, c := range configs {
		for _, r := range Ladder(true) {
			h, err := Build(r, &utls.Config{}, Options{ServerName: "example.com", NextProtos: h2, MinVersion: c.min, MaxVersion: c.max})
			require.NoError(t, err)
			fmt.Fprintf(&b, "%-12s %-10s %d\n", c.name, r.Name, h.RecordSize)
		}
	}

	path := filepath.Join("testdata", "record_sizes.golden")
	if *update {
		require.NoError(t, os.WriteFile(path, b.Bytes(), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run with -update to create it")
	assert.Equal(t, string(want), b.String())
}
