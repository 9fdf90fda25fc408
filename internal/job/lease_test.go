package job

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/azurite"
	"dvbulk/internal/azurite/azuritetest"
	"dvbulk/internal/checkpoint"
	"dvbulk/internal/pipeline"
	"dvbulk/internal/testutil"
)

const leaseTTL = 60 * time.Second

// leaseRig is one chunk document in a store, and leases on it.
type leaseRig struct {
	t     *testing.T
	st    checkpoint.Store
	clock *testutil.Clock
	name  string
}

func newLeaseRig(t *testing.T, st checkpoint.Store) *leaseRig {
	r := &leaseRig{t: t, st: st, clock: testutil.NewClock(time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)), name: chunkName("run-1", 0)}
	ch := &Chunk{Run: "run-1", State: ChunkPending, Records: []Record{{ID: "a"}, {ID: "b"}}}
	if _, err := create(context.Background(), st, r.name, ch); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *leaseRig) lease(owner string) *Lease {
	return newLease(r.st, r.name, owner, leaseTTL, r.clock.Now, zerolog.Nop())
}

// claim reads the document and claims it once.
func (r *leaseRig) claim(l *Lease) (ClaimResult, *Chunk) {
	r.t.Helper()
	ch, etag, err := load[Chunk](context.Background(), r.st, r.name)
	if err != nil {
		r.t.Fatal(err)
	}
	res, cur, err := l.Claim(context.Background(), ch, etag)
	if err != nil {
		r.t.Fatalf("claim by %s: %v", l.Owner(), err)
	}
	return res, cur
}

func (r *leaseRig) stored() *Chunk {
	r.t.Helper()
	ch, _, err := load[Chunk](context.Background(), r.st, r.name)
	if err != nil {
		r.t.Fatal(err)
	}
	return ch
}

// TestLeaseExactlyOneOfTwentyClaimsWins: claims racing on the same document version have one owner;
// every other claimant sees the chunk held (an outcome, not an error), for each store.
func TestLeaseExactlyOneOfTwentyClaimsWins(t *testing.T) {
	stores := map[string]func(t *testing.T) checkpoint.Store{
		"mem": func(*testing.T) checkpoint.Store { return checkpoint.NewMem() },
		"dir": func(t *testing.T) checkpoint.Store {
			st, err := checkpoint.NewDir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
		"azurite": func(t *testing.T) checkpoint.Store {
			srv := azuritetest.Start(t, azurite.Options{})
			st, err := checkpoint.NewBlob(context.Background(), checkpoint.BlobConfig{ConnectionString: srv.ConnectionString(), Container: "lease-race"})
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			r := newLeaseRig(t, open(t))
			ch, etag, err := load[Chunk](context.Background(), r.st, r.name)
			if err != nil {
				t.Fatal(err)
			}
			const n = 20
			results := make([]ClaimResult, n)
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cur := *ch // every claimant read the same version
					cur.Records = append([]Record(nil), ch.Records...)
					<-start
					results[i], _, errs[i] = r.lease(fmt.Sprintf("worker-%d", i)).Claim(context.Background(), &cur, etag)
				}()
			}
			close(start)
			wg.Wait()
			winners := 0
			for i := range n {
				switch {
				case errs[i] != nil:
					t.Errorf("claim %d: %v (losing a race must be an outcome)", i, errs[i])
				case results[i] == LeaseClaimed:
					winners++
				case results[i] != LeaseHeld:
					t.Errorf("claim %d: %v, want claimed or held", i, results[i])
				}
			}
			if winners != 1 {
				t.Fatalf("%d claims won, want exactly 1", winners)
			}
			if got := r.stored(); got.Owner == "" || got.Attempts != 1 {
				t.Fatalf("stored chunk owner %q attempts %d, want one owner and one attempt", got.Owner, got.Attempts)
			}
		})
	}
}

// TestLeaseTakeoverAfterLapse: a worker that stops renewing is taken over once its lease lapses;
// its next checkpoint meets the new owner's version, and from then on it is lost and writes nothing.
func TestLeaseTakeoverAfterLapse(t *testing.T) {
	r := newLeaseRig(t, checkpoint.NewMem())
	a, b := r.lease("a"), r.lease("b")
	if res, _ := r.claim(a); res != LeaseClaimed {
		t.Fatalf("first claim: %v", res)
	}
	r.clock.Add(leaseTTL / 2)
	if res, cur := r.claim(b); res != LeaseHeld || cur.Owner != "a" {
		t.Fatalf("claim while a's lease is live: %v (owner %q), want held by a", res, cur.Owner)
	}
	r.clock.Add(leaseTTL/2 + time.Second)
	if res, _ := r.claim(b); res != LeaseTakenOver {
		t.Fatalf("claim after a's lease lapsed: %v, want taken over", res)
	}
	a.Update(func(c *Chunk) { c.Records[0].Outcome = pipeline.Updated })
	if err := a.Checkpoint(context.Background(), nil); !errors.Is(err, checkpoint.ErrConflict) {
		t.Fatalf("stale owner's checkpoint = %v, want ErrConflict", err)
	}
	if !a.Lost() || !errors.Is(a.Guard(), pipeline.ErrLostOwnership) {
		t.Fatal("the stale owner must be lost and its guard tripped")
	}
	if !a.Release(context.Background()) {
		t.Fatal("the stale owner's release must report the takeover")
	}
	got := r.stored()
	if got.Owner != "b" || got.Records[0].Outcome != "" || got.Attempts != 2 {
		t.Fatalf("stored chunk = owner %q, outcome %q, attempts %d; want b's version untouched by a", got.Owner, got.Records[0].Outcome, got.Attempts)
	}
	if err := b.Guard(); err != nil {
		t.Fatalf("new owner's guard: %v", err)
	}
}

