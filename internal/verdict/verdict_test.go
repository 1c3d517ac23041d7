package verdict

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFixes(t *testing.T) {
	assert.Empty(t, Fixes(Path{Class: Healthy}))
	for _, c := range []string{PMTUDWorks, BlackHole, BlackHoleUpstream, BlackHoleDownstream, FragmentsDropped, SplitIntolerant, HelloIntolerant} {
		fixes := Fixes(Path{Class: c, UpstreamMTU: 1400, DownstreamMTU: 1400})
		require.NotEmpty(t, fixes, c)
		for _, f := range fixes {
			assert.Regexp(t, `^(network|server|app): `, f, c)
		}
	}
	up := strings.Join(Fixes(Path{Class: BlackHoleUpstream, UpstreamMTU: 1400, DownstreamMTU: 1500}), "\n")
	assert.Contains(t, up, "maxseg size set 1360")
	assert.Contains(t, up, "--set-mss 1360")
	assert.Contains(t, up, "fragmentation-needed")
	assert.NotContains(t, up, "server:", "the server's flight is not the problem upstream")

	v6 := strings.Join(Fixes(Path{Class: BlackHole, UpstreamMTU: 1280, IPv6: true, Flight: 4000}), "\n")
	assert.Contains(t, v6, "ip6tables -t mangle")
	assert.Contains(t, v6, "--set-mss 1220")
	assert.Contains(t, v6, "packet-too-big")
	assert.Contains(t, v6, "4000 bytes")

	split := strings.Join(Fixes(Path{Class: SplitIntolerant}), "\n")
	assert.NotContains(t, split, "--set-mss", "a clamp makes a split-intolerant box worse")
}

func TestSummaryJSON(t *testing.T) {
	b, err := json.Marshal(Summary{Healthy: true, UpstreamMTU: 1500, DownstreamMTU: 1500, Class: Healthy, Fixes: []string{}})
	require.NoError(t, err)
	assert.JSONEq(t, `{"healthy":true,"upstream_mtu":1500,"downstream_mtu":1500,"class":"healthy","fixes":[]}`, string(b))
	assert.Contains(t, Summary{Class: BlackHole, UpstreamMTU: 1400}.String(), "downstream MTU: not measured")
}
