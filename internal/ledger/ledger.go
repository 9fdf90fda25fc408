package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/ctxutil"
)

// Shards is the number of shard documents per job.
const Shards = 256

// parallel is how many shards a lookup or an update reads and writes at once: a page of random
// GUIDs touches nearly every shard, and 256 storage round trips one after another took more than a
// short invocation's whole time (3 s under functionTimeout 8 s on a loaded machine).
const parallel = 16

// Ledger is one job's fingerprint ledger in a checkpoint store.
type Ledger struct {
	st  checkpoint.Store
	job string
}

// New returns the ledger of job in st.
func New(st checkpoint.Store, job string) *Ledger { return &Ledger{st: st, job: job} }

// ShardName is the document that holds shard s of job's ledger.
func ShardName(job string, s int) string { return fmt.Sprintf("ledger/%s/%02x.bin", job, s) }

// Update records an answer for a record, or (Remove) forgets it.
type Update struct {
	ID string
	Entry
	Remove bool
}

type update struct {
	id [16]byte
	Entry
	remove bool
}

// Lookup returns the entries of ids that the ledger holds. A missing shard holds nothing, and so
// does one that cannot be decoded (logged): its records count as never enriched and are asked
// again, never a failed run. Other store failures are returned, so the caller retries rather than
// paying for calls a brief storage outage would otherwise cost.
func (l *Ledger) Lookup(ctx context.Context, ids []string) (map[string]Entry, error) {
	byShard := map[byte][][16]byte{}
	for _, s := range ids {
		id, err := parseID(s)
		if err != nil {
			return nil, err
		}
		byShard[shardOf(id)] = append(byShard[shardOf(id)], id)
	}
	out := make(map[string]Entry, len(ids))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for s, want := range byShard {
		g.Go(func() error {
			rows, _, err := l.load(gctx, int(s))
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range want {
				if i, ok := find(rows, id); ok {
					out[formatID(id)] = rows[i].Entry
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// load reads and decodes one shard; a missing or corrupt shard reads as empty (etag "" = create).
func (l *Ledger) load(ctx context.Context, s int) ([]row, checkpoint.ETag, error) {
	name := ShardName(l.job, s)
	data, etag, err := l.st.Get(ctx, name)
	if errors.Is(err, checkpoint.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("ledger: read %s: %w", name, err)
	}
	rows, err := decodeShard(data)
	if err != nil {
		zerolog.Ctx(ctx).Warn().Str("shard", name).Msg("ledger shard unreadable; its records are asked again")
		return nil, etag, nil
	}
	return rows, etag, nil
}

// Apply records ups, shard by shard, each with an ETag-conditional write retried on conflicts, so
// instances finishing chunks at once never lose each other's updates. Times are kept to the second.
func (l *Ledger) Apply(ctx context.Context, ups []Update) error {
	byShard := map[byte][]update{}
	for _, u := range ups {
		id, err := parseID(u.ID)
		if err != nil {
			return err
		}
		e := u.Entry
		e.At = e.At.UTC().Truncate(time.Second)
		byShard[shardOf(id)] = append(byShard[shardOf(id)], update{id: id, Entry: e, remove: u.Remove})
	}
	shards := make([]byte, 0, len(byShard))
	for s := range byShard {
		shards = append(shards, s)
	}
	slices.Sort(shards)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for _, s := range shards {
		list := byShard[s]
		// One update per id, the last one given winning.
		slices.SortStableFunc(list, func(a, b update) int { return bytes.Compare(a.id[:], b.id[:]) })
		dedup := list[:0]
		for i, u := range list {
			if i+1 < len(list) && list[i+1].id == u.id {
				continue
			}
			dedup = append(dedup, u)
		}
		g.Go(func() error { return l.applyShard(gctx, int(s), dedup) })
	}
	return g.Wait()
}

func (l *Ledger) applyShard(ctx context.Context, s int, ups []update) error {
	name := ShardName(l.job, s)
	for attempt := 0; ; attempt++ {
		rows, etag, err := l.load(ctx, s)
		if err != nil {
			return err
		}
		data := encodeShard(merge(rows, ups))
		if etag == "" {
			_, err = l.st.Create(ctx, name, data) // a conflict: created meanwhile; load again
		} else {
			_, err = l.st.Update(ctx, name, data, etag)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, checkpoint.ErrConflict) && !errors.Is(err, checkpoint.ErrNotFound) || attempt >= 50 {
			return fmt.Errorf("ledger: write %s: %w", name, err)
		}
		if err := ctxutil.Sleep(ctx, time.Duration(1+attempt)*5*time.Millisecond); err != nil {
			return err
		}
	}
}

// Scan calls fn with every entry, one shard at a time (bounded memory), in shard order.
func (l *Ledger) Scan(ctx context.Context, fn func(id string, e Entry) error) error {
	return l.ScanShards(ctx, 0, Shards, fn)
}

// ScanShards is Scan over shards first (inclusive) to last (exclusive).
func (l *Ledger) ScanShards(ctx context.Context, first, last int, fn func(id string, e Entry) error) error {
	for s := first; s < last; s++ {
		rows, _, err := l.load(ctx, s)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if err := fn(formatID(r.id), r.Entry); err != nil {
				return err
			}
		}
	}
	return nil
}
