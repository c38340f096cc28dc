package authz

import (
	"sort"
	"sync"
)

// failureTracker counts failed checks per client address in the current
// window, bounded: once max addresses are tracked, new ones are counted
// together under "other", so a flood of spoofed addresses cannot grow memory.
type failureTracker struct {
	mu     sync.Mutex
	max    int
	counts map[string]int
	other  int
}

func newFailureTracker(max int) *failureTracker {
	return &failureTracker{max: max, counts: map[string]int{}}
}

func (f *failureTracker) add(client string) {
	if client == "" {
		client = "unknown"
	}
	f.mu.Lock()
	if _, ok := f.counts[client]; ok || len(f.counts) < f.max {
		f.counts[client]++
	} else {
		f.other++
	}
	f.mu.Unlock()
}

// ClientFailures is the number of failed checks from one client address.
type ClientFailures struct {
	Client   string
	Failures int
}

// drain returns the addresses with at least min failures in the window, most
// first, and the failures of addresses beyond the bound, and starts a new
// window.
func (f *failureTracker) drain(min int) ([]ClientFailures, int) {
	f.mu.Lock()
	counts, other := f.counts, f.other
	f.counts, f.other = map[string]int{}, 0
	f.mu.Unlock()
	var out []ClientFailures
	for c, n := range counts {
		if n >= min {
			out = append(out, ClientFailures{c, n})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Failures != out[j].Failures {
			return out[i].Failures > out[j].Failures
		}
		return out[i].Client < out[j].Client
	})
	return out, other
}
