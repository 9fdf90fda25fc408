package job

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/ctxutil"
	"dvbulk/internal/dataverse"
	"dvbulk/internal/enrich"
	"dvbulk/internal/pipeline"
)

func testEngine(t *testing.T, dv *fakeDV, en Enricher, st checkpoint.Store) *Engine {
	t.Helper()
	e := &Engine{Store: st, DV: dv, Enricher: en, Log: zerolog.Nop(),
		Opt: Options{PlanPages: 2, FlushInterval: 20 * time.Millisecond, Lease: 2 * time.Second, YieldMargin: time.Second}}
	e.Init()
	return e
}

func smallSpec(t *testing.T) *Spec {
	t.Helper()
	s, err := Lookup("nightly-enrichment")
	if err != nil {
		t.Fatal(err)
	}
	s.ChunkSize, s.PageSize = 100, 250
	return s
}

// runAll starts a run and drains its messages in-process.
func runAll(t *testing.T, e *Engine, spec *Spec, o StartOptions) (string, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if o.Run == "" {
		o.Run = RunID(spec.Name, time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC))
	}
	res, err := e.Start(ctx, spec, o)
	if err != nil {
		t.Fatal(err)
	}
	return o.Run, drain(ctx, t, e, res)
}

// drain processes res's messages and all that follow on an in-process queue; it returns the dead letters.
func drain(ctx context.Context, t testing.TB, e *Engine, res Result) []string {
	t.Helper()
	var mu sync.Mutex
	var dead []string
	q := &LocalQueue{Engine: e, Workers: 4, Retry: 10 * time.Millisecond, DeadLetters: func(b string) { mu.Lock(); dead = append(dead, b); mu.Unlock() }}
	if err := q.Run(ctx, res); err != nil {
		t.Fatal(err)
	}
	return dead
}

func TestRunEnrichesEveryActiveAccount(t *testing.T) {
	dv := newFakeDV(1234, 300)
	en := &fakeEnricher{fail: map[string]string{}}
	var failing string
	for id := range dv.rows {
		if dv.rows[id]["statecode"] == json.Number("0") {
			failing = id
			break
		}
	}
	en.fail[failing] = "no match"
	st := checkpoint.NewMem()
	e := testEngine(t, dv, en, st)
	run, dead := runAll(t, e, smallSpec(t), StartOptions{Trigger: "test"})
	if len(dead) != 0 {
		t.Fatalf("dead letters: %v", dead)
	}
	status, err := ReadStatus(context.Background(), st, run)
	if err != nil {
		t.Fatal(err)
	}
	sum := status.Summary
	if sum == nil {
		t.Fatalf("no summary; manifest %+v", status.Manifest)
	}
	if sum.Planned != 1234 || sum.Records != 1234 || sum.Chunks != 13 {
		t.Errorf("planned %d records %d chunks %d, want 1234/1234/13", sum.Planned, sum.Records, sum.Chunks)
	}
	if sum.Outcomes[pipeline.Updated] != 1233 || sum.Outcomes[pipeline.Failed] != 1 {
		t.Errorf("outcomes %v, want 1233 updated and 1 failed", sum.Outcomes)
	}
	if len(sum.Failures) != 1 || sum.Failures[0].ID != failing || !strings.Contains(sum.Failures[0].Reason, "no match") {
		t.Errorf("failures %+v, want %s with its reason", sum.Failures, failing)
	}
	for id, row := range dv.rows {
		active := row["statecode"] == json.Number("0")
		want := truth(id)
		switch {
		case !active || id == failing:
			if dv.writes[id] != 0 {
				t.Errorf("%s (active=%v) written %d times", id, active, dv.writes[id])
			}
		case row["numberofemployees"] != want["numberofemployees"] || row["description"] != want["description"]:
			t.Errorf("%s holds %v/%v, want %v/%v", id, row["numberofemployees"], row["description"], want["numberofemployees"], want["description"])
		case dv.writes[id] != 1:
			t.Errorf("%s written %d times, want 1", id, dv.writes[id])
		}
		if _, ok := row["ownerid"]; ok {
			t.Fatalf("%s: ownerid written although not on the allow-list", id)
		}
	}
	if sum.Stats.DroppedFields != 1233 {
		t.Errorf("dropped fields %d, want 1233 (ownerid on every result)", sum.Stats.DroppedFields)
	}
	// Completing the run reads back only the chunk with the failure, not all 13.
	prog, _, err := load[Progress](context.Background(), st, progressName(run))
	if err != nil || len(prog.Notable) != 1 || prog.Notable[0] != sum.Failures[0].Chunk {
		t.Errorf("progress marks chunks %v notable (err %v), want only chunk %d", prog.Notable, err, sum.Failures[0].Chunk)
	}
	if act, _ := ActiveRun(context.Background(), st, "nightly-enrichment"); act != "" {
		t.Errorf("active marker still names %s after completion", act)
	}

	// A second run finds everything already enriched: nothing is written.
	before := dv.totalWrites()
	run2, _ := runAll(t, e, smallSpec(t), StartOptions{Run: "nightly-enrichment-second", Trigger: "test"})
	s2, _ := ReadStatus(context.Background(), st, run2)
	if s2.Summary == nil || s2.Summary.Outcomes[pipeline.Unchanged] != 1233 || dv.totalWrites() != before {
		t.Errorf("second run: %+v writes %d->%d, want 1233 unchanged and no writes", s2.Summary, before, dv.totalWrites())
	}
}

