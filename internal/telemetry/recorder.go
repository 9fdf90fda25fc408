package telemetry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/checkpoint"
)

// Gauges is what an instance's clients report at one moment: counters since the process started and
// current values. The wiring reads them from the Dataverse and enrichment clients.
type Gauges struct {
	DVRequests  int64
	DVThrottled map[string]int64 // by error code
	DVInFlight  int
	DVLimit     int
	DVHint      int
	EnRequests  int64
	EnThrottled int64
	EnInFlight  int
	EnLimit     int
}

// Recorder samples this instance's work on each run it touches and writes the samples to the
// checkpoint store. It is safe for concurrent use; Run drives the periodic writes.
type Recorder struct {
	Store    checkpoint.Store
	Instance string
	Interval time.Duration     // how often a sample is written (default 5s)
	Gauges   func() Gauges     // the clients' counters; nil records outcomes only
	Settings map[string]string // the instance's settings, shown by the run report (never secrets)
	Log      zerolog.Logger
	Now      func() time.Time

	mu   sync.Mutex
	runs map[string]*runState
}

type runState struct {
	done     map[string]int64
	base     Gauges // the process counters at the run's first sample on this instance
	doc      *Doc
	etag     checkpoint.ETag
	touched  time.Time // last outcome or chunk
	loaded   bool      // the stored document (of an earlier process or period) has been merged in
	writeErr bool
}

func (r *Recorder) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Recorder) interval() time.Duration {
	if r.Interval <= 0 {
		return 5 * time.Second
	}
	return r.Interval
}

func (r *Recorder) gauges() Gauges {
	if r.Gauges == nil {
		return Gauges{}
	}
	return r.Gauges()
}

// state returns the run's state, creating it (with the process counters as its baseline) on first use.
// r.mu must be held.
func (r *Recorder) state(run string) *runState {
	if r.runs == nil {
		r.runs = map[string]*runState{}
	}
	rs := r.runs[run]
	if rs == nil {
		g := r.gauges()
		rs = &runState{done: map[string]int64{}, base: g, doc: &Doc{V: 1, Run: run, Instance: r.Instance,
			Interval: r.interval().Seconds(), Settings: r.Settings}}
		// The first sample is the moment this instance met the run, with nothing done yet: with the
		// next flush every instance's series spans its work, however short (a run that finishes
		// inside one interval still has a rate and charts).
		rs.doc.add(Sample{T: r.now().UnixMilli(), Done: map[string]int64{}, DVInFlight: g.DVInFlight,
			DVLimit: g.DVLimit, DVHint: g.DVHint, EnInFlight: g.EnInFlight, EnLimit: g.EnLimit})
		r.runs[run] = rs
	}
	rs.touched = r.now()
	return rs
}

// Outcome counts one record of run finished with outcome.
func (r *Recorder) Outcome(run, outcome string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state(run).done[outcome]++
}

// Touch marks run as worked on (planning), so it gets samples even before records finish.
func (r *Recorder) Touch(run string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state(run)
}

// ChunkDone notes how long a chunk's processing took on this instance, for the report's slowest chunks.
func (r *Recorder) ChunkDone(run string, seq, records int, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state(run).doc.noteChunk(ChunkTime{Seq: seq, Records: records, Milli: took.Milliseconds()})
}

// Run writes a sample of every run worked on recently, every Interval, until ctx ends; then it writes
// a last one for each (with a short deadline of its own). A run untouched for a minute gets one more
// sample and is then forgotten.
func (r *Recorder) Run(ctx context.Context) {
	t := time.NewTicker(r.interval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			r.sampleAll(fctx)
			cancel()
			return
		case <-t.C:
			r.sampleAll(ctx)
		}
	}
}

func (r *Recorder) sampleAll(ctx context.Context) {
	r.mu.Lock()
	runs := make([]string, 0, len(r.runs))
	for run := range r.runs {
		runs = append(runs, run)
	}
	r.mu.Unlock()
	for _, run := range runs {
		_ = r.Flush(ctx, run)
	}
}

// forgetAfter is how long a run without outcomes or chunks keeps being sampled.
const forgetAfter = time.Minute

