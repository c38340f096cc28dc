package controllers

import (
	"hash/maphash"
	"sync"
	"time"
)

// reapplyAfter bounds how long an unchanged object goes without being
// applied again: a rendered object edited or deleted by someone else is
// restored at the latest this long after, on the next reconcile.
const reapplyAfter = 10 * time.Minute

// appliedCache remembers, for every object this process applied, a digest
// of what it applied and when, so that a reconcile can skip an apply that
// would change nothing (an apply costs the apiserver a full managed-fields
// computation even then). The zero value is ready to use.
//
// It holds 16 bytes per object, plus the map's own overhead: the object is
// named by a 64-bit seeded hash of its key and the content by a 64-bit
// seeded hash of its JSON. A collision of two keys merges two records,
// which costs at worst an apply that could have been skipped or a skipped
// ownership check; a collision of two contents skips one needed apply for
// at most reapplyAfter. With 64 bits and a seed chosen at start, neither
// is expected in the life of any cluster, and neither can be aimed at.
type appliedCache struct {
	mu sync.Mutex
	m  map[uint64]appliedRecord
}

// appliedRecord is the last successful apply of one object.
type appliedRecord struct {
	sum uint64 // seeded hash of the applied JSON
	at  int64  // when, in Unix nanoseconds
}

// appliedSeed seeds the hashes of this process.
var appliedSeed = maphash.MakeSeed()

// seen reports whether this process applied key (and has not forgotten it
// since), and whether data is what it applied there less than reapplyAfter
// ago.
func (c *appliedCache) seen(key string, data []byte) (known, same bool) {
	k := maphash.String(appliedSeed, key)
	c.mu.Lock()
	rec, known := c.m[k]
	c.mu.Unlock()
	if !known {
		return false, false
	}
	return true, rec.sum == maphash.Bytes(appliedSeed, data) && time.Since(time.Unix(0, rec.at)) < reapplyAfter
}

// remember records data as applied to key now.
func (c *appliedCache) remember(key string, data []byte) {
	k, rec := maphash.String(appliedSeed, key), appliedRecord{sum: maphash.Bytes(appliedSeed, data), at: time.Now().UnixNano()}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[uint64]appliedRecord{}
	}
	c.m[k] = rec
	c.mu.Unlock()
}

// forget drops what was recorded for key: its next apply is made, after
// the ownership check.
func (c *appliedCache) forget(key string) {
	k := maphash.String(appliedSeed, key)
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

// clear forgets everything.
func (c *appliedCache) clear() {
	c.mu.Lock()
	c.m = nil
	c.mu.Unlock()
}
