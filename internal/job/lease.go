package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/pipeline"
)

// Lease is one worker's ownership of a chunk. Ownership lives inside the chunk checkpoint itself
// (Owner and Lease, the expiry) and every change of it is an ETag-guarded write, in the style of the
// Event Hubs blob checkpoint store's ownership: losing a race is an outcome, not an error.
//
//   - Claim takes a free chunk, or takes over one whose owner's lease lapsed (a crashed worker); a
//     chunk held by a live owner, or no longer pending, is reported as such.
//   - Checkpoint writes the document (with the changes of the work so far) and renews the lease;
//     Renewal says when one is due.
//   - Guard tells the writers whether the lease, as last confirmed in storage, can still be trusted:
//     past that point another worker may own the chunk.
//   - Release writes the last checkpoint and gives the chunk up, so the next delivery claims at once.
//   - Lost is true for good once a write met another version: another worker took the chunk over,
//     and this one writes nothing more.
//
// The Lease also guards the chunk document against the concurrent updates of a running chunk
// (Update and View).
type Lease struct {
	st    checkpoint.Store
	name  string // the chunk checkpoint's document name
	owner string // this worker's owner id
	ttl   time.Duration
	now   func() time.Time
	log   zerolog.Logger

	mu        sync.Mutex
	ch        *Chunk
	etag      checkpoint.ETag
	confirmed time.Time // lease expiry as last written successfully
	dirty     bool      // ch has changes not yet checkpointed
	lost      bool
}

// ClaimResult is the outcome of a claim.
type ClaimResult int

const (
	// LeaseClaimed: the chunk was free and is now this worker's.
	LeaseClaimed ClaimResult = iota + 1
	// LeaseTakenOver: the previous owner's lease had lapsed; the chunk is now this worker's.
	LeaseTakenOver
	// LeaseHeld: a live owner holds the chunk; wait for it or leave it, never redo its work.
	LeaseHeld
	// LeaseSettled: the chunk is no longer pending (done or dead-lettered).
	LeaseSettled
)

func (r ClaimResult) String() string {
	switch r {
	case LeaseClaimed:
		return "claimed"
	case LeaseTakenOver:
		return "taken over"
	case LeaseHeld:
		return "held by another worker"
	case LeaseSettled:
		return "settled"
	}
	return fmt.Sprintf("ClaimResult(%d)", int(r))
}

// newLease prepares owner's lease of the chunk document name, not yet claimed.
func newLease(st checkpoint.Store, name, owner string, ttl time.Duration, now func() time.Time, log zerolog.Logger) *Lease {
	return &Lease{st: st, name: name, owner: owner, ttl: ttl, now: now, log: log}
}

// heldAt reports whether a live owner holds c at now.
func (c *Chunk) heldAt(now time.Time) bool { return c.Owner != "" && now.Before(c.Lease) }

// Claim tries to own the chunk whose document was read as cur with etag. A claim write that meets
// another version re-reads the document and decides again, so of many concurrent claimants exactly one
// owns the chunk and the others see LeaseHeld. For LeaseHeld and LeaseSettled the document as last
// read is returned; after LeaseClaimed and LeaseTakenOver the Lease holds it. Errors are storage
// failures.
func (l *Lease) Claim(ctx context.Context, cur *Chunk, etag checkpoint.ETag) (ClaimResult, *Chunk, error) {
	for {
		if cur.State != ChunkPending {
			return LeaseSettled, cur, nil
		}
		now := l.now()
		if cur.heldAt(now) && cur.Owner != l.owner {
			return LeaseHeld, cur, nil
		}
		result := LeaseClaimed
		if cur.Owner != "" && cur.Owner != l.owner {
			result = LeaseTakenOver
		}
		cur.Owner, cur.Lease, cur.Attempts = l.owner, now.Add(l.ttl), cur.Attempts+1
		cur.Updated, cur.Writer = now.UTC(), nonce()
		tag, err := save(ctx, l.st, l.name, cur, etag)
		if err == nil {
			l.mu.Lock()
			l.ch, l.etag, l.confirmed, l.lost, l.dirty = cur, tag, cur.Lease, false, false
			l.mu.Unlock()
			return result, nil, nil
		}
		if !errors.Is(err, checkpoint.ErrConflict) {
			return 0, nil, fmt.Errorf("%w: claim chunk: %w", ErrTransient, err)
		}
		if cur, etag, err = load[Chunk](ctx, l.st, l.name); err != nil {
			return 0, nil, fmt.Errorf("%w: re-read chunk: %w", ErrTransient, err)
		}
	}
}

