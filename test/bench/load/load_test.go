package load

import (
	"errors"
	"fmt"
	"testing"
)

type otherError struct{}

func (otherError) Error() string { return "other" }

// TestRunReturnsAnErrorOfAnyType: workers failing with errors of different
// concrete types (which an atomic.Value would refuse with a panic) end the
// run with one of them.
func TestRunReturnsAnErrorOfAnyType(t *testing.T) {
	_, err := Run(Options{Clients: 4, Requests: 100}, func(worker, i int) error {
		if worker%2 == 0 {
			return fmt.Errorf("call %d: %w", i, errors.New("wrapped"))
		}
		return otherError{}
	})
	if err == nil {
		t.Fatal("no error returned")
	}
	r, err := Run(Options{Clients: 4, Requests: 100}, func(int, int) error { return nil })
	if err != nil || r.N != 100 {
		t.Fatalf("a clean run: %+v, %v; want 100 calls and no error", r, err)
	}
}
