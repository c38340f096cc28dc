package keys

import (
	"fmt"
	"sort"
	"strings"
	"time"

	apiwardenv1alpha1 "github.com/apiwarden/apiwarden/api/v1alpha1"
)

// Key is the state of one key of a consumer, without the key itself.
type Key struct {
	ID      string
	State   apiwardenv1alpha1.KeyState
	Created time.Time
	// Expires is when a Grace key stops being accepted, or when a Revoked
	// key was revoked.
	Expires time.Time
}

// Consumer is the rotation state of one consumer.
type Consumer struct {
	Name string
	// Keys, newest first.
	Keys []Key
	// LastRotate and LastRevoke are the last annotation values acted on.
	LastRotate, LastRevoke string
}

// Policy is an APIKeySet's rotation schedule.
type Policy struct {
	Every, Grace time.Duration
}

// Requests are the manual rotate and revoke asked for through the
// apiwarden.io/rotate and apiwarden.io/revoke annotations.
type Requests struct {
	Rotate, Revoke string
}

// Target returns the consumer a request names: "<consumer>" or
// "<consumer>@<token>".
func Target(request string) string {
	c, _, _ := strings.Cut(request, "@")
	return strings.TrimSpace(c)
}

// Event says what the state machine did, for Events and metrics. It never
// carries a key, only IDs.
type Event struct {
	Consumer string
	// Reason is Issued, Rotated, GraceEnded, Revoked or Removed.
	Reason string
	KeyID  string
	// Message is one sentence for humans.
	Message string
}

// Issue creates a new key for a consumer and returns its ID; the caller
// keeps the plaintext for delivery. It is the state machine's only effect,
// and must have none outside memory: when Next fails, it returns no state,
// and keys issued during that pass are simply never delivered.
type Issue func(consumer string) (id string, err error)

// MinGrace is the shortest time a replaced key stays valid, whatever the
// policy says: long enough for its successor to be delivered, so a consumer
// is never without a working key.
const MinGrace = time.Minute

// keptRevoked is how many revoked keys a consumer's status keeps, for audit.
const keptRevoked = 1

