package keys

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"time"
)

// Entry is what a valid key identifies.
type Entry struct {
	// Hash is the key's stored hash.
	Hash Hash
	// Consumer is the consumer the key belongs to.
	Consumer string
	// Roles are the consumer's roles.
	Roles []string
	// NotAfter, when not zero, is when the key stops being accepted (the end
	// of a grace period).
	NotAfter time.Time
}

// Errors Verify returns. They never quote the key.
var (
	ErrUnknownKey = errors.New("the API key is not valid")
	ErrExpired    = errors.New("the API key has expired")
)

// Verifier checks keys against stored hashes. It is immutable; build a new
// one when the hash store changes. It is safe for concurrent use.
type Verifier struct {
	hasher  *Hasher
	entries map[Hash]Entry
}

// MinPepperLen is the shortest pepper accepted: a missing or truncated
// pepper Secret must fail loudly, not hash keys that will never match.
const MinPepperLen = 32

// ErrShortPepper is returned for a pepper shorter than MinPepperLen.
var ErrShortPepper = fmt.Errorf("the pepper is shorter than %d bytes", MinPepperLen)

// NewVerifier returns a verifier for the given entries.
func NewVerifier(pepper []byte, entries []Entry) (*Verifier, error) {
	h, err := NewHasher(pepper)
	if err != nil {
		return nil, err
	}
	v := &Verifier{hasher: h, entries: make(map[Hash]Entry, len(entries))}
	for _, e := range entries {
		v.entries[e.Hash] = e
	}
	return v, nil
}

// Len returns the number of keys the verifier accepts.
func (v *Verifier) Len() int { return len(v.entries) }

// Verify returns the entry of a valid key. A malformed key is rejected by
// Parse before any hashing, so typos cost nothing. The lookup is by HMAC
// hash: its timing depends on the hash, which an attacker cannot relate to
// a key without the pepper; the stored hash is then compared in constant
// time all the same.
func (v *Verifier) Verify(key string, now time.Time) (Entry, error) {
	if _, err := Parse(key); err != nil {
		return Entry{}, err
	}
	h := v.hasher.Hash(key)
	e, ok := v.entries[h]
	if !ok || subtle.ConstantTimeCompare(e.Hash[:], h[:]) != 1 {
		return Entry{}, ErrUnknownKey
	}
	if !e.NotAfter.IsZero() && !now.Before(e.NotAfter) {
		return Entry{}, ErrExpired
	}
	return e, nil
}
