//go:build linux && labtable

package lab_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/stretchr/testify/require"
)

// TestLabLatency measures the stall classes that matter most one lab at a
// time, with nothing else running: -labtable.runs cold dials (31 here is
// enough to read quartiles) one after another per cell, each client in
// turn. It is the measurement to compare two commits with: run it on each,
// back to back.
//
//	go test -tags labtable ./internal/lab -run TestLabLatency -v -labtable.runs 31
func TestLabLatency(t *testing.T) {
	lab.Require(t)
	cases := []struct {
		cfg  lab.Config
		port int
	}{
		{lab.Config{Scenario: lab.Blackhole, Direction: lab.Upstream}, lab.PortNginxSmall},
		{lab.Config{Scenario: lab.Blackhole, Direction: lab.Downstream}, lab.PortNginxLong},
		{lab.Config{Scenario: lab.Reset, Direction: lab.Upstream}, lab.PortNginxSmall},
		{lab.Config{Scenario: lab.Healthy}, lab.PortNginxLong},
	}
	for _, c := range cases {
		l := lab.New(t, c.cfg)
		_, err := l.StartNginx()
		require.NoError(t, err)
		pki, err := l.PKI()
		require.NoError(t, err)
		for _, f := range lab.Families() {
			for _, client := range []string{lab.FitshakeDialer, lab.FitshakeTCP, lab.StockTLS} {
				if c.cfg.Scenario != lab.Healthy && client == lab.StockTLS {
					continue // never completes
				}
				res, err := l.Dial(context.Background(), client, lab.DialArgs{
					Addr: l.Addr(f, c.port), CAFile: pki.CAFile, Timeout: *flagTableBound, Runs: *flagTableRuns})
				require.NoError(t, err)
				var ts []time.Duration
				for _, r := range res.Runs {
					if r.OK {
						ts = append(ts, r.Elapsed)
					}
				}
				require.NotEmpty(t, ts, "%s %s %s: nothing completed", c.cfg, f, client)
				slices.Sort(ts)
				q := func(p float64) string { return fmtDur(ts[int(p*float64(len(ts)-1))]) }
				t.Logf("| %s | %s | %s | %d/%d | %s | %s | %s |", c.cfg, f, client, len(ts), len(res.Runs), q(0.25), q(0.5), q(0.75))
			}
		}
	}
}