func TestStartWhileActiveDoesNothing(t *testing.T) {
	dv := newFakeDV(300, 0)
	st := checkpoint.NewMem()
	e := testEngine(t, dv, &fakeEnricher{}, st)
	ctx := context.Background()
	spec := smallSpec(t)
	first, err := e.Start(ctx, spec, StartOptions{Run: "nightly-enrichment-a", Trigger: "timer"})
	if err != nil || len(first.Enqueue) == 0 {
		t.Fatalf("first start: %v %v", first, err)
	}
	// The same occurrence fired twice, and the next tick while the run is active.
	for _, run := range []string{"nightly-enrichment-a", "nightly-enrichment-b"} {
		res, err := e.Start(ctx, spec, StartOptions{Run: run, Trigger: "timer"})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Enqueue) != 0 {
			t.Errorf("start %s while a run is active enqueued %d messages: %v", run, len(res.Enqueue), res.Logs)
		}
	}
	if _, err := ReadStatus(ctx, st, "nightly-enrichment-b"); err == nil {
		t.Error("a second run was created while the first is active")
	}
	// Once stale, the next start takes the run over: planning and unfinished chunks are re-enqueued.
	e.Now = func() time.Time { return time.Now().Add(2 * e.Opt.StaleAfter) }
	res, err := e.Start(ctx, spec, StartOptions{Run: "nightly-enrichment-c", Trigger: "timer"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Enqueue) == 0 || !strings.Contains(strings.Join(res.Logs, " "), "taking it over") {
		t.Errorf("stale takeover enqueued %d: %v", len(res.Enqueue), res.Logs)
	}
}

