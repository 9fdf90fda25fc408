package enrichsim

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Faults holds the misbehaviour the simulator injects. Every method and field is safe to use
// while requests are being served. Fault durations are real time, not scaled by TimeScale:
// they are usually set against a client's real timeouts.
type Faults struct {
	// ServerErrors makes the next N requests fail with 500.
	ServerErrors atomic.Int64
	// Malformed makes the next N requests get a 200 whose body is truncated JSON.
	Malformed atomic.Int64
	// UnknownIDs makes the next N answered requests carry one extra result for an id that was
	// not asked about.
	UnknownIDs atomic.Int64

	mu            sync.Mutex
	noMatch       map[string]bool
	missing       map[string]bool
	wrongType     map[string]bool
	extraFields   map[string]bool
	duplicate     map[string]bool
	unknownSeq    uint64
	throttleUntil time.Time
	slow          time.Duration
}

func newFaults() *Faults {
	f := &Faults{}
	f.Clear()
	return f
}

// Clear removes every injected fault.
func (f *Faults) Clear() {
	f.ServerErrors.Store(0)
	f.Malformed.Store(0)
	f.UnknownIDs.Store(0)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.noMatch = map[string]bool{}
	f.missing = map[string]bool{}
	f.wrongType = map[string]bool{}
	f.extraFields = map[string]bool{}
	f.duplicate = map[string]bool{}
	f.throttleUntil = time.Time{}
	f.slow = 0
}

func addIDs(set map[string]bool, ids []string) {
	for _, id := range ids {
		set[strings.ToLower(id)] = true
	}
}

// NoMatch makes the simulator answer {"id":..,"error":"no match"} for these ids.
func (f *Faults) NoMatch(ids ...string) { f.mu.Lock(); addIDs(f.noMatch, ids); f.mu.Unlock() }

// Missing makes the simulator leave these ids out of its results.
func (f *Faults) Missing(ids ...string) { f.mu.Lock(); addIDs(f.missing, ids); f.mu.Unlock() }

// WrongType makes the simulator send numberofemployees as a string ("about 120") for these
// ids, as a sloppy real service might.
func (f *Faults) WrongType(ids ...string) { f.mu.Lock(); addIDs(f.wrongType, ids); f.mu.Unlock() }

// ExtraFields makes the simulator add fields that are not on the job's allow-list for these
// ids: ownerid, _parentaccountid_value and statecode 1 (which would deactivate the account if
// a caller wrote it).
func (f *Faults) ExtraFields(ids ...string) {
	f.mu.Lock()
	addIDs(f.extraFields, ids)
	f.mu.Unlock()
}

// Duplicate makes the simulator answer these ids twice in one response, the second copy with
// description "duplicate answer", so that "first result wins" is observable.
func (f *Faults) Duplicate(ids ...string) { f.mu.Lock(); addIDs(f.duplicate, ids); f.mu.Unlock() }

// Throttle answers every request arriving during the next d with 429 and a Retry-After
// equal to the time left.
func (f *Faults) Throttle(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.throttleUntil = time.Now().Add(d)
}

// Slow adds d to every request's latency (0 removes it).
func (f *Faults) Slow(d time.Duration) { f.mu.Lock(); f.slow = d; f.mu.Unlock() }

// gate is what the handler decides before looking at the body.
type gate struct {
	throttleFor time.Duration // > 0: answer 429
	fail        bool          // answer 500
	malformed   bool          // answer broken JSON
	slow        time.Duration // real extra latency
}

func (f *Faults) takeGate(now time.Time) gate {
	f.mu.Lock()
	left, slow := f.throttleUntil.Sub(now), f.slow
	f.mu.Unlock()
	if left > 0 {
		return gate{throttleFor: left}
	}
	g := gate{slow: slow}
	switch {
	case take(&f.ServerErrors):
		g.fail = true
	case take(&f.Malformed):
		g.malformed = true
	}
	return g
}

// take consumes one unit of a fault counter, if any is left.
func take(n *atomic.Int64) bool {
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

// recordFault is the per-record misbehaviour.
type recordFault struct {
	noMatch, missing, wrongType, extraFields, duplicate bool
}

// takeRecords reports the faults of each (lower-cased) id and, if an unknown-id fault is
// pending, an id to add to the answer.
func (f *Faults) takeRecords(ids []string) (faults []recordFault, unknownID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.noMatch)+len(f.missing)+len(f.wrongType)+len(f.extraFields)+len(f.duplicate) > 0 {
		faults = make([]recordFault, len(ids))
		for i, id := range ids {
			faults[i] = recordFault{
				noMatch:     f.noMatch[id],
				missing:     f.missing[id],
				wrongType:   f.wrongType[id],
				extraFields: f.extraFields[id],
				duplicate:   f.duplicate[id],
			}
		}
	}
	if take(&f.UnknownIDs) {
		f.unknownSeq++
		unknownID = unknownIDFor(f.unknownSeq)
	}
	return faults, unknownID
}
