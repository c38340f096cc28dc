// Package load is the load generator the benchmark harnesses under
// test/bench share: n calls from c workers, closed loop or paced, with the
// latency of each call, and the median of rounds by throughput.
package load

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Options bound a run.
type Options struct {
	// Requests is the number of calls; Clients the number of workers.
	Requests, Clients int
	// Rate, when > 0, paces the run: call i is sent no earlier than
	// start + i/Rate. Latency counts from the send: the sleep's wake-up delay
	// belongs to the load generator, not to the server.
	Rate int
	// Duration, when > 0, stops the run early; Result.N says how many calls
	// were made.
	Duration time.Duration
}

// Result is one run.
type Result struct {
	N        int
	Elapsed  time.Duration
	P50, P99 time.Duration
}

// Rate is the calls per second.
func (r Result) Rate() float64 { return float64(r.N) / r.Elapsed.Seconds() }

// Run makes the calls; do gets the worker's index and the call's. The first
// error stops the worker that met it and is returned.
func Run(o Options, do func(worker, i int) error) (Result, error) {
	lat := make([]time.Duration, o.Requests)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	var (
		errOnce  sync.Once
		firstErr error
	)
	start := time.Now()
	var deadline time.Time
	if o.Duration > 0 {
		deadline = start.Add(o.Duration)
	}
	for w := range o.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= o.Requests || (!deadline.IsZero() && time.Now().After(deadline)) {
					return
				}
				if o.Rate > 0 {
					due := start.Add(time.Duration(i) * time.Second / time.Duration(o.Rate))
					if d := time.Until(due); d > 0 {
						time.Sleep(d)
					}
				}
				t := time.Now()
				if err := do(w, i); err != nil {
					errOnce.Do(func() { firstErr = err }) // errors of any type: not an atomic.Value
					return
				}
				lat[i] = time.Since(t)
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return Result{}, firstErr
	}
	// Calls not made (Duration ran out) left zeros: keep the made ones.
	made := slices.DeleteFunc(lat, func(d time.Duration) bool { return d == 0 })
	slices.Sort(made)
	r := Result{N: int(done.Load()), Elapsed: elapsed}
	if len(made) > 0 {
		r.P50, r.P99 = made[len(made)/2], made[len(made)*99/100]
	}
	return r, nil
}

// Median returns the run with the median throughput.
func Median(rs []Result) Result {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b Result) int {
		switch {
		case a.Rate() < b.Rate():
			return -1
		case a.Rate() > b.Rate():
			return 1
		}
		return 0
	})
	return rs[len(rs)/2]
}

// Micros formats a latency for the tables.
func Micros(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }
