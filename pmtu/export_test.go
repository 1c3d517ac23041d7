package pmtu

import "time"

// SetCacheClock makes c read the time from now instead of time.Now.
func SetCacheClock(c *Cache, now func() time.Time) { c.clock = now }