// TestLeaseRenewalAndGuard: checkpoints renew the lease; without them the guard trips before the
// lease runs out (a stalled worker stops writing before another can take over), and stays tripped.
func TestLeaseRenewalAndGuard(t *testing.T) {
	r := newLeaseRig(t, checkpoint.NewMem())
	l := r.lease("a")
	r.claim(l)
	if l.Renewal() {
		t.Fatal("renewal due right after the claim")
	}
	l.Update(func(c *Chunk) { c.Records[1].Fields = map[string]any{"x": 1} })
	if !l.Renewal() {
		t.Fatal("a change must make a checkpoint due")
	}
	if err := l.Checkpoint(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	r.clock.Add(leaseTTL/2 + time.Second)
	if !l.Renewal() {
		t.Fatal("renewal not due in the lease's second half")
	}
	if err := l.Checkpoint(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if got := r.stored(); !got.Lease.Equal(r.clock.Now().Add(leaseTTL)) || got.Records[1].Fields == nil {
		t.Fatalf("stored lease %v fields %v, want renewed to now+ttl with the change", got.Lease, got.Records[1].Fields)
	}
	r.clock.Add(leaseTTL - leaseTTL/20) // inside the last tenth of the confirmed lease
	if err := l.Guard(); !errors.Is(err, pipeline.ErrLostOwnership) {
		t.Fatalf("guard near expiry = %v, want ErrLostOwnership", err)
	}
	if err := l.Checkpoint(context.Background(), nil); !errors.Is(err, checkpoint.ErrConflict) {
		t.Fatalf("checkpoint after the guard tripped = %v, want ErrConflict (no more writes)", err)
	}
}

// TestLeaseReleaseLetsTheNextClaimAtOnce: a released chunk is free, not taken over, and a settled
// one is reported as such.
func TestLeaseReleaseLetsTheNextClaimAtOnce(t *testing.T) {
	r := newLeaseRig(t, checkpoint.NewMem())
	a := r.lease("a")
	r.claim(a)
	if a.Release(context.Background()) {
		t.Fatal("release reported a takeover that did not happen")
	}
	if got := r.stored(); got.Owner != "" || !got.Lease.IsZero() {
		t.Fatalf("after release owner %q lease %v", got.Owner, got.Lease)
	}
	b := r.lease("b")
	if res, _ := r.claim(b); res != LeaseClaimed {
		t.Fatalf("claim after release: %v, want claimed", res)
	}
	if err := b.Checkpoint(context.Background(), func(c *Chunk) { c.State, c.Owner, c.Lease = ChunkDone, "", time.Time{} }); err != nil {
		t.Fatal(err)
	}
	if res, cur := r.claim(r.lease("c")); res != LeaseSettled || cur.State != ChunkDone {
		t.Fatalf("claim of a done chunk: %v (%v), want settled", res, cur.State)
	}
}

// failingStore fails the next Update with a storage error (not a conflict).
type failingStore struct {
	checkpoint.Store
	mu   sync.Mutex
	fail int
}

func (f *failingStore) Update(ctx context.Context, name string, data []byte, match checkpoint.ETag) (checkpoint.ETag, error) {
	f.mu.Lock()
	if f.fail > 0 {
		f.fail--
		f.mu.Unlock()
		return "", errors.New("storage unreachable")
	}
	f.mu.Unlock()
	return f.Store.Update(ctx, name, data, match)
}

// TestLeaseCheckpointFailureKeepsTheChange: a failed write is not a loss of ownership; the change
// stays due and the next checkpoint writes it.
func TestLeaseCheckpointFailureKeepsTheChange(t *testing.T) {
	st := &failingStore{Store: checkpoint.NewMem()}
	r := newLeaseRig(t, st)
	l := r.lease("a")
	r.claim(l)
	st.mu.Lock()
	st.fail = 1
	st.mu.Unlock()
	l.Update(func(c *Chunk) { c.Records[0].Outcome = pipeline.Updated })
	if err := l.Checkpoint(context.Background(), nil); err == nil || errors.Is(err, checkpoint.ErrConflict) {
		t.Fatalf("checkpoint on a failing store = %v, want the storage error", err)
	}
	if l.Lost() || !l.Renewal() {
		t.Fatal("a storage error must keep the lease and leave the change due")
	}
	if err := l.Checkpoint(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if got := r.stored(); got.Records[0].Outcome != pipeline.Updated {
		t.Fatalf("stored outcome %q, want the change written on the retry", got.Records[0].Outcome)
	}
}
