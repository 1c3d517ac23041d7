package pmtu

import (
	"container/list"
	"sync"
	"time"
)

// Default limits of a Cache whose fields are zero.
const (
	// DefaultCacheTTL is how long a learned size is trusted. Paths change
	// (a laptop moves between networks, a tunnel is reconfigured), so a
	// learned clamp must age out; ten minutes matches the kernel's own
	// path-MTU cache lifetime (net.ipv4.route.mtu_expires = 600 s).
	DefaultCacheTTL = 10 * time.Minute
	// DefaultCacheEntries bounds memory for processes that talk to many hosts.
	DefaultCacheEntries = 1024
)

// Key identifies a path whose working sizes are remembered.
type Key struct {
	// Local names the local network the path starts from, as
	// LocalNetwork does (KeyFor, which dialers use, sets it). "" means
	// unknown: every local network shares the entry. It keeps learning
	// per network: the same laptop works at a café and fails at the
	// office.
	Local string
	// Remote names the destination, conventionally network and address as
	// passed to a dial, such as "tcp|example.com:443".
	Remote string
}

// Entry is what was learned about a path.
type Entry struct {
	// MTU is the path MTU the TCP MSS was clamped to fit; 0 means no clamp
	// was needed.
	MTU int
	// Rung is the name of the fingerprint rung whose ClientHello completed;
	// "" means the first rung (or that the dialer does not build hellos).
	Rung string
	// Silence is how long the server stayed silent after a ClientHello
	// that got through, when that was longer than the stall window: a
	// slow server, not a black hole. Dials that find it wait that long
	// before racing a clamped attempt. Zero means nothing was learned.
	Silence time.Duration
	// Class is what the path did to a ClientHello it refused, a Class
	// whose HelloRejected is true (a split- or content-intolerant box), or
	// ClassUnknown. Dials that find it take a reset as that refusal at
	// once and skip the MSS clamps, which cannot help.
	Class Class
	// Learned is when the entry was stored; Store sets it when zero.
	Learned time.Time
	// FromNetwork reports that the dial that learned the entry did not
	// start from this destination's own evidence but from its network's
	// (LoadNetwork), so that it never counts as evidence about the
	// network: a prior must not confirm itself. False for what a dial
	// learned from the destination alone, and for every entry of a file
	// written before it existed.
	FromNetwork bool
}

// Cache remembers working sizes per path, bounded in size and age.
//
// The zero value is ready to use, in memory only; OpenFileCache returns
// one that also keeps its entries in a file, for the next process. It is
// safe for concurrent use.
type Cache struct {
	// TTL is how long an entry stays valid. Zero means DefaultCacheTTL;
	// negative means entries never expire.
	TTL time.Duration
	// MaxEntries bounds the number of entries; the least recently used is
	// evicted first. Zero means DefaultCacheEntries; negative means the
	// cache keeps nothing (every dial starts afresh).
	MaxEntries int
	// NetworkSites is how many distinct sites (see LoadNetwork) of one
	// local network must have needed a clamp before a new destination on
	// that network starts clamped. Zero means DefaultNetworkSites;
	// negative means never: every destination learns for itself.
	NetworkSites int
	mu           sync.Mutex
	clock        func() time.Time // nil means time.Now; set by tests (export_test.go)
	ll           *list.List       // of *cacheItem, most recently used first
	idx          map[Key]*list.Element
	// nets indexes, by Key.Local, the entries that are evidence about
	// their network (prior.go's evidence): few, and read on every
	// dial to a destination without an entry.
	nets   map[string]map[Key]struct{}
	priors map[string]priorMemo // by Key.Local
	file   *fileBacking         // nil: memory only (store.go)
}

type cacheItem struct {
	key   Key
	entry Entry
	site  string // site(key.Remote) when entry is evidence (prior.go)
}

// DefaultCache is the cache used by dialers that do not name their own.
var DefaultCache = &Cache{}

func (c *Cache) now() time.Time {
	if c.clock != nil {
		return c.clock()
	}
	return time.Now()
}

func (c *Cache) ttl() time.Duration {
	if c.TTL == 0 {
		return DefaultCacheTTL
	}
	return c.TTL
}

func (c *Cache) expired(e Entry, now time.Time) bool {
	ttl := c.ttl()
	return ttl > 0 && now.Sub(e.Learned) >= ttl
}

func (c *Cache) maxEntries() int {
	if c.MaxEntries == 0 {
		return DefaultCacheEntries
	}
	return c.MaxEntries
}

// Load returns the entry for k if there is one that has not expired.
func (c *Cache) Load(k Key) (Entry, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.idx[k]
	if !ok {
		return Entry{}, false
	}
	it := el.Value.(*cacheItem)
	if c.expired(it.entry, now) {
		c.remove(el)
		return Entry{}, false
	}
	c.ll.MoveToFront(el)
	return it.entry, true
}

// Store records e for k, replacing any earlier entry, and evicts the least
// recently used entries beyond MaxEntries. A file-backed cache writes the
// entry later, asynchronously (see OpenFileCache).
func (c *Cache) Store(k Key, e Entry) {
	if e.Learned.IsZero() {
		e.Learned = c.now()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	c.insert(k, e)
	if c.file != nil {
		c.file.note(c, k, change{entry: e})
	}
}

// init makes the zero Cache's list and index. Called with c.mu held.
func (c *Cache) init() {
	if c.idx == nil {
		c.idx = make(map[Key]*list.Element)
		c.ll = list.New()
	}
}

// insert stores e for k as the most recently used, and evicts beyond
// MaxEntries. Called with c.mu held, after init.
func (c *Cache) insert(k Key, e Entry) {
	el, ok := c.idx[k]
	if ok {
		el.Value.(*cacheItem).entry = e
		c.ll.MoveToFront(el)
	} else {
		el = c.ll.PushFront(&cacheItem{key: k, entry: e})
		c.idx[k] = el
	}
	if c.indexNetwork(k, e) {
		it := el.Value.(*cacheItem)
		if it.site == "" {
			it.site = site(k.Remote)
		}
	}
	limit := max(c.maxEntries(), 0)
	for c.ll.Len() > limit {
		c.remove(c.ll.Back())
	}
}

// remove forgets the entry at el. Called with c.mu held.
func (c *Cache) remove(el *list.Element) {
	k := el.Value.(*cacheItem).key
	c.ll.Remove(el)
	delete(c.idx, k)
	c.indexNetwork(k, Entry{})
}

// Delete forgets k. A file-backed cache also removes it from the file,
// unless another process learned it again since.
func (c *Cache) Delete(k Key) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.idx[k]; ok {
		c.remove(el)
	}
	if c.file != nil {
		c.file.note(c, k, change{deleted: true, at: now})
	}
}

// Len reports the number of entries, expired ones included until they are
// next looked up.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ll == nil {
		return 0
	}
	return c.ll.Len()
}
