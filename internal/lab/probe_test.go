//go:build linux

package lab_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/lab"
	"github.com/fitshake/fitshake/internal/verdict"
	"github.com/fitshake/fitshake/probe"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ProbeClient runs probe.Run in the client namespace.
const probeClient = "probe"

func init() { lab.RegisterClient(probeClient, runProbe) }

type probeArgs struct {
	Addr, CAFile, Network string
}

func runProbe(ctx context.Context, raw json.RawMessage) (any, error) {
	var a probeArgs
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(a.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no certificate in " + a.CAFile)
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: lab.ServerName}
	return probe.Run(ctx, a.Addr, probe.Options{Network: a.Network, Config: cfg})
}

// probeTruth is what the probe must find in a lab: the class, whether
// crypto/tls's handshake completes, and the largest packet each way.
type probeTruth struct {
	class    string
	healthy  bool
	up, down int
}

func truthOf(cfg lab.Config, f lab.Family) probeTruth {
	n := cfg.N()
	switch cfg.Scenario {
	case lab.Healthy:
		return probeTruth{verdict.Healthy, true, 1500, 1500}
	case lab.PMTUDOK:
		return probeTruth{verdict.PMTUDWorks, true, n, n}
	case lab.MTUICMPBlocked:
		return probeTruth{verdict.BlackHole, false, n, n}
	case lab.FragmentsDropped:
		if f == lab.IPv6 { // packet too big works: no fragments on IPv6
			return probeTruth{verdict.PMTUDWorks, true, n, 1500}
		}
		return probeTruth{verdict.FragmentsDropped, false, n, 1500}
	}
	t := probeTruth{verdict.BlackHole, false, n, n}
	switch cfg.Direction {
	case lab.Upstream:
		t.class, t.down = verdict.BlackHoleUpstream, 1500
	case lab.Downstream:
		t.class, t.up = verdict.BlackHoleDownstream, 1500
	}
	return t
}

// probeLabs are the scenarios of TestLabProbe: the main matrix at 1400,
// and black holes both ways, upstream and downstream at 1280 and 576.
func probeLabs() []lab.Config {
	cfgs := matrix(1400)
	for _, n := range []int{1280, 576} {
		for _, d := range []lab.Direction{lab.Both, lab.Upstream, lab.Downstream} {
			cfgs = append(cfgs, lab.Config{Scenario: lab.Blackhole, MTU: n, Direction: d})
		}
	}
	return cfgs
}

// TestLabProbe runs the probe in every scenario of probeLabs, on both
// families, against nginx with a long certificate chain (a flight of
// several full segments): its class, handshake verdict and limits (±8
// bytes) must match the lab's truth.
func TestLabProbe(t *testing.T) {
	lab.Require(t)
	cfgs := probeLabs()
	for _, cfg := range cfgs {
		t.Run(cfg.String(), func(t *testing.T) {
			t.Parallel()
			l := lab.New(t, cfg)
			_, err := l.StartNginx()
			require.NoError(t, err)
			pki, err := l.PKI()
			require.NoError(t, err)
			for _, f := range lab.Families() {
				t.Run(string(f), func(t *testing.T) {
					res := probeIn(t, l, f, pki.CAFile)
					checkProbe(t, truthOf(l.Config(), f), res)
				})
			}
		})
	}
}

func probeIn(t *testing.T, l *lab.Lab, f lab.Family, caFile string) probe.Result {
	t.Helper()
	network := map[lab.Family]string{lab.IPv4: "tcp4", lab.IPv6: "tcp6"}[f]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	raw, err := l.RunClient(ctx, probeClient, probeArgs{Addr: l.Addr(f, lab.PortNginxLong), CAFile: caFile, Network: network})
	require.NoError(t, err)
	var res probe.Result
	require.NoError(t, json.Unmarshal(raw, &res))
	t.Logf("probe: %s %s: up %d down %d healthy %t in %d conns, %.2f s\n%s%s",
		res.Class, res.Family, res.UpstreamMTU, res.DownstreamMTU, res.Healthy, res.Conns, res.Seconds, res.String(), probesText(res))
	return res
}

func checkProbe(t *testing.T, want probeTruth, res probe.Result) {
	t.Helper()
	assert.Equal(t, want.class, res.Class)
	assert.Equal(t, want.healthy, res.Healthy, "crypto/tls's handshake: %s", res.Handshake)
	assert.InDelta(t, want.up, res.UpstreamMTU, 8, "upstream")
	assert.LessOrEqual(t, res.UpstreamMTU, want.up, "never more than gets through")
	assert.InDelta(t, want.down, res.DownstreamMTU, 8, "downstream")
	assert.LessOrEqual(t, res.DownstreamMTU, want.down)
	assert.False(t, res.UpstreamAtLeast || res.DownstreamAtLeast, "a long chain shows both limits")
	assert.Contains(t, res.Fitshake, "ok", "fitshake gets through every lab path")
	if want.class == verdict.Healthy {
		assert.Empty(t, res.Fixes)
		assert.Less(t, res.Seconds, 2.0)
	} else {
		assert.NotEmpty(t, res.Fixes)
		assert.Less(t, res.Seconds, 10.0)
	}
	assert.LessOrEqual(t, res.Conns, probe.DefaultMaxConns)
}

func probesText(res probe.Result) string {
	s := ""
	for _, p := range res.Probes {
		s += fmt.Sprintf("  %-45s %-7s %5d  %6.1f ms\n", p.What, p.Outcome, p.Packet, p.Ms)
	}
	return s
}
