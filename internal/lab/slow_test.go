//go:build linux

package lab_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLabSlowServer is the silent-server class on real kernels: a healthy
// path to a Go server that holds each handshake back 0.3–2 s. The hello is
// acked, then nothing comes back past the stall window, which TCP_INFO
// cannot tell from a reply of exact full segments that are all dropped.
// fitshake may race one clamped attempt, but must never shrink the hello
// (AllowClassical is on, so it could) nor open more than one extra
// connection per dial. 20 dials per dialer.
func TestLabSlowServer(t *testing.T) {
	lab.Require(t)
	l := lab.New(t, lab.Config{Scenario: lab.Healthy})
	pki, err := l.PKI()
	require.NoError(t, err)
	delays := []time.Duration{300 * time.Millisecond, 800 * time.Millisecond, 1400 * time.Millisecond, 2 * time.Second}
	ports := make([]int, len(delays))
	for i, d := range delays {
		ports[i] = l.NextPort()
		_, err := l.StartSlowGoServer(ports[i], d)
		require.NoError(t, err)
	}
	for _, client := range []string{lab.FitshakeDialer, lab.FitshakeHTTP} {
		for i, d := range delays {
			for _, f := range lab.Families() {
				t.Run(fmt.Sprintf("%s/%s/delay-%s", client, f, d), func(t *testing.T) {
					t.Parallel()
					// 4 delays × 2 families × 3 runs: 24 dials per dialer.
					res, err := l.Dial(context.Background(), client, lab.DialArgs{
						Addr: l.Addr(f, ports[i]), CAFile: pki.CAFile, Timeout: 10 * time.Second,
						Runs: 3, AllowClassical: true,
					})
					require.NoError(t, err)
					for _, r := range res.Runs {
						require.True(t, r.OK, "%s (%s)", r.Err, r.Report)
						require.NotNil(t, r.Report)
						assert.GreaterOrEqual(t, r.Elapsed, d, "the server's delay")
						assert.False(t, r.Report.SecurityReduced, "%s", r.Report)
						assert.NotEqual(t, "classical", r.Report.Rung, "%s", r.Report)
						assert.LessOrEqual(t, len(r.Report.Attempts), 2, "at most one extra connection: %s", r.Report)
						for _, a := range r.Report.Attempts {
							assert.NotEqual(t, "stall", a.Outcome, "a slow server is not a black hole: %s", r.Report)
						}
					}
				})
			}
		}
	}
}