// The timer invocation that created a run died before it handed planning on (killed mid-page): the
// run has a manifest and nothing else. A second firing of the same occurrence does nothing while the
// run could still be live, and takes it over once it is stale; the run then completes.
func TestRefiredOccurrenceTakesOverARunKilledMidPlanning(t *testing.T) {
	dv := newFakeDV(300, 0)
	st := checkpoint.NewMem()
	e := testEngine(t, dv, &fakeEnricher{}, st)
	ctx := context.Background()
	spec := smallSpec(t)
	dv.failPages.Store(1)
	if _, err := e.Start(ctx, spec, StartOptions{Run: "nightly-enrichment-a", Trigger: "timer"}); !errors.Is(err, ErrTransient) || !errors.Is(err, dataverse.ErrUnavailable) {
		t.Fatalf("first start whose page read failed: %v, want a transient failure wrapping dataverse.ErrUnavailable", err)
	}
	res, err := e.Start(ctx, spec, StartOptions{Run: "nightly-enrichment-a", Trigger: "timer"})
	if err != nil || len(res.Enqueue) != 0 {
		t.Fatalf("re-fired at once: %v %v; want nothing done while the run may be live", res, err)
	}
	e.Now = func() time.Time { return time.Now().Add(2 * e.Opt.StaleAfter) }
	res, err = e.Start(ctx, spec, StartOptions{Run: "nightly-enrichment-a", Trigger: "timer"})
	if err != nil || len(res.Enqueue) != 1 || !strings.Contains(strings.Join(res.Logs, " "), "taking it over") {
		t.Fatalf("re-fired once stale: %v %v; want planning handed on", res, err)
	}
	e.Now = nil
	q := &LocalQueue{Engines: []*Engine{e}, Workers: 2}
	if err := q.Run(ctx, res); err != nil {
		t.Fatal(err)
	}
	s, err := ReadStatus(ctx, st, "nightly-enrichment-a")
	if err != nil || s.Summary == nil || s.Summary.Records != 300 || s.Summary.Outcomes[pipeline.Updated] != 300 {
		t.Fatalf("after takeover: %+v %v; want 300 records updated", s, err)
	}
}

