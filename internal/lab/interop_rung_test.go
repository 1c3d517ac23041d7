//go:build linux

package lab_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/fitshake/fitshake/fingerprint"
	"github.com/fitshake/fitshake/internal/lab"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLabInteropCompactHello sends the ClientHello of the rung
// fingerprint.NameCompact, which has an empty legacy_session_id (RFC 8446
// allows it; middlebox compatibility mode is the client's choice), alone
// (lab.FingerprintRung: no clamp, no retry) to every real server of
// TestLabInterop on the healthy path, both families: every server must
// complete the handshake and negotiate its version, ALPN and forced group.
// Test names read TestLabInteropCompactHello/SERVER/FAMILY.
func TestLabInteropCompactHello(t *testing.T) {
	lab.Require(t)
	l := startInteropLab(t, lab.Config{Scenario: lab.Healthy})
	for _, s := range lab.RealServers() {
		for _, f := range lab.Families() {
			t.Run(fmt.Sprintf("%s/%s", s, f), func(t *testing.T) {
				t.Parallel()
				r := interopDialRung(t, l, s, f, fingerprint.NameCompact)
				t.Logf("%s %s → %s %s: ok=%v in %v %s %s %s %s", fingerprint.NameCompact, helloSize(r), s, f, r.OK,
					r.Elapsed.Round(10*time.Microsecond), r.Version, r.Group, r.ALPN, r.Err)
				require.True(t, r.OK, "%s refused the %s hello: %s%s", s, fingerprint.NameCompact, r.Err, note(s))
				assert.Equal(t, s.Version, r.Version, "version")
				assert.Equal(t, s.ALPN, r.ALPN, "ALPN")
				if s.Group != "" {
					assert.Equal(t, s.Group, r.Group, "group")
				}
			})
		}
	}
}

// helloSize formats the size of the hello a FingerprintRung run sent.
func helloSize(r lab.DialRun) string {
	if r.Report == nil {
		return "(not built)"
	}
	return fmt.Sprintf("(%d B)", r.Report.HelloSize)
}
