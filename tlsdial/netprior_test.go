package tlsdial_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/fitshake/fitshake/internal/leaktest"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
	"github.com/fitshake/fitshake/tlsdial"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A destination the cache does not know, on a network where two other
// sites needed a clamp: the dial starts clamped, and its trace says the
// start came from the network (not from memory of the destination); behind
// a silent box (pmtutest acknowledges everything itself) it completes in
// one attempt, and it remembers nothing, so the prior is not confirmed by
// its own use. On another network the first attempt is not clamped.
func TestNetworkPrior(t *testing.T) {
	srv := startServer(t, 0)
	hole := blackHole(t, srv.addr, 1400, pmtutest.Both)
	var network atomic.Value
	defer tlsdial.SetKeyFor(func(n, addr string) pmtu.Key {
		return pmtu.Key{Local: network.Load().(string), Remote: n + "|" + addr}
	})()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			leaktest.Check(t)
			cache := &pmtu.Cache{}
			cache.Store(pmtu.Key{Local: "office", Remote: "tcp|a.example:443"}, pmtu.Entry{MTU: 1400})
			cache.Store(pmtu.Key{Local: "office", Remote: "tcp|b.example:443"}, pmtu.Entry{MTU: 1400})

			network.Store("office")
			rec := &recorder{}
			c, r, err := k.dial(context.Background(), hole, srv.config(), options{cache: cache, trace: rec.trace()})
			require.NoError(t, err, "%s", r)
			c.Close()
			rec.checkTrace(t, r)
			require.Len(t, r.Attempts, 1, "the network's clamp works at once: %s", r)
			assert.Equal(t, 1400, r.MTU, "%s", r)
			assert.False(t, r.FromCache, "not remembered for this destination: %s", r)
			require.NotEmpty(t, rec.starts)
			assert.True(t, rec.starts[0].FromNetwork, "the trace says the start came from the network")
			assert.False(t, rec.starts[0].FromCache)
			_, ok := cache.Load(pmtu.Key{Local: "office", Remote: "tcp|" + hole})
			assert.False(t, ok, "nothing learned: the clamp was not seen to be needed here")

			network.Store("cafe")
			rec = &recorder{}
			c, r, err = k.dial(context.Background(), srv.addr, srv.config(), options{cache: cache, trace: rec.trace()})
			require.NoError(t, err, "%s", r)
			c.Close()
			assert.Zero(t, r.Attempts[0].MTU, "another network: unclamped: %s", r)
			require.NotEmpty(t, rec.starts)
			assert.False(t, rec.starts[0].FromNetwork)
		})
	}
}
