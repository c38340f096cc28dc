package controllers

import (
	"hash/maphash"
	"testing"
	"time"
)

func TestAppliedCache(t *testing.T) {
	var c appliedCache
	check := func(step, key, data string, wantKnown, wantSame bool) {
		t.Helper()
		if known, same := c.seen(key, []byte(data)); known != wantKnown || same != wantSame {
			t.Errorf("%s: seen(%q, %q) = known %v, same %v; want %v, %v", step, key, data, known, same, wantKnown, wantSame)
		}
	}
	check("empty", "v1/A/ns/a", "x", false, false)
	c.remember("v1/A/ns/a", []byte("x"))
	check("applied", "v1/A/ns/a", "x", true, true)
	check("content changed", "v1/A/ns/a", "y", true, false)
	check("another object", "v1/A/ns/b", "x", false, false)
	c.remember("v1/A/ns/b", []byte("y"))
	check("second object", "v1/A/ns/b", "y", true, true)
	check("first unchanged by the second", "v1/A/ns/a", "x", true, true)

	// Older than reapplyAfter: known (no ownership check again), but
	// applied anew.
	k := maphash.String(appliedSeed, "v1/A/ns/a")
	rec := c.m[k]
	rec.at = time.Now().Add(-reapplyAfter - time.Second).UnixNano()
	c.m[k] = rec
	check("stale", "v1/A/ns/a", "x", true, false)

	c.forget("v1/A/ns/a")
	check("forgotten", "v1/A/ns/a", "x", false, false)
	check("other kept", "v1/A/ns/b", "y", true, true)
	c.clear()
	check("cleared", "v1/A/ns/b", "y", false, false)
	c.remember("v1/A/ns/b", []byte("y"))
	check("usable after clear", "v1/A/ns/b", "y", true, true)
}