// Owner is this worker's owner id.
func (l *Lease) Owner() string { return l.owner }

// View runs f with the chunk document, read-only.
func (l *Lease) View(f func(*Chunk)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f(l.ch)
}

// Update runs f to change the chunk document; the next Checkpoint writes the change.
func (l *Lease) Update(f func(*Chunk)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f(l.ch)
	l.dirty = true
}

// Renewal reports whether a checkpoint is worth writing now: there are changes, or the lease is in
// its second half.
func (l *Lease) Renewal() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dirty || l.confirmed.Sub(l.now()) < l.ttl/2
}

// Guard returns pipeline.ErrLostOwnership once the lease can no longer be trusted: it was lost, or
// the expiry last confirmed in storage is less than a tenth of the lease away (a stalled worker must
// stop writing before another can take the chunk over). Once tripped it stays tripped.
func (l *Lease) Guard() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost || l.now().After(l.confirmed.Add(-l.ttl/10)) {
		l.lost = true
		return pipeline.ErrLostOwnership
	}
	return nil
}

// Lost reports whether this worker lost the chunk.
func (l *Lease) Lost() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// Checkpoint writes the chunk document, with change (if set) applied first, and renews the lease
// while this worker owns it. checkpoint.ErrConflict means another worker took the chunk: the lease is
// then lost for good. Other errors leave the changes to the next Checkpoint.
func (l *Lease) Checkpoint(ctx context.Context, change func(*Chunk)) error {
	l.mu.Lock()
	if l.lost {
		l.mu.Unlock()
		return checkpoint.ErrConflict
	}
	now := l.now()
	if change != nil {
		change(l.ch)
	}
	if l.ch.Owner != "" {
		l.ch.Lease = now.Add(l.ttl)
	}
	l.ch.Updated, l.ch.Writer = now.UTC(), nonce()
	data, err := json.Marshal(l.ch)
	etag, expiry := l.etag, l.ch.Lease
	l.dirty = false
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("job: encode chunk: %w", err)
	}
	// Never abandon a checkpoint write half way: a cancelled request may still be applied by the
	// store, leaving this worker with an ETag that no longer matches its own last write.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	tag, err := l.st.Update(wctx, l.name, data, etag)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err == nil:
		l.etag, l.confirmed = tag, expiry
		return nil
	case errors.Is(err, checkpoint.ErrConflict) || errors.Is(err, checkpoint.ErrNotFound):
		l.lost = true
		l.log.Warn().Msg("chunk checkpoint changed under us: ownership lost, stopping")
		return checkpoint.ErrConflict
	default:
		l.dirty = true
		return err
	}
}

// Release checkpoints and gives up ownership so the next delivery can claim at once. It reports
// whether the chunk had been taken over (its checkpoint changed under this worker): the new owner
// then has its own message, and this one must not continue the work. A release that cannot be
// written is logged; the lease then simply expires.
func (l *Lease) Release(ctx context.Context) (takenOver bool) {
	err := l.Checkpoint(ctx, func(c *Chunk) { c.Owner, c.Lease = "", time.Time{} })
	if errors.Is(err, checkpoint.ErrConflict) {
		return true
	}
	if err != nil {
		l.log.Warn().Err(err).Msg("could not checkpoint on release; the lease will expire instead")
	}
	return false
}
