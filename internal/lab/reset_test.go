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

// TestLabReset is the reset class on real kernels: a router that answers
// every TCP packet over 1400 bytes with a reset instead of forwarding it,
// as firewalls and intrusion-prevention boxes that refuse large segments
// do.
//
//   - upstream: the ClientHello's full-size head segment is refused and the
//     reset comes straight back to the client. Stock crypto/tls fails at
//     once with "connection reset by peer"; both fitshake dialers (and
//     net/http over TCPDialer) take the reset as conclusive, redial at once
//     with an MSS clamp and the same hello, and report the reset. Against
//     nginx's small certificate and its long chain.
//   - downstream: the long chain's full-size segments are refused and the
//     resets go to the server. The client is left as by a black hole: the
//     reply's tail arrives out of order and its head never does, and no
//     reset reaches it (Linux answers no reset to the client's SACK, a
//     pure ACK that finds only the listening socket; its FIN, at close,
//     gets one). Stock crypto/tls waits out its bound; fitshake sees a
//     downstream black hole and clamps.
func TestLabReset(t *testing.T) {
	lab.Require(t)
	tests := []struct {
		dir  lab.Direction
		port int
		// fitshake's first attempt and its report's class.
		wantFirst, wantClass, wantText string
	}{
		{lab.Upstream, lab.PortNginxSmall, "reset", "reset", "reset before any reply"},
		{lab.Upstream, lab.PortNginxLong, "reset", "reset", "reset before any reply"},
		{lab.Downstream, lab.PortNginxLong, "stall", "downstream black hole", "arrived out of order"},
	}
	labs := map[lab.Direction]*lab.Lab{}
	for _, tt := range tests {
		if labs[tt.dir] == nil {
			l := lab.New(t, lab.Config{Scenario: lab.Reset, Direction: tt.dir})
			_, err := l.StartNginx()
			require.NoError(t, err)
			labs[tt.dir] = l
			t.Cleanup(func() {
				drops, err := l.Drops()
				require.NoError(t, err)
				t.Logf("%s: router counters %v", l.Config(), drops)
				assert.Positive(t, drops["reset"], "the router should have reset something")
				assert.Zero(t, drops["reset: not tcp"], "only TCP crosses the lab")
			})
		}
	}
	for _, tt := range tests {
		for _, f := range lab.Families() {
			chain := "small"
			if tt.port == lab.PortNginxLong {
				chain = "long"
			}
			prefix := fmt.Sprintf("%s/%s/nginx-%s/", tt.dir, f, chain)
			l := labs[tt.dir]
			pki, err := l.PKI()
			require.NoError(t, err)
			addr := l.Addr(f, tt.port)
			upstream := l.Config().Resets(lab.Upstream, lab.FirstPacket(f, goHello(t)))
			require.Equal(t, tt.dir == lab.Upstream, upstream)
			t.Run(prefix+lab.StockTLS, func(t *testing.T) {
				t.Parallel()
				res, err := l.Dial(context.Background(), lab.StockTLS, lab.DialArgs{Addr: addr, CAFile: pki.CAFile, Timeout: stockBound})
				require.NoError(t, err)
				r := res.Runs[0]
				t.Logf("%s: ok=%v in %v: %s", lab.StockTLS, r.OK, r.Elapsed.Round(10*time.Microsecond), r.Err)
				assert.False(t, r.OK, "stock crypto/tls completed through a router that resets large packets")
				if upstream {
					assert.Contains(t, r.Err, "connection reset by peer")
					assert.Less(t, r.Elapsed, stockBound/2, "a reset fails the dial at once")
				} else {
					assert.True(t, r.TimedOut, "downstream, nothing resets the client: %s", r.Err)
				}
			})
			for _, client := range []string{lab.FitshakeDialer, lab.FitshakeTCP, lab.FitshakeHTTP} {
				t.Run(prefix+client, func(t *testing.T) {
					t.Parallel()
					res, err := l.Dial(context.Background(), client, lab.DialArgs{Addr: addr, CAFile: pki.CAFile, Timeout: fitshakeBound})
					require.NoError(t, err)
					r := res.Runs[0]
					rep := r.Report
					t.Logf("%s: ok=%v handshake %v: %s — %s", client, r.OK, r.Elapsed.Round(10*time.Microsecond), rep, rep.Diagnosis)
					require.True(t, r.OK, "%s (%s)", r.Err, rep)
					require.NotNil(t, rep)
					require.Len(t, rep.Attempts, 2, "one refused attempt, one clamped redial: %s", rep)
					first, last := rep.Attempts[0], rep.Attempts[1]
					assert.Equal(t, tt.wantFirst, first.Outcome, "%s", rep)
					assert.Zero(t, first.MSS, "the first attempt is unclamped: %s", rep)
					checkRedialed(t, first, last, rep)
					assert.Equal(t, "ok", last.Outcome, "%s", rep)
					assert.Positive(t, rep.MSS, "%s", rep)
					assert.LessOrEqual(t, rep.MSS, l.MaxMSS(f), "the clamp fits the path: %s", rep)
					assert.Equal(t, first.HelloSize, rep.HelloSize, "the same hello: %s", rep)
					assert.False(t, rep.SecurityReduced, "%s", rep)
					if !upstream && last.Hedge && rep.Class == "silent server" {
						// A loaded machine: the server's first full-size
						// segment was reset before its tail left, so
						// nothing came back to attempt 1 and the window
						// raced the clamp. Then nothing shows a black hole,
						// and the report must not claim one.
						t.Logf("nothing came back to attempt 1: %s", rep.Diagnosis)
						assert.Contains(t, rep.Diagnosis, "nothing back", "%s", rep)
						assert.GreaterOrEqual(t, first.Duration, 250*time.Millisecond, "only the stall window races: %s", rep)
					} else {
						assert.Equal(t, tt.wantClass, rep.Class, "%s", rep)
						assert.Contains(t, rep.Diagnosis, tt.wantText)
					}
					if client == lab.FitshakeHTTP {
						assert.Equal(t, "HTTP/2.0", r.Proto, "body %q", r.Body)
					}
				})
			}
		}
	}
}