// Next moves every consumer's keys forward to now and returns the new state,
// what happened, and how long until something is due (0 when nothing is).
// Rules:
//   - a consumer of the spec without an Active key gets one;
//   - an Active key older than Every, or a manual rotate, is replaced: the
//     new key is issued first, then the old one enters Grace until
//     now + Grace (with no grace it is revoked at once);
//   - a Grace key past its end is revoked;
//   - a manual revoke revokes every key of the consumer at once and issues a
//     new one;
//   - a consumer gone from the spec has every key revoked and leaves the state;
//   - each consumer keeps at most one revoked key, for audit.
func Next(now time.Time, p Policy, spec []string, state []Consumer, req Requests, issue Issue) ([]Consumer, []Event, time.Duration, error) {
	inSpec := make(map[string]bool, len(spec))
	for _, name := range spec {
		inSpec[name] = true
	}
	byName := make(map[string]Consumer, len(state))
	for _, c := range state {
		byName[c.Name] = c
	}
	var events []Event
	var out []Consumer
	var next time.Time
	due := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}

	names := append([]string(nil), spec...)
	sort.Strings(names)
	for _, name := range names {
		c := byName[name]
		c.Name = name
		c.Keys = append([]Key(nil), c.Keys...)

		// A clock that jumped (a restored backup, a skewed node) must not
		// stretch a key's life: nothing is created in the future, and no
		// grace ends later than a full grace from now.
		for i := range c.Keys {
			k := &c.Keys[i]
			if k.Created.After(now) {
				k.Created = now
			}
			if k.State == apiwardenv1alpha1.KeyStateGrace && k.Expires.After(now.Add(max(p.Grace, MinGrace))) {
				k.Expires = now.Add(max(p.Grace, MinGrace))
			}
		}

		// Manual revoke: every key goes, at once.
		if req.Revoke != "" && Target(req.Revoke) == name && req.Revoke != c.LastRevoke {
			c.LastRevoke = req.Revoke
			for i := range c.Keys {
				if c.Keys[i].State != apiwardenv1alpha1.KeyStateRevoked {
					c.Keys[i].State, c.Keys[i].Expires = apiwardenv1alpha1.KeyStateRevoked, now
					events = append(events, Event{name, "Revoked", c.Keys[i].ID, fmt.Sprintf("Key %s of consumer %s was revoked on request.", c.Keys[i].ID, name)})
				}
			}
		}

		// Grace periods that ended.
		for i := range c.Keys {
			k := &c.Keys[i]
			if k.State == apiwardenv1alpha1.KeyStateGrace && !now.Before(k.Expires) {
				k.State, k.Expires = apiwardenv1alpha1.KeyStateRevoked, now
				events = append(events, Event{name, "GraceEnded", k.ID, fmt.Sprintf("The grace period of key %s of consumer %s ended; it is no longer accepted.", k.ID, name)})
			}
		}

		old := c.Active()
		rotate := req.Rotate != "" && Target(req.Rotate) == name && req.Rotate != c.LastRotate
		if rotate {
			c.LastRotate = req.Rotate
		}
		if old != nil && (rotate || !now.Before(old.Created.Add(p.Every))) {
			id, err := issue(name)
			if err != nil {
				return nil, nil, 0, fmt.Errorf("issuing a key for consumer %s: %w", name, err)
			}
			// At most two keys are valid at once: a key still in grace from
			// an earlier rotation ends now.
			for i := range c.Keys {
				if c.Keys[i].State == apiwardenv1alpha1.KeyStateGrace {
					c.Keys[i].State, c.Keys[i].Expires = apiwardenv1alpha1.KeyStateRevoked, now
					events = append(events, Event{name, "GraceEnded", c.Keys[i].ID, fmt.Sprintf("Key %s of consumer %s was replaced twice; it is no longer accepted.", c.Keys[i].ID, name)})
				}
			}
			// The successor exists before the old key starts its grace, and
			// the grace lasts at least until the successor can be delivered.
			old.State, old.Expires = apiwardenv1alpha1.KeyStateGrace, now.Add(max(p.Grace, MinGrace))
			why := "it reached the end of its rotation period"
			if rotate {
				why = "rotation was requested"
			}
			events = append(events, Event{name, "Rotated", id, fmt.Sprintf("Consumer %s has new key %s because %s; key %s stays valid until %s.", name, id, why, old.ID, old.Expires.UTC().Format(time.RFC3339))})
			c.Keys = append([]Key{{ID: id, State: apiwardenv1alpha1.KeyStateActive, Created: now}}, c.Keys...)
		} else if old == nil {
			id, err := issue(name)
			if err != nil {
				return nil, nil, 0, fmt.Errorf("issuing a key for consumer %s: %w", name, err)
			}
			events = append(events, Event{name, "Issued", id, fmt.Sprintf("Consumer %s has new key %s.", name, id)})
			c.Keys = append([]Key{{ID: id, State: apiwardenv1alpha1.KeyStateActive, Created: now}}, c.Keys...)
		}

		c.Keys = trimRevoked(c.Keys)
		for _, k := range c.Keys {
			switch k.State {
			case apiwardenv1alpha1.KeyStateActive:
				due(k.Created.Add(p.Every))
			case apiwardenv1alpha1.KeyStateGrace:
				due(k.Expires)
			}
		}
		out = append(out, c)
	}

	// Consumers gone from the spec lose every key.
	var gone []string
	for name := range byName {
		if !inSpec[name] {
			gone = append(gone, name)
		}
	}
	sort.Strings(gone)
	for _, name := range gone {
		for _, k := range byName[name].Keys {
			if k.State != apiwardenv1alpha1.KeyStateRevoked {
				events = append(events, Event{name, "Removed", k.ID, fmt.Sprintf("Consumer %s was removed; its key %s is no longer accepted.", name, k.ID)})
			}
		}
	}

	var wait time.Duration
	if !next.IsZero() {
		wait = next.Sub(now)
	}
	return out, events, wait, nil
}

// trimRevoked keeps the newest keptRevoked revoked keys, in order.
func trimRevoked(ks []Key) []Key {
	out := ks[:0]
	revoked := 0
	for _, k := range ks {
		if k.State == apiwardenv1alpha1.KeyStateRevoked {
			revoked++
			if revoked > keptRevoked {
				continue
			}
		}
		out = append(out, k)
	}
	return out
}

// Active returns the consumer's Active key, or nil.
func (c Consumer) Active() *Key {
	for i := range c.Keys {
		if c.Keys[i].State == apiwardenv1alpha1.KeyStateActive {
			return &c.Keys[i]
		}
	}
	return nil
}

// Has reports whether the consumer's state holds a key with this ID.
func (c Consumer) Has(id string) bool {
	for _, k := range c.Keys {
		if k.ID == id {
			return true
		}
	}
	return false
}

// Valid returns the keys a consumer's state accepts at now: Active keys and
// Grace keys within their grace.
func (c Consumer) Valid(now time.Time) []Key {
	var out []Key
	for _, k := range c.Keys {
		if k.State == apiwardenv1alpha1.KeyStateActive || (k.State == apiwardenv1alpha1.KeyStateGrace && now.Before(k.Expires)) {
			out = append(out, k)
		}
	}
	return out
}
