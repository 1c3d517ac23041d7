package tlsdial_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What a dial learned is used on the local network it was learned on, and
// not on another (the key's Local, from pmtu.LocalNetwork).
func TestCacheScopedByNetwork(t *testing.T) {
	srv := startServer(t, 0)
	var network atomic.Value
	network.Store("office")
	defer tlsdial.SetKeyFor(func(n, addr string) pmtu.Key {
		return pmtu.Key{Local: network.Load().(string), Remote: n + "|" + addr}
	})()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			cache := &pmtu.Cache{}
			cache.Store(pmtu.Key{Local: "office", Remote: "tcp|" + srv.addr}, pmtu.Entry{MTU: 1400})
			network.Store("office")
			c, r, err := k.dial(context.Background(), srv.addr, srv.config(), options{cache: cache})
			require.NoError(t, err)
			c.Close()
			assert.True(t, r.FromCache, "the office's clamp, at the office: %s", r)
			assert.NotZero(t, r.MSS)

			network.Store("cafe")
			c, r, err = k.dial(context.Background(), srv.addr, srv.config(), options{cache: cache})
			require.NoError(t, err)
			c.Close()
			assert.False(t, r.FromCache, "not at the café: %s", r)
			assert.Zero(t, r.MSS, "%s", r)
		})
	}
}