// Flush appends a sample of run now and writes the instance's document. Losing the document to
// another writer (the same instance id reused) re-reads it and writes again; other failures are
// returned (and logged once), never retried in a loop: the next interval tries again.
func (r *Recorder) Flush(ctx context.Context, run string) error {
	if err := r.load(ctx, run); err != nil {
		return err
	}
	r.mu.Lock()
	rs := r.runs[run]
	if rs == nil {
		r.mu.Unlock()
		return nil
	}
	now := r.now()
	g := r.gauges()
	rs.doc.add(Sample{T: now.UnixMilli(), Done: maps.Clone(rs.done),
		DVRequests: g.DVRequests - rs.base.DVRequests, DVThrottled: sub(g.DVThrottled, rs.base.DVThrottled),
		DVInFlight: g.DVInFlight, DVLimit: g.DVLimit, DVHint: g.DVHint,
		EnRequests: g.EnRequests - rs.base.EnRequests, EnThrottled: g.EnThrottled - rs.base.EnThrottled,
		EnInFlight: g.EnInFlight, EnLimit: g.EnLimit})
	rs.doc.Updated, rs.doc.Writer = now.UTC(), nonce()
	data, err := json.Marshal(rs.doc)
	etag := rs.etag
	if now.Sub(rs.touched) > forgetAfter {
		delete(r.runs, run) // this was its last sample
	}
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("telemetry: encode: %w", err)
	}
	name := docName(run, r.Instance)
	newTag, err := r.write(ctx, name, data, etag)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if !rs.writeErr {
			r.Log.Warn().Err(err).Str("run", run).Msg("telemetry sample not written; the next interval tries again")
		}
		rs.writeErr = true
		return err
	}
	rs.etag, rs.writeErr = newTag, false
	return nil
}

// load merges the run's stored document into a state met for the first time, so an instance that
// forgot a run (idle for a while) and meets it again continues its counters instead of restarting them.
func (r *Recorder) load(ctx context.Context, run string) error {
	r.mu.Lock()
	rs := r.runs[run]
	if rs == nil || rs.loaded {
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	data, etag, err := r.Store.Get(ctx, docName(run, r.Instance))
	if errors.Is(err, checkpoint.ErrNotFound) {
		data, err = nil, nil
	}
	if err != nil {
		return fmt.Errorf("telemetry: read %s: %w", docName(run, r.Instance), err)
	}
	var old Doc
	if data != nil {
		if err := json.Unmarshal(data, &old); err != nil {
			data = nil // unreadable: start the document afresh rather than never sampling the run
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if rs.loaded {
		return nil
	}
	rs.loaded, rs.etag = true, etag
	if data == nil {
		return nil
	}
	last := old.Last()
	rs.done = addTo(rs.done, last.Done)
	rs.base.DVRequests -= last.DVRequests
	rs.base.DVThrottled = addTo(maps.Clone(rs.base.DVThrottled), negate(last.DVThrottled))
	rs.base.EnRequests -= last.EnRequests
	rs.base.EnThrottled -= last.EnThrottled
	for _, ct := range rs.doc.Slowest {
		old.noteChunk(ct)
	}
	old.Settings = rs.doc.Settings
	rs.doc = &old
	return nil
}

func negate(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = -v
	}
	return out
}

func (r *Recorder) write(ctx context.Context, name string, data []byte, etag checkpoint.ETag) (checkpoint.ETag, error) {
	if etag == "" {
		tag, err := r.Store.Create(ctx, name, data)
		if !errors.Is(err, checkpoint.ErrConflict) {
			return tag, err
		}
	} else {
		tag, err := r.Store.Update(ctx, name, data, etag)
		if !errors.Is(err, checkpoint.ErrConflict) && !errors.Is(err, checkpoint.ErrNotFound) {
			return tag, err
		}
	}
	// Someone else wrote under this name (a restarted process with the same id): ours is newer.
	_, cur, err := r.Store.Get(ctx, name)
	if errors.Is(err, checkpoint.ErrNotFound) {
		return r.Store.Create(ctx, name, data)
	}
	if err != nil {
		return "", err
	}
	return r.Store.Update(ctx, name, data, cur)
}

func nonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
