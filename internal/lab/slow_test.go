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
//
// A destination's first dial may race clamps beside its first attempt,
// paced (after W, then 3W more: one extra connection for a server
// answering within 1 s, two within 2.5 s), which must all lose to it:
// superseded, never a stall,
// never a hello without post-quantum (AllowClassical is on, so one could
// be used). The cache then remembers the server's silence,
// so that the dials after it in the same process (one dialer, one cache:
// ShareCache) wait for it and open no extra connection. 3 dials per dialer,
// delay and family.
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
						Runs: 3, ShareCache: true, AllowClassical: true,
					})
					require.NoError(t, err)
					require.Len(t, res.Runs, 3)
					for n, r := range res.Runs {
						require.True(t, r.OK, "run %d: %s (%s)", n+1, r.Err, r.Report)
						rep := r.Report
						require.NotNil(t, rep)
						t.Logf("run %d: handshake %v: %s", n+1, r.Elapsed.Round(time.Millisecond), rep)
						assert.GreaterOrEqual(t, r.Elapsed, d, "the server's delay")
						assert.False(t, rep.SecurityReduced, "%s", rep)
						assert.NotEqual(t, "classical", rep.Rung, "%s", rep)
						require.NotEmpty(t, rep.Attempts)
						assert.Equal(t, "ok", rep.Attempts[0].Outcome, "the first attempt wins: %s", rep)
						assert.Zero(t, rep.MSS, "no clamp on a healthy path: %s", rep)
						assert.Empty(t, rep.Diagnosis, "nothing stalled: %s", rep)
						for _, a := range rep.Attempts {
							assert.NotEqual(t, "stall", a.Outcome, "a slow server is not a black hole: %s", rep)
							assert.NotEqual(t, "classical", a.Rung, "never a weaker hello: %s", rep)
						}
						for _, a := range rep.Attempts[1:] {
							assert.True(t, a.Hedge, "an extra connection is a race: %s", rep)
							assert.Equal(t, "superseded", a.Outcome, "%s", rep)
						}
						if n == 0 {
							// Silence is raced after W, then 3W, then 6W (W = 250 ms
							// here): one extra connection up to a 1 s server, two up to
							// 2.5 s.
							extra := 1
							if d > time.Second {
								extra = 2
							}
							assert.LessOrEqual(t, len(rep.Attempts)-1, extra, "extra connections on a first dial: %s", rep)
							assert.False(t, rep.FromCache, "%s", rep)
							continue
						}
						assert.Len(t, rep.Attempts, 1, "the cache knows the server is slow: no extra connection: %s", rep)
						assert.True(t, rep.FromCache, "%s", rep)
					}
				})
			}
		}
	}
}