func TestDoneChunkIsAcknowledgedWithoutCalls(t *testing.T) {
	dv := newFakeDV(150, 0)
	en := &fakeEnricher{}
	st := checkpoint.NewMem()
	e := testEngine(t, dv, en, st)
	spec := smallSpec(t)
	ctx := context.Background()
	res, err := e.Start(ctx, spec, StartOptions{Run: "nightly-enrichment-x", Trigger: "test"})
	if err != nil {
		t.Fatal(err)
	}
	chunkMsg := res.Enqueue[0]
	if _, err := e.Handle(ctx, []byte(chunkMsg), Delivery{DequeueCount: 1}); err != nil {
		t.Fatal(err)
	}
	calls, writes, gets := en.total(), dv.totalWrites(), dv.gets.Load()
	// Redelivered (at-least-once): no enrichment, no Dataverse call.
	out, err := e.Handle(ctx, []byte(chunkMsg), Delivery{DequeueCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	if en.total() != calls || dv.totalWrites() != writes || dv.gets.Load() != gets {
		t.Errorf("redelivered done chunk made calls: enrich %d->%d writes %d->%d gets %d->%d", calls, en.total(), writes, dv.totalWrites(), gets, dv.gets.Load())
	}
	if !strings.Contains(strings.Join(out.Logs, " "), "already done") {
		t.Errorf("logs %v", out.Logs)
	}
}

func TestResumeDoesNotRepeatCheckpointedEnrichment(t *testing.T) {
	dv := newFakeDV(100, 0)
	en := &fakeEnricher{}
	st := checkpoint.NewMem()
	e := testEngine(t, dv, en, st)
	ctx := context.Background()
	res, err := e.Start(ctx, smallSpec(t), StartOptions{Run: "nightly-enrichment-r", Trigger: "test"})
	if err != nil {
		t.Fatal(err)
	}
	msg := res.Enqueue[0]
	// First delivery: enrichment works, every write fails transiently.
	dv.failAll.Store(true)
	if _, err := e.Handle(ctx, []byte(msg), Delivery{DequeueCount: 1}); err == nil {
		t.Fatal("expected a transient error while writes fail")
	}
	if en.total() != 100 {
		t.Fatalf("enrichment calls %d, want 100", en.total())
	}
	dv.failAll.Store(false)
	if _, err := e.Handle(ctx, []byte(msg), Delivery{DequeueCount: 2}); err != nil {
		t.Fatal(err)
	}
	if en.total() != 100 {
		t.Errorf("enrichment repeated after a checkpoint: %d calls, want 100", en.total())
	}
	if dv.totalWrites() != 100 {
		t.Errorf("writes %d, want 100", dv.totalWrites())
	}
}

func TestFinalDeliveryDeadLettersChunkAndRunCompletes(t *testing.T) {
	dv := newFakeDV(100, 0)
	st := checkpoint.NewMem()
	e := testEngine(t, dv, &fakeEnricher{}, st)
	ctx := context.Background()
	res, err := e.Start(ctx, smallSpec(t), StartOptions{Run: "nightly-enrichment-d", Trigger: "test"})
	if err != nil {
		t.Fatal(err)
	}
	dv.failAll.Store(true)
	for d := 1; d <= e.Opt.MaxDequeue; d++ {
		if _, err := e.Handle(ctx, []byte(res.Enqueue[0]), Delivery{DequeueCount: d}); err == nil {
			t.Fatalf("delivery %d succeeded while every write fails", d)
		}
	}
	s, err := ReadStatus(ctx, st, "nightly-enrichment-d")
	if err != nil {
		t.Fatal(err)
	}
	if s.Summary == nil || len(s.Summary.DeadLettered) != 1 || s.Summary.Outcomes[pipeline.Failed] != 100 {
		t.Fatalf("summary %+v, want the chunk dead-lettered and its 100 records failed", s.Summary)
	}
}

func TestBadMessagesAreDeadLettered(t *testing.T) {
	e := testEngine(t, newFakeDV(1, 0), &fakeEnricher{}, checkpoint.NewMem())
	cases := map[string]string{
		"plain text":    "hello world",
		"wrong version": `{"v":2,"kind":"chunk","job":"nightly-enrichment","run":"r","ids":["00000000-0000-0000-0000-000000000001"]}`,
		"unknown kind":  `{"v":1,"kind":"explode","job":"nightly-enrichment"}`,
		"unknown job":   `{"v":1,"kind":"start","job":"no-such-job"}`,
		"bad guid":      `{"v":1,"kind":"chunk","job":"nightly-enrichment","run":"r","ids":["urn:uuid:00000000-0000-0000-0000-000000000001"]}`,
		"unknown field": `{"v":1,"kind":"start","job":"nightly-enrichment","drop":"table"}`,
		"oversized":     `{"v":1,"kind":"start","job":"nightly-enrichment","run":"` + strings.Repeat("a", 70000) + `"}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			res, err := e.Handle(context.Background(), []byte(body), Delivery{DequeueCount: 1, MessageID: "m1"})
			if err != nil {
				t.Fatalf("bad message returned an error (would be retried): %v", err)
			}
			if len(res.DeadLetter) != 1 || len(res.Enqueue) != 0 {
				t.Fatalf("got %+v, want exactly one dead letter", res)
			}
			var dl DeadLetter
			if err := json.Unmarshal([]byte(res.DeadLetter[0]), &dl); err != nil || dl.Reason == "" {
				t.Fatalf("dead letter %q: %v", res.DeadLetter[0], err)
			}
		})
	}
}

func TestChunkMessageFitsQueue(t *testing.T) {
	ids := make([]string, MaxChunkSize)
	for i := range ids {
		ids[i] = "ffffffff-ffff-4fff-bfff-ffffffffffff"[:24] + strings.Repeat("f", 12)
	}
	m := Message{Kind: KindChunk, Job: strings.Repeat("j", 63), Run: strings.Repeat("r", 121), Seq: 999999, IDs: ids}
	if _, err := m.Encode(); err != nil {
		t.Fatalf("largest chunk does not fit: %v", err)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte(`{"v":1,"kind":"start","job":"nightly-enrichment","dryRun":true}`))
	f.Add([]byte(`{"v":1,"kind":"plan","job":"nightly-enrichment","run":"nightly-enrichment-20261123t020000z","cursor":"https://x/api/data/v9.2/accounts?$skiptoken=abc","seq":40}`))
	f.Add([]byte(`{"v":1,"kind":"chunk","job":"nightly-enrichment","run":"r1","seq":3,"ids":["0000000a-0000-4000-8000-00000000000a"]}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`hello world`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := DecodeMessage(body)
		if err != nil {
			if !IsBadMessage(err) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if _, err := m.Encode(); err != nil && len(body) < MaxMessageBytes/2 {
			t.Fatalf("a valid message does not re-encode: %v", err)
		}
	})
}

type slowEnricher struct {
	fakeEnricher
	delay time.Duration
	// holdAfter, when set, makes every call after the first holdAfter wait until the chunk stops
	// starting calls (the yield point) before it answers, as a slow service does: how much a first
	// invocation gets done then depends on no clock.
	holdAfter int
	started   atomic.Int64
}

func (s *slowEnricher) Enrich(ctx context.Context, recs []enrich.Record) ([]enrich.Result, error) {
	if s.holdAfter > 0 && s.started.Add(1) > int64(s.holdAfter) {
		select {
		case <-ctxutil.StopChan(ctx):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.fakeEnricher.Enrich(ctx, recs)
}

// slowChunkRun starts a 100-record run whose chunk needs about 600 ms of enrichment (10 records per
// 60 ms call, one at a time), with a 150 ms yield margin; tune adjusts the options before the start.
func slowChunkRun(t *testing.T, tune func(*Options)) (*Engine, *fakeDV, *slowEnricher, checkpoint.Store, Result) {
	t.Helper()
	dv := newFakeDV(100, 0)
	en := &slowEnricher{delay: 60 * time.Millisecond}
	st := checkpoint.NewMem()
	e := testEngine(t, dv, en, st)
	e.Opt.YieldMargin, e.Opt.TransformBatch, e.Opt.TransformWorkers = 150*time.Millisecond, 10, 1
	if tune != nil {
		tune(&e.Opt)
	}
	res, err := e.Start(context.Background(), smallSpec(t), StartOptions{Run: "nightly-enrichment-y", Trigger: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return e, dv, en, st, res
}

// TestChunkYieldsBeforeTheDeadline: a chunk that cannot finish inside its invocation checkpoints,
// releases ownership and hands the rest to a new message, which finishes it without repeating work.
func TestChunkYieldsBeforeTheDeadline(t *testing.T) {
	e, dv, en, _, res := slowChunkRun(t, func(o *Options) { o.YieldMargin = time.Second })
	en.holdAfter = 3 // three calls answer at once; the fourth only once the chunk stops starting calls
	ctx := context.Background()
	short, cancel := context.WithTimeout(ctx, 4*time.Second)
	out, err := e.Handle(short, []byte(res.Enqueue[0]), Delivery{DequeueCount: 1})
	cancel()
	if err != nil {
		t.Fatalf("yield returned an error: %v", err)
	}
	if len(out.Enqueue) != 1 || out.Enqueue[0] != res.Enqueue[0] {
		t.Fatalf("yield enqueued %v, want the same chunk message", out.Enqueue)
	}
	firstCalls := en.total()
	if firstCalls != 40 {
		t.Fatalf("first invocation enriched %d records, want 40 (3 calls before the yield point and the one in flight at it)", firstCalls)
	}
	en.holdAfter = 0
	if _, err := e.Handle(ctx, []byte(out.Enqueue[0]), Delivery{DequeueCount: 1}); err != nil {
		t.Fatal(err)
	}
	if en.total() != 100 || dv.totalWrites() != 100 {
		t.Errorf("after the continuation: %d enrichment calls, %d writes; want 100 and 100", en.total(), dv.totalWrites())
	}
}

// A chunk taken over by another worker while its invocation reaches the deadline is not handed to a
// new message: the release meets the other owner's checkpoint, and the new owner has its own
// message, so this one is acknowledged without a continuation.
func TestYieldAfterTakeoverSendsNoContinuation(t *testing.T) {
	e, _, _, st, res := slowChunkRun(t, func(o *Options) {
		o.FlushInterval, o.Lease = time.Minute, time.Minute // only the release writes the checkpoint
	})
	ctx := context.Background()
	m, err := DecodeMessage([]byte(res.Enqueue[0]))
	if err != nil {
		t.Fatal(err)
	}
	name := chunkName(m.Run, m.Seq)
	took := make(chan error, 1)
	time.AfterFunc(150*time.Millisecond, func() {
		ch, etag, err := load[Chunk](ctx, st, name)
		if err == nil {
			ch.Owner, ch.Lease = "other/worker", time.Now().Add(time.Minute)
			_, err = save(ctx, st, name, ch, etag)
		}
		took <- err
	})
	short, cancel := context.WithTimeout(ctx, 450*time.Millisecond)
	out, err := e.Handle(short, []byte(res.Enqueue[0]), Delivery{DequeueCount: 1})
	cancel()
	if err := <-took; err != nil {
		t.Fatalf("taking the chunk over: %v", err)
	}
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if len(out.Enqueue) != 0 {
		t.Errorf("enqueued %d messages after losing the chunk; want no continuation (the new owner has its own message)", len(out.Enqueue))
	}
	if logs := strings.Join(out.Logs, "; "); !strings.Contains(logs, "ownership lost to another worker") {
		t.Errorf("logs %q, want the ownership loss named", logs)
	}
}

// stallStore fails every chunk checkpoint write after the first `allow` ones while stalled.
type stallStore struct {
	checkpoint.Store
	stalled atomic.Bool
	allow   atomic.Int64
}

func (s *stallStore) Update(ctx context.Context, name string, data []byte, match checkpoint.ETag) (checkpoint.ETag, error) {
	if strings.Contains(name, "/chunks/") && s.stalled.Load() && s.allow.Add(-1) < 0 {
		return "", errors.New("storage unreachable")
	}
	return s.Store.Update(ctx, name, data, match)
}

// A worker whose own lease lapses (its renewals fail) while nobody else takes the chunk must not
// acknowledge its message: the chunk would be stranded, pending, with no message left to finish it.
// It continues in a new message instead, and the run completes once storage is back.
func TestLapsedLeaseWithNoTakerContinuesInANewMessage(t *testing.T) {
	dv := newFakeDV(300, 0)
	st := &stallStore{Store: checkpoint.NewMem()}
	e := testEngine(t, dv, &slowEnricher{delay: 400 * time.Millisecond}, st)
	e.Opt.Lease = 300 * time.Millisecond
	ctx := context.Background()
	start, err := e.Start(ctx, smallSpec(t), StartOptions{Run: "nightly-enrichment-lapse", Trigger: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var chunk string
	var rest []string
	for _, m := range start.Enqueue {
		if chunk == "" && strings.Contains(m, `"kind":"chunk"`) {
			chunk = m
			continue
		}
		rest = append(rest, m)
	}
	st.allow.Store(1) // the claim goes through; every renewal after it fails
	st.stalled.Store(true)
	res, err := e.Handle(ctx, []byte(chunk), Delivery{DequeueCount: 1})
	st.stalled.Store(false)
	if err != nil {
		t.Fatalf("handle: %v", err)
	}
	if len(res.Enqueue) != 1 || !strings.Contains(strings.Join(res.Logs, " "), "no other worker holds the chunk") {
		t.Fatalf("lapsed lease: enqueued %d, logs %v; want the chunk handed to a new message", len(res.Enqueue), res.Logs)
	}
	if dv.totalWrites() != 0 {
		t.Errorf("%d records written after the lease lapsed", dv.totalWrites())
	}
	q := &LocalQueue{Engine: e, Workers: 2}
	if err := q.Run(ctx, Result{Enqueue: append(res.Enqueue, rest...)}); err != nil {
		t.Fatal(err)
	}
	s, err := ReadStatus(ctx, st, "nightly-enrichment-lapse")
	if err != nil || s.Summary == nil || s.Summary.Outcomes[pipeline.Updated] != 300 {
		t.Fatalf("run after the stall: %+v %v; want 300 records updated", s, err)
	}
}

// wipeableStore loses every document when wiped and then reports the store missing, as a deleted
// blob container does, until a Create makes it again.
type wipeableStore struct {
	mu      sync.Mutex
	st      checkpoint.Store
	missing bool
}

func (w *wipeableStore) cur() (checkpoint.Store, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st, w.missing
}

func (w *wipeableStore) wipe() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.st, w.missing = checkpoint.NewMem(), true
}

func (w *wipeableStore) Get(ctx context.Context, name string) ([]byte, checkpoint.ETag, error) {
	st, missing := w.cur()
	if missing {
		return nil, "", checkpoint.ErrStoreMissing
	}
	return st.Get(ctx, name)
}

func (w *wipeableStore) Create(ctx context.Context, name string, data []byte) (checkpoint.ETag, error) {
	w.mu.Lock()
	w.missing = false
	st := w.st
	w.mu.Unlock()
	return st.Create(ctx, name, data)
}

func (w *wipeableStore) Update(ctx context.Context, name string, data []byte, match checkpoint.ETag) (checkpoint.ETag, error) {
	st, missing := w.cur()
	if missing {
		return "", checkpoint.ErrStoreMissing
	}
	return st.Update(ctx, name, data, match)
}

func (w *wipeableStore) Delete(ctx context.Context, name string, match checkpoint.ETag) error {
	st, missing := w.cur()
	if missing {
		return checkpoint.ErrStoreMissing
	}
	return st.Delete(ctx, name, match)
}

func (w *wipeableStore) List(ctx context.Context, prefix string, fn func(string) error) error {
	st, missing := w.cur()
	if missing {
		return checkpoint.ErrStoreMissing
	}
	return st.List(ctx, prefix, fn)
}

// Storage wiped between planning and processing: the old run's chunk messages fail closed (nothing
// enriched or written as if it had never been checkpointed), and the next start makes the store
// again and runs the job afresh.
func TestWipedStoreFailsClosedAndNextRunStartsAfresh(t *testing.T) {
	dv := newFakeDV(300, 0)
	en := &fakeEnricher{}
	st := &wipeableStore{st: checkpoint.NewMem()}
	e := testEngine(t, dv, en, st)
	ctx := context.Background()
	first, err := e.Start(ctx, smallSpec(t), StartOptions{Run: "nightly-enrichment-old", Trigger: "timer"})
	if err != nil {
		t.Fatal(err)
	}
	st.wipe()
	for _, m := range first.Enqueue {
		if _, err := e.Handle(ctx, []byte(m), Delivery{DequeueCount: 1}); !errors.Is(err, ErrTransient) || !errors.Is(err, checkpoint.ErrStoreMissing) {
			t.Errorf("message of the wiped run: %v, want a transient failure (fail closed)", err)
		}
	}
	if en.total() != 0 || dv.totalWrites() != 0 {
		t.Fatalf("after the wipe: %d enrichment calls, %d writes; want none", en.total(), dv.totalWrites())
	}
	run, dead := runAll(t, e, smallSpec(t), StartOptions{Run: "nightly-enrichment-new", Trigger: "timer"})
	s, err := ReadStatus(ctx, st, run)
	if err != nil || s.Summary == nil || s.Summary.Outcomes[pipeline.Updated] != 300 || len(dead) != 0 {
		t.Fatalf("next run after the wipe: %+v %v dead %v; want 300 records updated", s, err, dead)
	}
	// The old run's messages, delivered after the store came back, still fail closed.
	if _, err := e.Handle(ctx, []byte(first.Enqueue[0]), Delivery{DequeueCount: 2}); !errors.Is(err, ErrTransient) {
		t.Errorf("old run's message after recreation: %v, want a transient failure", err)
	}
}
