package pmtu_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fitshake/fitshake/pmtu"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func TestCacheTTL(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	c := &pmtu.Cache{}
	pmtu.SetCacheClock(c, clk.Now)
	k := pmtu.Key{Remote: "tcp|example.com:443"}
	_, ok := c.Load(k)
	require.False(t, ok, "empty cache")

	c.Store(k, pmtu.Entry{MTU: 1400, Rung: "pq"})
	e, ok := c.Load(k)
	require.True(t, ok)
	assert.Equal(t, 1400, e.MTU)
	assert.Equal(t, clk.Now(), e.Learned, "Store stamps the entry")

	clk.advance(pmtu.DefaultCacheTTL - time.Second)
	_, ok = c.Load(k)
	assert.True(t, ok, "still fresh")
	clk.advance(time.Second)
	_, ok = c.Load(k)
	assert.False(t, ok, "expired at TTL")
	assert.Zero(t, c.Len(), "expired entries are dropped on lookup")
}

func TestCacheNeverExpires(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	c := &pmtu.Cache{TTL: -1}
	pmtu.SetCacheClock(c, clk.Now)
	k := pmtu.Key{Remote: "a"}
	c.Store(k, pmtu.Entry{MTU: 1280})
	clk.advance(1000 * time.Hour)
	_, ok := c.Load(k)
	assert.True(t, ok)
}

func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := &pmtu.Cache{MaxEntries: 3}
	key := func(i int) pmtu.Key { return pmtu.Key{Remote: fmt.Sprint(i)} }
	for i := range 3 {
		c.Store(key(i), pmtu.Entry{MTU: 1400})
	}
	_, ok := c.Load(key(0)) // 0 is now the most recently used
	require.True(t, ok)
	c.Store(key(3), pmtu.Entry{MTU: 1400})
	assert.Equal(t, 3, c.Len())
	_, ok = c.Load(key(1))
	assert.False(t, ok, "1 was least recently used")
	for _, i := range []int{0, 2, 3} {
		_, ok = c.Load(key(i))
		assert.True(t, ok, "kept %d", i)
	}
}

func TestCacheDisabled(t *testing.T) {
	c := &pmtu.Cache{MaxEntries: -1}
	c.Store(pmtu.Key{Remote: "a"}, pmtu.Entry{MTU: 1400})
	_, ok := c.Load(pmtu.Key{Remote: "a"})
	assert.False(t, ok)
}

func TestCacheKeyedByLocalNetwork(t *testing.T) {
	c := &pmtu.Cache{}
	office := pmtu.Key{Local: "office", Remote: "tcp|example.com:443"}
	cafe := pmtu.Key{Local: "cafe", Remote: "tcp|example.com:443"}
	c.Store(office, pmtu.Entry{MTU: 1400})
	_, ok := c.Load(cafe)
	assert.False(t, ok)
	c.Delete(office)
	_, ok = c.Load(office)
	assert.False(t, ok)
}

func TestCacheConcurrent(t *testing.T) {
	c := &pmtu.Cache{MaxEntries: 16}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				k := pmtu.Key{Remote: fmt.Sprint((g*7 + i) % 40)}
				c.Store(k, pmtu.Entry{MTU: 1400})
				c.Load(k)
				if i%50 == 0 {
					c.Delete(k)
				}
			}
		}()
	}
	wg.Wait()
	assert.LessOrEqual(t, c.Len(), 16)
}
