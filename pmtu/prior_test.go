package pmtu_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	officeNet = "dev wg0 via 10.0.0.1 src 10.0.0.7"
	cafeNet   = "dev wlan0 via 192.168.1.1 src 192.168.1.23"
)

func at(local, remote string) pmtu.Key { return pmtu.Key{Local: local, Remote: remote} }

func TestLoadNetwork(t *testing.T) {
	type stored struct {
		key   pmtu.Key
		entry pmtu.Entry
	}
	tests := []struct {
		name    string
		sites   int // Cache.NetworkSites
		stored  []stored
		local   string
		wantMTU int // 0: no prior
	}{
		{name: "empty", local: officeNet},
		{name: "one site", local: officeNet, stored: []stored{
			{at(officeNet, "tcp|a.example:443"), pmtu.Entry{MTU: 1400}},
		}},
		{name: "two sites", local: officeNet, wantMTU: 1400, stored: []stored{
			{at(officeNet, "tcp|a.example:443"), pmtu.Entry{MTU: 1400}},
			{at(officeNet, "tcp|b.example:443"), pmtu.Entry{MTU: 1400}},
		}},
		{name: "two ports of one host are one site", local: officeNet, stored: []stored{
			{at(officeNet, "tcp|a.example:443"), pmtu.Entry{MTU: 1400}},
			{at(officeNet, "tcp|a.example:8443"), pmtu.Entry{MTU: 1400}},
		}},
		{name: "two names of one domain are one site", local: officeNet, stored: []stored{
			{at(officeNet, "tcp|api.a.example:443"), pmtu.Entry{MTU: 1400}},
			{at(officeNet, "tcp|www.a.example.:443"), pmtu.Entry{MTU: 1400}},
		}},
		{name: "two addresses of one IPv4 /24 are one site", local: officeNet, stored: []stored{
			{at(officeNet, "tcp|192.0.2.10:443"), pmtu.Entry{MTU: 1400}},
			{at(officeNet, "tcp|192.0.2.20:443"), pmtu.Entry{MTU: 1400}},
		}},
		{name: "two IPv4 /24s", local: officeNet, wantMTU: 1400, stored: []stored{
			{at(officeNet, "tcp|192.0.2.10:443"), pmtu.Entry{MTU: 1400}},
			{at(officeNet, "tcp4|198.51.100.10:443"), pmtu.Entry{MTU: 1400}},
		}},
		{name: "two addresses of one IPv6 /48 are one site", local: officeNet, stored: []stored{
			{at(officeNet, "tcp|[2001:db8:1:2::1]:443"), pmtu.Entry{MTU: 1400}},
			{at(officeNet, "tcp|[2001:db8:1:3::1]:443"), pmtu.Entry{MTU: 1400}},
		}},
		{name: "the largest need two sites share", local: officeNet, wantMTU: 1400, stored: []stored{
			{at(officeNet, "tcp|a.example:443"), pmtu.Entry{MTU: 1400}},
			{at(officeNet, "tcp|b.example:443"), pmtu.Entry{MTU: 1280}},
		}},
		{name: "the smallest need shown by two sites", local: officeNet, wantMTU: 1280, stored: []stored{
			{at(officeNet, "tcp|a.example:443"), pmtu.Entry{MTU: 1280}},
			{at(officeNet, "tcp|b.example:443"), pmtu.Entry{MTU: 576}},
			{at(officeNet, "tcp|c.example:443"), pmtu.Entry{MTU: 1400}},
		}},
		{name: "a site counts by its least reduced need", local: officeNet, wantMTU: 1400, stored: []stored{
			{at(officeNet, "tcp|a.example:443"), pmtu.Entry{MTU: 576}},
			{at(officeNet, "tcp|a.example:8443"), pmtu.Entry{MTU: 1400}},
			{at(officeNet, "tcp|b.example:443"), pmtu.Entry{MTU: 1280}},
		}},
		{name: "what a prior taught does not count", local: officeNet, stored: []stored{
			{at(officeNet, "tcp|a.example:443"), pmtu.Entry{MTU: 1400}},
			{at(officeNet, "tcp|b.example:443"), pmtu.Entry{MTU: 1280, FromNetwork: true}},
		}},
		{name: "no clamp is no evidence", local: officeNet, stored: []stored{
			{at(officeNet, "tcp|a.example:443"), pmtu.Entry{MTU: 1400}},
			{at(officeNet, "tcp|b.example:443"), pmtu.Entry{Silence: time.Second}},
			{at(officeNet, "tcp|c.example:443"), pmtu.Entry{Rung: "compact", Class: pmtu.ClassContentIntolerant}},
		}},
		{name: "another network's evidence", local: cafeNet, stored: []stored{
			{at(officeNet, "tcp|a.example:443"), pmtu.Entry{MTU: 1400}},
			{at(officeNet, "tcp|b.example:443"), pmtu.Entry{MTU: 1400}},
		}},
		{name: "an unknown network is not one network", local: "", stored: []stored{
			{at("", "tcp|a.example:443"), pmtu.Entry{MTU: 1400}},
			{at("", "tcp|b.example:443"), pmtu.Entry{MTU: 1400}},
		}},
		{name: "three sites wanted, two shown", sites: 3, local: officeNet, stored: []stored{
			{at(officeNet, "tcp|a.example:443"), pmtu.Entry{MTU: 1400}},
			{at(officeNet, "tcp|b.example:443"), pmtu.Entry{MTU: 1400}},
		}},
		{name: "three sites wanted and shown", sites: 3, local: officeNet, wantMTU: 1400, stored: []stored{
			{at(officeNet, "tcp|a.example:443"), pmtu.Entry{MTU: 1400}},
			{at(officeNet, "tcp|b.example:443"), pmtu.Entry{MTU: 1280}},
			{at(officeNet, "tcp|c.example:443"), pmtu.Entry{MTU: 1280}},
		}},
		{name: "disabled", sites: -1, local: officeNet, stored: []stored{
			{at(officeNet, "tcp|a.example:443"), pmtu.Entry{MTU: 1400}},
			{at(officeNet, "tcp|b.example:443"), pmtu.Entry{MTU: 1400}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{now: time.Unix(1000, 0)}
			c := &pmtu.Cache{NetworkSites: tt.sites}
			pmtu.SetCacheClock(c, clk.Now)
			for _, s := range tt.stored {
				c.Store(s.key, s.entry)
				clk.advance(time.Second)
			}
			p, ok := c.LoadNetwork(tt.local)
			if tt.wantMTU == 0 {
				assert.False(t, ok, "%+v", p)
				return
			}
			require.True(t, ok)
			assert.Equal(t, tt.wantMTU, p.MTU)
			assert.True(t, p.FromNetwork)
			assert.Empty(t, p.Rung, "a prior is a clamp, never a smaller hello")
		})
	}
}

// A prior lives as long as its evidence: it expires with the entries, and
// goes with a Delete, an eviction or a later entry without a clamp.
func TestLoadNetworkForgets(t *testing.T) {
	a, b, c3 := at(officeNet, "tcp|a.example:443"), at(officeNet, "tcp|b.example:443"), at(officeNet, "tcp|c.example:443")
	newCache := func(max int) (*pmtu.Cache, *fakeClock) {
		clk := &fakeClock{now: time.Unix(1000, 0)}
		c := &pmtu.Cache{MaxEntries: max}
		pmtu.SetCacheClock(c, clk.Now)
		c.Store(a, pmtu.Entry{MTU: 1400})
		clk.advance(time.Minute)
		c.Store(b, pmtu.Entry{MTU: 1400})
		_, ok := c.LoadNetwork(officeNet)
		require.True(t, ok)
		return c, clk
	}
	t.Run("expiry", func(t *testing.T) {
		c, clk := newCache(0)
		p, _ := c.LoadNetwork(officeNet)
		assert.Equal(t, clk.Now(), p.Learned, "the newest evidence")
		clk.advance(pmtu.DefaultCacheTTL - 2*time.Minute)
		_, ok := c.LoadNetwork(officeNet)
		assert.True(t, ok, "both entries fresh")
		clk.advance(time.Minute)
		_, ok = c.LoadNetwork(officeNet)
		assert.False(t, ok, "a's entry expired: one site left")
		assert.Equal(t, 1, c.Len(), "the expired entry is dropped")
	})
	t.Run("not renewed by its own use", func(t *testing.T) {
		c, clk := newCache(0)
		for range 20 {
			clk.advance(pmtu.DefaultCacheTTL / 10)
			// A dial that started from the prior and learned more.
			c.Store(c3, pmtu.Entry{MTU: 1280, FromNetwork: true})
		}
		_, ok := c.LoadNetwork(officeNet)
		assert.False(t, ok, "ends one TTL after its evidence")
	})
	t.Run("delete", func(t *testing.T) {
		c, _ := newCache(0)
		c.Delete(a)
		_, ok := c.LoadNetwork(officeNet)
		assert.False(t, ok)
	})
	t.Run("eviction", func(t *testing.T) {
		c, _ := newCache(2)
		c.Store(at(cafeNet, "tcp|c.example:443"), pmtu.Entry{MTU: 1400})
		_, ok := c.LoadNetwork(officeNet)
		assert.False(t, ok, "a evicted")
		assert.Equal(t, 2, c.Len())
	})
	t.Run("a later entry without a clamp", func(t *testing.T) {
		c, _ := newCache(0)
		c.Store(b, pmtu.Entry{Silence: time.Second})
		_, ok := c.LoadNetwork(officeNet)
		assert.False(t, ok)
	})
	t.Run("a later entry learned from a prior", func(t *testing.T) {
		c, _ := newCache(0)
		c.Store(b, pmtu.Entry{MTU: 1280, FromNetwork: true})
		_, ok := c.LoadNetwork(officeNet)
		assert.False(t, ok)
	})
}

// The prior persists through the file: its evidence, and which entries
// are not evidence, survive a reopen; a file written before FromNetwork
// existed loads, its entries counting as evidence.
func TestFileCacheNetworkPrior(t *testing.T) {
	path := filepath.Join(t.TempDir(), "paths.json")
	c, err := pmtu.OpenFileCache(path, &pmtu.FileOptions{FlushDelay: -1})
	require.NoError(t, err)
	c.Store(at(officeNet, "tcp|a.example:443"), pmtu.Entry{MTU: 1400})
	c.Store(at(officeNet, "tcp|b.example:443"), pmtu.Entry{MTU: 1280, FromNetwork: true})
	c.Store(at(cafeNet, "tcp|a.example:443"), pmtu.Entry{MTU: 1400})
	c.Store(at(cafeNet, "tcp|b.example:443"), pmtu.Entry{MTU: 1400})
	require.NoError(t, c.Close())

	r, err := pmtu.OpenFileCache(path, nil)
	require.NoError(t, err)
	defer r.Close()
	e, ok := r.Load(at(officeNet, "tcp|b.example:443"))
	require.True(t, ok)
	assert.True(t, e.FromNetwork, "kept in the file")
	_, ok = r.LoadNetwork(officeNet)
	assert.False(t, ok, "one site of evidence at the officeNet")
	p, ok := r.LoadNetwork(cafeNet)
	require.True(t, ok)
	assert.Equal(t, 1400, p.MTU)

	old := filepath.Join(t.TempDir(), "old.json")
	learned := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	require.NoError(t, os.WriteFile(old, []byte(`{"format":"fitshake-paths","version":1,"entries":[`+
		`{"local":"`+officeNet+`","remote":"tcp|a.example:443","mtu":1400,"learned":"`+learned+`"},`+
		`{"local":"`+officeNet+`","remote":"tcp|b.example:443","mtu":1400,"learned":"`+learned+`"}]}`), 0o600))
	o, err := pmtu.OpenFileCache(old, nil)
	require.NoError(t, err)
	defer o.Close()
	p, ok = o.LoadNetwork(officeNet)
	require.True(t, ok, "entries of a file without from_network are evidence")
	assert.Equal(t, 1400, p.MTU)
}

// BenchmarkLoadNetwork reads the prior of a network with 64 sites of
// evidence: as a dial to a new destination does (remembered), and after
// every change to the network's entries (computed again).
func BenchmarkLoadNetwork(b *testing.B) {
	c := &pmtu.Cache{}
	for i := range 64 {
		c.Store(at(officeNet, fmt.Sprintf("tcp|s%d.example%d.net:443", i, i)), pmtu.Entry{MTU: 1400})
	}
	b.Run("remembered", func(b *testing.B) {
		for b.Loop() {
			c.LoadNetwork(officeNet)
		}
	})
	b.Run("after a change", func(b *testing.B) {
		k := at(officeNet, "tcp|s0.example0.net:443")
		for b.Loop() {
			c.Store(k, pmtu.Entry{MTU: 1400}) // learned again
			c.LoadNetwork(officeNet)
		}
	})
}
