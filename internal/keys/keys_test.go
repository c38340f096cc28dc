package keys

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

func TestGenerateAndParse(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		k, err := Generate("shop")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(k, "shop_") || len(k) != len("shop_")+bodyLen+checksumLen {
			t.Fatalf("malformed key of length %d", len(k))
		}
		if seen[k] {
			t.Fatal("a key repeated")
		}
		seen[k] = true
		if p, err := Parse(k); err != nil || p != "shop" {
			t.Fatalf("Parse(generated) = %q, %v", p, err)
		}
	}
	if _, err := Generate("Shop"); !errors.Is(err, ErrBadPrefix) {
		t.Fatalf("Generate with a bad prefix: %v", err)
	}
	if _, err := generate("shop", bytes.NewReader(make([]byte, 5))); err == nil {
		t.Fatal("Generate with too little randomness succeeded")
	}
}

func TestParseRejects(t *testing.T) {
	good, err := generate("shop", bytes.NewReader(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) string {
		b := []byte(good)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	cases := map[string]struct {
		in   string
		want error
	}{
		"empty":              {"", ErrNoPrefix},
		"no separator":       {"shopabc", ErrNoPrefix},
		"capital prefix":     {"Shop" + good[4:], ErrBadPrefix},
		"one-letter prefix":  {"s" + good[4:], ErrBadPrefix},
		"truncated":          {good[:len(good)-1], ErrBadLength},
		"too long":           {good + strings.Repeat("x", MaxKeyLen), ErrTooLong},
		"non-base62":         {good[:10] + "-" + good[11:], ErrBadAlphabet},
		"typo in the body":   {flip(12), ErrChecksum},
		"typo in the sum":    {flip(len(good) - 1), ErrChecksum},
		"a JWT instead":      {"eyJhbGciOiJIUzI1NiJ9.e30.x", ErrNoPrefix},
		"other prefix typed": {"shoq" + good[4:], ErrChecksum},
	}
	for name, c := range cases {
		_, err := Parse(c.in)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
		if c.in != "" && err != nil && strings.Contains(err.Error(), c.in) {
			t.Errorf("%s: the error quotes the key", name)
		}
	}
}

func TestVerify(t *testing.T) {
	pepper := bytes.Repeat([]byte("p"), MinPepperLen)
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	active, _ := Generate("shop")
	grace, _ := Generate("shop")
	ended, _ := Generate("shop")
	other, _ := Generate("shop")
	v, err := NewVerifier(pepper, []Entry{
		{Hash: HashKey(pepper, active), Consumer: "app", Roles: []string{"reader"}},
		{Hash: HashKey(pepper, grace), Consumer: "app", NotAfter: now.Add(time.Hour)},
		{Hash: HashKey(pepper, ended), Consumer: "app", NotAfter: now},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewVerifier([]byte("short"), nil); !errors.Is(err, ErrShortPepper) {
		t.Fatalf("a short pepper was accepted: %v", err)
	}
	if e, err := v.Verify(active, now); err != nil || e.Consumer != "app" || e.Roles[0] != "reader" {
		t.Fatalf("active key: %+v %v", e, err)
	}
	if _, err := v.Verify(grace, now); err != nil {
		t.Fatalf("key in grace: %v", err)
	}
	if _, err := v.Verify(ended, now); !errors.Is(err, ErrExpired) {
		t.Fatalf("key whose grace ended: %v", err)
	}
	if _, err := v.Verify(other, now); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown key: %v", err)
	}
	// Mistyped: the last character changed (to x, or to y when it was x:
	// one key in 62 ends in x, and "changing" it to x tested nothing).
	typo := "x"
	if strings.HasSuffix(active, "x") {
		typo = "y"
	}
	if _, err := v.Verify(active[:len(active)-1]+typo, now); err == nil {
		t.Fatal("a mistyped key was accepted")
	}
	// Another pepper makes every stored hash useless.
	otherPepper, _ := NewVerifier(bytes.Repeat([]byte("o"), MinPepperLen), []Entry{{Hash: HashKey(pepper, active)}})
	if _, err := otherPepper.Verify(active, now); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("hash under another pepper: %v", err)
	}
	h := HashKey(pepper, active)
	if back, err := ParseHash(h.String()); err != nil || back != h {
		t.Fatalf("hash round trip: %v", err)
	}
	if id := h.ID(); len(id) != 13 || strings.Contains(active, id[1:]) || strings.Contains(h.String(), id[1:]) {
		t.Fatalf("ID %q is not a short, unrelated fingerprint", id)
	}
}

// counter issues deterministic key IDs.
type counter struct{ n int }

func (c *counter) issue(string) (string, error) {
	c.n++
	return fmt.Sprintf("k%d", c.n), nil
}

func TestRotation(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := Policy{Every: 30 * 24 * time.Hour, Grace: 7 * 24 * time.Hour}
	c := &counter{}
	states := func(cs []Consumer) string {
		var b strings.Builder
		for _, x := range cs {
			fmt.Fprintf(&b, "%s:", x.Name)
			for _, k := range x.Keys {
				fmt.Fprintf(&b, " %s=%s", k.ID, k.State)
			}
			b.WriteString(";")
		}
		return b.String()
	}
	reasons := func(es []Event) string {
		var s []string
		for _, e := range es {
			s = append(s, e.Consumer+"/"+e.Reason+"/"+e.KeyID)
		}
		return strings.Join(s, ",")
	}

	// New consumers get keys; the next event is the rotation.
	st, ev, wait, err := Next(t0, p, []string{"app", "partner"}, nil, Requests{}, c.issue)
	if err != nil || states(st) != "app: k1=Active;partner: k2=Active;" || reasons(ev) != "app/Issued/k1,partner/Issued/k2" || wait != p.Every {
		t.Fatalf("issue: %s %s %v %v", states(st), reasons(ev), wait, err)
	}
	// Nothing is due a day later.
	st, ev, wait, _ = Next(t0.Add(24*time.Hour), p, []string{"app", "partner"}, st, Requests{}, c.issue)
	if len(ev) != 0 || wait != p.Every-24*time.Hour {
		t.Fatalf("idle: %s %v", reasons(ev), wait)
	}
	// At the end of the period: a new key first, the old one in grace.
	t1 := t0.Add(p.Every)
	st, ev, wait, _ = Next(t1, p, []string{"app", "partner"}, st, Requests{}, c.issue)
	if states(st) != "app: k3=Active k1=Grace;partner: k4=Active k2=Grace;" || wait != p.Grace {
		t.Fatalf("rotate: %s %v", states(st), wait)
	}
	if !strings.Contains(ev[0].Message, "k1 stays valid until 2026-02-07T00:00:00Z") {
		t.Fatalf("rotation message: %q", ev[0].Message)
	}
	if v := st[0].Valid(t1.Add(time.Hour)); len(v) != 2 {
		t.Fatalf("during grace both keys are valid, got %v", v)
	}
	// The grace ends: the old key is revoked, and kept for audit.
	t2 := t1.Add(p.Grace)
	st, ev, _, _ = Next(t2, p, []string{"app", "partner"}, st, Requests{}, c.issue)
	if states(st) != "app: k3=Active k1=Revoked;partner: k4=Active k2=Revoked;" || reasons(ev) != "app/GraceEnded/k1,partner/GraceEnded/k2" {
		t.Fatalf("grace end: %s %s", states(st), reasons(ev))
	}
	// A manual rotation of one consumer, idempotent when re-applied.
	req := Requests{Rotate: "partner@2026-02-10"}
	st, ev, _, _ = Next(t2, p, []string{"app", "partner"}, st, req, c.issue)
	if states(st) != "app: k3=Active k1=Revoked;partner: k5=Active k4=Grace k2=Revoked;" || reasons(ev) != "partner/Rotated/k5" || st[1].LastRotate != req.Rotate {
		t.Fatalf("manual rotate: %s %s", states(st), reasons(ev))
	}
	st, ev, _, _ = Next(t2.Add(time.Minute), p, []string{"app", "partner"}, st, req, c.issue)
	if len(ev) != 0 {
		t.Fatalf("re-applying the same rotate request rotated again: %s", reasons(ev))
	}
	// A manual revoke: every key at once, a new one issued; one revoked kept.
	st, ev, _, _ = Next(t2.Add(time.Hour), p, []string{"app", "partner"}, st, Requests{Rotate: req.Rotate, Revoke: "partner"}, c.issue)
	if states(st) != "app: k3=Active k1=Revoked;partner: k6=Active k5=Revoked;" || reasons(ev) != "partner/Revoked/k5,partner/Revoked/k4,partner/Issued/k6" {
		t.Fatalf("manual revoke: %s %s", states(st), reasons(ev))
	}
	if v := st[1].Valid(t2.Add(time.Hour)); len(v) != 1 || v[0].ID != "k6" {
		t.Fatalf("after revoke only the new key is valid, got %v", v)
	}
	// A consumer removed from the spec loses its keys.
	st, ev, _, _ = Next(t2.Add(2*time.Hour), p, []string{"app"}, st, Requests{}, c.issue)
	if states(st) != "app: k3=Active k1=Revoked;" || reasons(ev) != "partner/Removed/k6" {
		t.Fatalf("removal: %s %s", states(st), reasons(ev))
	}
	// No grace: the old key still lasts MinGrace, so its successor can be
	// delivered first.
	t3 := t2.Add(p.Every)
	st, _, wait, _ = Next(t3, Policy{Every: p.Every}, []string{"app"}, st, Requests{}, c.issue)
	if states(st) != "app: k7=Active k3=Grace k1=Revoked;" || wait != MinGrace || !st[0].Keys[1].Expires.Equal(t3.Add(MinGrace)) {
		t.Fatalf("no grace: %s %v", states(st), wait)
	}
	// Two manual rotations within one grace period: never three valid keys.
	st, _, _, _ = Next(t3, p, []string{"app"}, st, Requests{Rotate: "app@1"}, c.issue)
	st, ev, _, _ = Next(t3, p, []string{"app"}, st, Requests{Rotate: "app@2"}, c.issue)
	if n := len(st[0].Valid(t3)); n != 2 || states(st) != "app: k9=Active k8=Grace k7=Revoked;" {
		t.Fatalf("double rotation: %d valid, %s %s", n, states(st), reasons(ev))
	}
	// A clock that jumped forward and back does not stretch key lives.
	future := t3.Add(15 * 365 * 24 * time.Hour)
	st[0].Keys[0].Created = future
	st[0].Keys[1].Expires = future
	st, _, wait, _ = Next(t3, p, []string{"app"}, st, Requests{}, c.issue)
	if !st[0].Keys[0].Created.Equal(t3) || st[0].Keys[1].Expires.After(t3.Add(p.Grace)) || wait > p.Grace {
		t.Fatalf("clock jump: created %v, grace until %v, next in %v", st[0].Keys[0].Created, st[0].Keys[1].Expires, wait)
	}
	// An issuing failure changes nothing and says which consumer.
	_, _, _, err = Next(t0, p, []string{"new"}, nil, Requests{}, func(string) (string, error) { return "", errors.New("no entropy") })
	if err == nil || !strings.Contains(err.Error(), "consumer new") {
		t.Fatalf("issue error: %v", err)
	}
	if Target(" app @ token") != "app" {
		t.Fatal("Target")
	}
	_ = apiwardenv1alpha1.KeyStateActive
}

// FuzzParse: Parse never panics, never quotes its input in an error, and
// accepts only what it could have generated (right length, alphabet, sum).
func FuzzParse(f *testing.F) {
	k, _ := Generate("shop")
	f.Add(k)
	f.Add("shop_")
	f.Add("_" + strings.Repeat("a", 49))
	f.Add(strings.Repeat("x", 100))
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			if len(s) > 8 && strings.Contains(err.Error(), s) {
				t.Fatal("the error quotes the input")
			}
			return
		}
		if len(s) != len(p)+1+bodyLen+checksumLen || checksum(s[:len(s)-checksumLen]) != s[len(s)-checksumLen:] {
			t.Fatalf("accepted a malformed key of length %d", len(s))
		}
	})
}

