package enrichsim

import (
	"sync"
	"sync/atomic"
	"time"
)

// Faults are runtime-adjustable misbehaviours. Counts are consumed one per request.
type Faults struct {
	ServerErrors atomic.Int64 // the next N requests answer 500
	Malformed    atomic.Int64 // the next N requests answer truncated JSON
	UnknownIDs   atomic.Int64 // the next N requests also answer for an id nobody asked about

	mu         sync.Mutex
	throttleTo time.Time
	slow       time.Duration
	noMatch    map[string]bool
	missing    map[string]bool
	wrongType  map[string]bool
	extra      map[string]bool
}

// Throttle answers every request with 429 + Retry-After until d has passed.
func (f *Faults) Throttle(d time.Duration) {
	f.mu.Lock()
	f.throttleTo = time.Now().Add(d)
	f.mu.Unlock()
}

// Slow adds d to every response (e.g. past the client's timeout); 0 turns it off.
func (f *Faults) Slow(d time.Duration) { f.mu.Lock(); f.slow = d; f.mu.Unlock() }

// NoMatch answers {"id":..,"error":"no match"} for these ids.
func (f *Faults) NoMatch(ids ...string) { f.set(&f.noMatch, ids) }

// Missing leaves these ids out of the results.
func (f *Faults) Missing(ids ...string) { f.set(&f.missing, ids) }

// WrongType answers numberofemployees as a string for these ids.
func (f *Faults) WrongType(ids ...string) { f.set(&f.wrongType, ids) }

// ExtraFields adds columns off the allow-list (ownerid, _parentaccountid_value) for these ids.
func (f *Faults) ExtraFields(ids ...string) { f.set(&f.extra, ids) }

func (f *Faults) set(m *map[string]bool, ids []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *m == nil {
		*m = map[string]bool{}
	}
	for _, id := range ids {
		(*m)[id] = true
	}
}

func (f *Faults) take(n *atomic.Int64) bool {
	for {
		v := n.Load()
		if v <= 0 {
			return false
		}
		if n.CompareAndSwap(v, v-1) {
			return true
		}
	}
}

func (f *Faults) throttling() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return time.Now().Before(f.throttleTo)
}

func (f *Faults) delay() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.slow
}

// answer returns the results for one asked-about id.
func (f *Faults) answer(id string) []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.missing[id]:
		return nil
	case f.noMatch[id]:
		return []map[string]any{{"id": id, "error": "no match"}}
	}
	fields := Truth(id)
	if f.wrongType[id] {
		fields["numberofemployees"] = "about a hundred"
	}
	if f.extra[id] {
		fields["ownerid"] = "00000000-0000-0000-0000-00000000beef"
		fields["_parentaccountid_value"] = "00000000-0000-0000-0000-00000000cafe"
	}
	return []map[string]any{{"id": id, "fields": fields}}
}

func (f *Faults) extraUnknown() []map[string]any {
	if !f.take(&f.UnknownIDs) {
		return nil
	}
	return []map[string]any{{"id": "99999999-9999-4999-8999-999999999999", "fields": map[string]any{"description": "who asked?"}}}
}
