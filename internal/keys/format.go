// Package keys defines apiwarden's API keys: their format (a prefix, 256
// random bits in base62 and a checksum, so a typo is caught without a lookup
// and secret scanners recognise leaked keys), how they are stored (only an
// HMAC-SHA-256 hash under a server-side pepper), how they are verified (a
// hash lookup and a constant-time comparison), and how each consumer's keys
// rotate (a pure state machine). It does no I/O.
//
// A key never appears in an error, a log line or a status: errors describe
// what is wrong with a key without quoting it, and keys are identified
// everywhere by ID, a short fingerprint of their hash.
package keys

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math/big"
	"regexp"
	"strings"
	"sync"
	"unsafe"
)

const (
	// secretBytes is the entropy of a key: 256 bits.
	secretBytes = 32
	// bodyLen is the length of 256 bits in base62 (62^43 > 2^256).
	bodyLen = 43
	// checksumLen is the length of a CRC-32 in base62 (62^6 > 2^32).
	checksumLen = 6
	// MaxPrefixLen bounds the prefix, as the APIKeySet CRD does.
	MaxPrefixLen = 16
	// MaxKeyLen is the longest well-formed key; longer input is rejected
	// before any other work.
	MaxKeyLen = MaxPrefixLen + 1 + bodyLen + checksumLen
)

const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{1,15}$`)

// Errors Parse returns. None of them quotes the key.
var (
	ErrTooLong     = errors.New("the key is longer than any apiwarden key")
	ErrNoPrefix    = errors.New("the key has no prefix: want <prefix>_<secret>")
	ErrBadPrefix   = errors.New("the key's prefix is not 2 to 16 lower-case letters and digits")
	ErrBadLength   = fmt.Errorf("the key's secret part is not %d characters", bodyLen+checksumLen)
	ErrBadAlphabet = errors.New("the key contains characters outside base62")
	ErrChecksum    = errors.New("the key's checksum does not match: it was mistyped or truncated")
)

// Generate returns a new key with the given prefix, from crypto/rand.
func Generate(prefix string) (string, error) {
	return generate(prefix, rand.Reader)
}

func generate(prefix string, r io.Reader) (string, error) {
	if !prefixRE.MatchString(prefix) {
		return "", ErrBadPrefix
	}
	secret := make([]byte, secretBytes)
	if _, err := io.ReadFull(r, secret); err != nil {
		return "", fmt.Errorf("reading randomness: %w", err)
	}
	body := base62(secret, bodyLen)
	head := prefix + "_" + body
	return head + checksum(head), nil
}

// Parse checks that s is a well-formed key and returns its prefix. It
// rejects anything else with a reason that never quotes s.
func Parse(s string) (prefix string, err error) {
	if len(s) > MaxKeyLen {
		return "", ErrTooLong
	}
	prefix, rest, ok := strings.Cut(s, "_")
	if !ok {
		return "", ErrNoPrefix
	}
	if !validPrefix(prefix) {
		return "", ErrBadPrefix
	}
	if len(rest) != bodyLen+checksumLen {
		return "", ErrBadLength
	}
	for i := 0; i < len(rest); i++ {
		if strings.IndexByte(alphabet, rest[i]) < 0 {
			return "", ErrBadAlphabet
		}
	}
	head := s[:len(s)-checksumLen]
	want := checksumDigits(head)
	if subtle.ConstantTimeCompare(want[:], []byte(s[len(s)-checksumLen:])) != 1 {
		return "", ErrChecksum
	}
	return prefix, nil
}

// validPrefix is prefixRE without the regexp machinery: Parse is on the
// authz service's hot path.
func validPrefix(p string) bool {
	if len(p) < 2 || len(p) > MaxPrefixLen || p[0] < 'a' || p[0] > 'z' {
		return false
	}
	for i := 1; i < len(p); i++ {
		if (p[i] < 'a' || p[i] > 'z') && (p[i] < '0' || p[i] > '9') {
			return false
		}
	}
	return true
}

// checksum is the CRC-32 (IEEE) of the prefix, separator and body, in base62.
func checksum(head string) string {
	d := checksumDigits(head)
	return string(d[:])
}

// checksumDigits computes checksum without allocating.
func checksumDigits(head string) [checksumLen]byte {
	c := crc32.Update(0, crc32.IEEETable, unsafeBytes(head))
	var out [checksumLen]byte
	for i := checksumLen - 1; i >= 0; i-- {
		out[i] = alphabet[c%62]
		c /= 62
	}
	return out
}

// unsafeBytes views s as a byte slice that must not be modified.
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// base62 renders b as a big-endian number in exactly n base62 digits.
func base62(b []byte, n int) string {
	v := new(big.Int).SetBytes(b)
	base := big.NewInt(62)
	out := make([]byte, n)
	mod := new(big.Int)
	for i := n - 1; i >= 0; i-- {
		v.DivMod(v, base, mod)
		out[i] = alphabet[mod.Int64()]
	}
	return string(out)
}

// Hash is what apiwarden stores for a key: HMAC-SHA-256 under a pepper kept
// in its own Secret, so a leaked hash store alone cannot be brute-forced
// offline (the keys have 256 bits anyway; the pepper guards against a
// weaker future format).
type Hash [sha256.Size]byte

// HashKey returns the stored form of a key.
func HashKey(pepper []byte, key string) Hash {
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(key))
	var h Hash
	copy(h[:], m.Sum(nil))
	return h
}

// Hasher computes HashKey for one pepper without allocating: HMAC states
// are pooled. It is safe for concurrent use.
type Hasher struct {
	pool sync.Pool
}

type hmacState struct {
	mac hash.Hash
	sum [sha256.Size]byte
}

// NewHasher returns a Hasher for pepper, which must be at least MinPepperLen
// bytes.
func NewHasher(pepper []byte) (*Hasher, error) {
	if len(pepper) < MinPepperLen {
		return nil, ErrShortPepper
	}
	p := append([]byte(nil), pepper...)
	h := &Hasher{}
	h.pool.New = func() any { return &hmacState{mac: hmac.New(sha256.New, p)} }
	return h, nil
}

// Hash returns HashKey(pepper, key).
func (h *Hasher) Hash(key string) Hash {
	st := h.pool.Get().(*hmacState)
	st.mac.Reset()
	st.mac.Write(unsafeBytes(key))
	var out Hash
	copy(out[:], st.mac.Sum(st.sum[:0]))
	h.pool.Put(st)
	return out
}

// ID is the fingerprint shown for a key in status, logs and Secrets'
// annotations: the first 6 bytes of SHA-256 of its hash, in hex. It reveals
// nothing usable about the key.
func (h Hash) ID() string {
	sum := sha256.Sum256(h[:])
	return "k" + hex.EncodeToString(sum[:6])
}

// String returns the hash in hex, the form kept in the hash store.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// ParseHash reads a hash written by String.
func ParseHash(s string) (Hash, error) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, errors.New("not a key hash: want 64 hex characters")
	}
	copy(h[:], b)
	return h, nil
}