func TestChecksumMatchesBase62(t *testing.T) {
	for _, head := range []string{"", "a", "shop_abc", strings.Repeat("z", 60)} {
		c := crc32.ChecksumIEEE([]byte(head))
		want := base62([]byte{byte(c >> 24), byte(c >> 16), byte(c >> 8), byte(c)}, checksumLen)
		if got := checksum(head); got != want {
			t.Errorf("checksum(%q) = %q, want %q", head, got, want)
		}
	}
}

func TestHasherMatchesHashKey(t *testing.T) {
	pepper := bytes.Repeat([]byte("q"), MinPepperLen)
	h, err := NewHasher(pepper)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		k, err := Generate("shop")
		if err != nil {
			t.Fatal(err)
		}
		if h.Hash(k) != HashKey(pepper, k) || h.Hash(k) != HashKey(pepper, k) {
			t.Fatal("Hasher and HashKey disagree")
		}
	}
	if _, err := NewHasher(pepper[:MinPepperLen-1]); err == nil {
		t.Fatal("short pepper accepted")
	}
}

// BenchmarkVerify is one key check against 10,000 stored hashes:
//
//	go test ./internal/keys -run '^$' -bench Verify -benchmem
func BenchmarkVerify(b *testing.B) {
	pepper := bytes.Repeat([]byte("p"), MinPepperLen)
	var entries []Entry
	var key string
	for i := range 10000 {
		k, err := Generate("shop")
		if err != nil {
			b.Fatal(err)
		}
		if i == 5000 {
			key = k
		}
		entries = append(entries, Entry{Hash: HashKey(pepper, k), Consumer: fmt.Sprintf("c%d", i)})
	}
	v, err := NewVerifier(pepper, entries)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(key, now); err != nil {
			b.Fatal(err)
		}
	}
}
