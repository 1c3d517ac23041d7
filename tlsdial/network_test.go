package tlsdial_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fitshake/fitshake/internal/leaktest"
	"github.com/fitshake/fitshake/pmtu"
	"github.com/fitshake/fitshake/pmtu/pmtutest"
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

// TestRouteLookedUpOnlyToLearn: with an empty cache, a healthy dial never
// looks up its route (it has nothing to recall or store); a dial that
// learns a clamp stores it under the local network all the same, and the
// next dial, with something to recall, looks it up before it connects.
func TestRouteLookedUpOnlyToLearn(t *testing.T) {
	srv := startServer(t, 0)
	hole := blackHole(t, srv.addr, 1400, pmtutest.Upstream)
	var lookups atomic.Int32
	defer tlsdial.SetKeyFor(func(n, addr string) pmtu.Key {
		lookups.Add(1)
		return pmtu.Key{Local: "office", Remote: n + "|" + addr}
	})()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			leaktest.Check(t)
			lookups.Store(0)
			cache := &pmtu.Cache{}
			for range 3 {
				c, r, err := k.dial(context.Background(), srv.addr, srv.config(), options{cache: cache})
				require.NoError(t, err, "%s", r)
				c.Close()
			}
			assert.Zero(t, lookups.Load(), "healthy dials with nothing to recall")
			assert.Zero(t, cache.Len())

			c, r, err := k.dial(context.Background(), hole, srv.config(), options{cache: cache})
			require.NoError(t, err, "%s", r)
			c.Close()
			require.NotZero(t, r.MTU, "recovered with a clamp: %s", r)
			assert.Equal(t, int32(1), lookups.Load(), "looked up once, to store what was learned")
			e, ok := cache.Load(pmtu.Key{Local: "office", Remote: "tcp|" + hole})
			require.True(t, ok, "stored under the local network")
			assert.Equal(t, r.MTU, e.MTU)

			c, r, err = k.dial(context.Background(), hole, srv.config(), options{cache: cache})
			require.NoError(t, err, "%s", r)
			c.Close()
			assert.True(t, r.FromCache, "%s", r)
			assert.Equal(t, int32(2), lookups.Load(), "looked up to recall")
		})
	}
}

// A dial looks at TCP_INFO early only where the process has not seen the
// destination answer a dial's first attempt (looks.go): after a healthy
// dial, and after a dial that started from what the cache remembered and
// needed nothing more; not after a dial that had to recover.
// TestEarlyLookIsPrecise: a dial to an address the process has not seen
// answer sets its first look, when due within a poll interval of its
// hello, precisely (the runtime's timers would wake an idle process a
// millisecond late); a dial to an address that answered does not.
func TestEarlyLookIsPrecise(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			srv := startServer(t, 0) // an address no dial of the process knows
			leaktest.Check(t)
			cache := &pmtu.Cache{}
			p0 := tlsdial.PreciseLooks()
			c, r, err := k.dial(context.Background(), srv.addr, srv.config(), options{cache: cache})
			require.NoError(t, err, "%s", r)
			c.Close()
			look := max(tlsdial.FirstLookRTTs*r.Attempts[0].ConnectRTT, tlsdial.MinFirstLook)
			var want int64
			if look < time.Millisecond {
				want = 1
			}
			assert.Equal(t, want, tlsdial.PreciseLooks()-p0, "first look %v after the hello", look)

			p0 = tlsdial.PreciseLooks()
			c, r, err = k.dial(context.Background(), srv.addr, srv.config(), options{cache: cache})
			require.NoError(t, err, "%s", r)
			c.Close()
			assert.Zero(t, tlsdial.PreciseLooks()-p0, "the address answered: the first look waits a poll interval")
		})
	}
}

func TestAnsweredAfterFirstAttemptOnly(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			srv := startServer(t, 0) // an address no dial of the process knows
			hole := blackHole(t, srv.addr, 1400, pmtutest.Upstream)
			leaktest.Check(t)
			cache := &pmtu.Cache{}
			require.False(t, tlsdial.Answered("tcp", srv.addr))
			c, r, err := k.dial(context.Background(), srv.addr, srv.config(), options{cache: cache})
			require.NoError(t, err, "%s", r)
			c.Close()
			assert.True(t, tlsdial.Answered("tcp", srv.addr), "a healthy dial")
			assert.False(t, tlsdial.Answered("tcp4", srv.addr), "per network and address")

			c, r, err = k.dial(context.Background(), hole, srv.config(), options{cache: cache})
			require.NoError(t, err, "%s", r)
			c.Close()
			require.NotZero(t, r.MTU, "recovered with a clamp: %s", r)
			assert.False(t, tlsdial.Answered("tcp", hole), "a dial that recovered")

			c, r, err = k.dial(context.Background(), hole, srv.config(), options{cache: cache})
			require.NoError(t, err, "%s", r)
			c.Close()
			require.True(t, r.FromCache, "%s", r)
			assert.Equal(t, 1, len(r.Attempts), "%s", r)
			assert.True(t, tlsdial.Answered("tcp", hole), "a dial from the cache that needed nothing more")
		})
	}
}
