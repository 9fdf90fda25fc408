package dvsim

import (
	"sync"
	"time"
)

// Faults are runtime-adjustable misbehaviours.
type Faults struct {
	mu         sync.Mutex
	errN       int
	errStatus  int
	dropN      int
	slow       time.Duration
	stormCode  string
	stormUntil time.Time
	reject     map[string]bool
	loseN      int // write answers to drop after the write was applied (faults_lost.go)
}

// ServerErrors makes the next n requests answer status (500 or 503) with the code 0x80040216 ("An
// unexpected error occurred"): a 503 is an outage clients retry; a 500 with that code is an error
// that repeats, which a client fails after at most one retry.
func (f *Faults) ServerErrors(n, status int) {
	f.mu.Lock()
	f.errN, f.errStatus = n, status
	f.mu.Unlock()
}

// DropConnections closes the next n connections without an answer.
func (f *Faults) DropConnections(n int) { f.mu.Lock(); f.dropN = n; f.mu.Unlock() }

// Slow adds d to every response; 0 turns it off.
func (f *Faults) Slow(d time.Duration) { f.mu.Lock(); f.slow = d; f.mu.Unlock() }

// Storm answers every request with a 429 of the given limit code (CodeRequests, CodeExecTime,
// CodeConcurrency) for d of real time. Its Retry-After is the storm's remaining time, at least one
// (scaled) second; it does not grow, so a storm ends when it says it does.
func (f *Faults) Storm(code string, d time.Duration) {
	f.mu.Lock()
	f.stormCode, f.stormUntil = code, time.Now().Add(d)
	f.mu.Unlock()
}

// RejectOnWrite makes a "plugin" reject writes of these records.
func (f *Faults) RejectOnWrite(ids ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reject == nil {
		f.reject = map[string]bool{}
	}
	for _, id := range ids {
		f.reject[id] = true
	}
}

func (f *Faults) rejects(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reject[id]
}

// take returns the fault to apply to an arriving request: a drop, an error status, or a storm code
// with the storm's remaining time.
func (f *Faults) take(now time.Time) (drop bool, status int, storm string, left, slow time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.dropN > 0:
		f.dropN--
		drop = true
	case f.errN > 0:
		f.errN--
		status = f.errStatus
	}
	if now.Before(f.stormUntil) {
		storm, left = f.stormCode, f.stormUntil.Sub(now)
	}
	return drop, status, storm, left, f.slow
}
