package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/ledger"
	"dvbulk/internal/pipeline"
)

var night1 = time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC)

// nightly is an incremental rig: an engine with the default rules and a clock the test moves.
type nightly struct {
	t   *testing.T
	dv  *fakeDV
	en  *fakeEnricher
	st  checkpoint.Store
	e   *Engine
	now atomic.Pointer[time.Time]
	n   int
}

func newNightly(t *testing.T, active, inactive int, st checkpoint.Store) *nightly {
	if st == nil {
		st = checkpoint.NewMem()
	}
	r := &nightly{t: t, dv: newFakeDV(active, inactive), en: &fakeEnricher{fail: map[string]string{}}, st: st}
	r.e = testEngine(t, r.dv, r.en, st)
	r.e.Opt.Rules = ledger.Rules{RefreshAfter: 720 * time.Hour, NoMatchRetryAfter: 168 * time.Hour}
	r.set(night1)
	r.e.Now = func() time.Time { return *r.now.Load() }
	return r
}

func (r *nightly) set(at time.Time) { r.now.Store(&at) }

// run runs the job once at the current clock and returns its summary and the enrichment calls made.
func (r *nightly) run(spec *Spec, o StartOptions) (*Summary, int) {
	r.t.Helper()
	r.n++
	before := r.en.total()
	o.Run, o.Trigger = fmt.Sprintf("nightly-enrichment-n%d", r.n), "test"
	run, dead := runAll(r.t, r.e, spec, o)
	if len(dead) != 0 {
		r.t.Fatalf("dead letters: %v", dead)
	}
	s, err := ReadStatus(context.Background(), r.st, run)
	if err != nil || s.Summary == nil {
		r.t.Fatalf("run %s: no summary (%v)", run, err)
	}
	return s.Summary, r.en.total() - before
}

// start plans a run without processing it and checks how many chunk messages it made.
func (r *nightly) start(spec *Spec, run string, chunks int) Result {
	r.t.Helper()
	res, err := r.e.Start(context.Background(), spec, StartOptions{Run: run, Trigger: "test"})
	if err != nil || len(res.Enqueue) != chunks {
		r.t.Fatalf("start: %v, %d messages, want %d", err, len(res.Enqueue), chunks)
	}
	return res
}

func (r *nightly) active() []string {
	var ids []string
	for id, row := range r.dv.rows {
		if row["statecode"] == json.Number("0") {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

func (r *nightly) callsTo(ids []string) map[string]int {
	r.en.mu.Lock()
	defer r.en.mu.Unlock()
	out := map[string]int{}
	for _, id := range ids {
		out[id] = r.en.calls[id]
	}
	return out
}

func TestIncrementalSendsOnlyChangedAndNew(t *testing.T) {
	r := newNightly(t, 1000, 50, nil)
	spec := smallSpec(t)
	sum, calls := r.run(spec, StartOptions{})
	if calls != 1000 || sum.Outcomes[pipeline.Updated] != 1000 || sum.Outcomes[pipeline.Fresh] != 0 {
		t.Fatalf("run 1: %d calls, outcomes %v; want 1000 updated", calls, sum.Outcomes)
	}

	// A day later: 20 renamed, 10 new, 5 deleted, 5 deactivated.
	r.set(night1.Add(24 * time.Hour))
	ids := r.active()
	var changed []string
	for i := 0; i < 20; i++ {
		id := ids[i*7]
		r.dv.rows[id]["name"] = "Renamed " + id[:8]
		changed = append(changed, id)
	}
	for i := 0; i < 10; i++ {
		id := fmt.Sprintf("%08x-0000-4000-8000-%012x", 9000+i, 9000+i)
		r.dv.rows[id] = map[string]any{"accountid": id, "name": "New " + id[:8], "websiteurl": nil, "numberofemployees": nil,
			"revenue": nil, "industrycode": nil, "description": nil, "statecode": json.Number("0")}
		r.dv.version[id] = 1
		changed = append(changed, id)
	}
	for i := 0; i < 5; i++ {
		delete(r.dv.rows, ids[i*7+1])
		r.dv.rows[ids[i*7+2]]["statecode"] = json.Number("1")
	}
	before := r.callsTo(r.active())
	writesBefore := r.dv.totalWrites()
	sum, calls = r.run(spec, StartOptions{})
	if calls != 30 {
		t.Errorf("run 2: %d enrichment calls, want exactly the 30 changed and new", calls)
	}
	after := r.callsTo(r.active())
	for _, id := range changed {
		if after[id] != before[id]+1 {
			t.Errorf("run 2: %s asked %d times, want once", id, after[id]-before[id])
		}
	}
	// 1000 - 5 deleted - 5 deactivated + 10 new = 1000 active, of which 970 unchanged.
	if sum.Outcomes[pipeline.Fresh] != 970 || sum.EnrichmentCallsSaved != 970 || sum.Records != sum.Planned || sum.Planned != 1000 {
		t.Errorf("run 2: outcomes %v, saved %d, records %d of %d planned; want 970 fresh of 1000", sum.Outcomes, sum.EnrichmentCallsSaved, sum.Records, sum.Planned)
	}
	// The renamed ones get the same answer (the fake answers by id): not written; the new ones are.
	if w := r.dv.totalWrites() - writesBefore; w != 10 {
		t.Errorf("run 2 wrote %d records, want the 10 new ones", w)
	}

	r.set(night1.Add(48 * time.Hour))
	writesBefore = r.dv.totalWrites()
	sum, calls = r.run(spec, StartOptions{})
	if calls != 0 || r.dv.totalWrites() != writesBefore || sum.Outcomes[pipeline.Fresh] != 1000 || sum.Chunks != 0 {
		t.Errorf("run 3: %d calls, %d writes, outcomes %v, %d chunks; want nothing sent or written", calls, r.dv.totalWrites()-writesBefore, sum.Outcomes, sum.Chunks)
	}

	sum, calls = r.run(spec, StartOptions{Full: true})
	if calls != 1000 || !sum.Full || sum.Outcomes[pipeline.Fresh] != 0 {
		t.Errorf("full run: %d calls, outcomes %v; want all 1000 sent", calls, sum.Outcomes)
	}
}

func TestIncrementalRefreshAndNoMatchRules(t *testing.T) {
	r := newNightly(t, 300, 0, nil)
	spec := smallSpec(t)
	ids := r.active()
	noMatch, broken := ids[3], ids[4]
	r.en.fail[noMatch] = "no match"
	r.en.fail[broken] = "service says: bad record"
	if _, calls := r.run(spec, StartOptions{}); calls != 300 {
		t.Fatalf("run 1: %d calls", calls)
	}
	rules := r.e.Opt.Rules
	earliest := rules.RefreshAfter
	for _, id := range ids {
		earliest = min(earliest, rules.RefreshDue(id, night1))
	}
	// The no-match record is asked again each time its last "no match" is 168h old (+168h, +336h,
	// +504h, +672h); the broken one every night; the others once, when their jittered refresh is due.
	steps := []struct {
		at   time.Duration
		want []string // records asked at that time
	}{
		{time.Hour, []string{broken}},
		{168*time.Hour - 2*time.Minute, []string{broken}},
		{168 * time.Hour, []string{broken, noMatch}},
		{336*time.Hour - 2*time.Minute, []string{broken}},
		{336 * time.Hour, []string{broken, noMatch}},
		{504 * time.Hour, []string{broken, noMatch}},
		{earliest - 2*time.Minute, []string{broken}},
		{720 * time.Hour, ids},
	}
	if earliest-2*time.Minute < 504*time.Hour || earliest-2*time.Minute > 672*time.Hour {
		t.Fatalf("earliest refresh %s: the steps assume it is between +504h and +672h", earliest)
	}
	for _, s := range steps {
		r.set(night1.Add(s.at))
		before := r.callsTo(ids)
		r.run(spec, StartOptions{})
		after := r.callsTo(ids)
		var asked []string
		for _, id := range ids {
			if after[id] != before[id] {
				asked = append(asked, id)
			}
		}
		want := append([]string(nil), s.want...)
		sort.Strings(want)
		if strings.Join(asked, ",") != strings.Join(want, ",") {
			t.Errorf("at +%s: asked %d records %v, want %d %v", s.at, len(asked), asked[:min(3, len(asked))], len(want), want[:min(3, len(want))])
		}
	}
}

func TestSpecVersionChangeAsksEverything(t *testing.T) {
	r := newNightly(t, 200, 0, nil)
	spec := smallSpec(t)
	r.run(spec, StartOptions{})
	r.set(night1.Add(time.Hour))
	if _, calls := r.run(spec, StartOptions{}); calls != 0 {
		t.Fatalf("unchanged job: %d calls, want 0", calls)
	}
	changed := *spec
	changed.Writable = []string{"numberofemployees", "description"}
	if _, calls := r.run(&changed, StartOptions{}); calls != 200 {
		t.Errorf("after the writable list changed: %d calls, want all 200", calls)
	}
	if _, calls := r.run(&changed, StartOptions{}); calls != 0 {
		t.Errorf("second run of the changed job: %d calls, want 0", calls)
	}
}

func TestDryRunNeverUpdatesTheLedger(t *testing.T) {
	r := newNightly(t, 150, 0, nil)
	spec := smallSpec(t)
	if _, calls := r.run(spec, StartOptions{DryRun: true}); calls != 150 {
		t.Fatalf("dry run: %d calls", calls)
	}
	n := 0
	if err := ledger.New(r.st, spec.Name).Scan(context.Background(), func(string, ledger.Entry) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("dry run left %d ledger entries (%v)", n, err)
	}
	if _, calls := r.run(spec, StartOptions{}); calls != 150 {
		t.Errorf("real run after a dry run: %d calls, want all 150", calls)
	}
}

// ledgerOutage fails every ledger write while armed.
type ledgerOutage struct {
	checkpoint.Store
	armed atomic.Bool
}

var errOutage = errors.New("storage unavailable")

func (s *ledgerOutage) Create(ctx context.Context, name string, data []byte) (checkpoint.ETag, error) {
	if s.armed.Load() && strings.HasPrefix(name, "ledger/") {
		return "", errOutage
	}
	return s.Store.Create(ctx, name, data)
}

func (s *ledgerOutage) Update(ctx context.Context, name string, data []byte, match checkpoint.ETag) (checkpoint.ETag, error) {
	if s.armed.Load() && strings.HasPrefix(name, "ledger/") {
		return "", errOutage
	}
	return s.Store.Update(ctx, name, data, match)
}

// A failure between the chunk's final checkpoint and the ledger update (the state a crash there
// leaves) fails the delivery; the redelivery finds the chunk done, records it in the ledger without a
// single call, and the next night asks nothing.
func TestLedgerUpdateAfterDurableOutcomeSurvivesAFailure(t *testing.T) {
	st := &ledgerOutage{Store: checkpoint.NewMem()}
	r := newNightly(t, 100, 0, st)
	spec := smallSpec(t)
	ctx := context.Background()
	res := r.start(spec, "nightly-enrichment-crash", 1)
	st.armed.Store(true)
	if _, err := r.e.Handle(ctx, []byte(res.Enqueue[0]), Delivery{DequeueCount: 1}); err == nil {
		t.Fatal("the delivery succeeded although the ledger could not be written")
	}
	ch, _, err := load[Chunk](ctx, st, chunkName("nightly-enrichment-crash", 0))
	if err != nil || ch.State != ChunkDone {
		t.Fatalf("chunk after the failed ledger write: %v %v, want done (outcomes durable first)", ch.State, err)
	}
	n := 0
	_ = ledger.New(st, spec.Name).Scan(ctx, func(string, ledger.Entry) error { n++; return nil })
	if n != 0 {
		t.Fatalf("%d ledger entries although its write failed", n)
	}
	st.armed.Store(false)
	calls := r.en.total()
	if _, err := r.e.Handle(ctx, []byte(res.Enqueue[0]), Delivery{DequeueCount: 2}); err != nil {
		t.Fatal(err)
	}
	if r.en.total() != calls {
		t.Fatalf("redelivery asked the service again: %d calls", r.en.total()-calls)
	}
	r.set(night1.Add(time.Hour))
	if _, calls := r.run(spec, StartOptions{}); calls != 0 {
		t.Errorf("next night: %d calls, want 0 (all recorded by the redelivery)", calls)
	}
}

// A crash before the chunk's final checkpoint (the enrichment answered and written, the outcome not
// yet durable) leaves the ledger untouched: those records are asked again, and only those.
func TestCrashBeforeDurableOutcomeReasksOnlyInFlight(t *testing.T) {
	r := newNightly(t, 200, 0, nil)
	spec := smallSpec(t)
	ctx := context.Background()
	res := r.start(spec, "nightly-enrichment-kill", 2)
	// Chunk 0 completes; chunk 1's worker "dies": its checkpoint is left as planned, nothing recorded.
	if _, err := r.e.Handle(ctx, []byte(res.Enqueue[0]), Delivery{DequeueCount: 1}); err != nil {
		t.Fatal(err)
	}
	m1, _ := DecodeMessage([]byte(res.Enqueue[1]))
	for _, id := range m1.IDs {
		r.en.mu.Lock()
		r.en.calls[id]++
		r.en.mu.Unlock()
		for k, v := range truth(id) {
			if k != "ownerid" {
				r.dv.rows[id][k] = v
			}
		}
	}
	entries, err := ledger.New(r.st, spec.Name).Lookup(ctx, m1.IDs)
	if err != nil || len(entries) != 0 {
		t.Fatalf("ledger holds %d of the dead chunk's records (%v), want 0", len(entries), err)
	}
	// The redelivery asks the in-flight records again, and nothing else.
	calls := r.en.total()
	if _, err := r.e.Handle(ctx, []byte(res.Enqueue[1]), Delivery{DequeueCount: 2}); err != nil {
		t.Fatal(err)
	}
	if got := r.en.total() - calls; got != len(m1.IDs) {
		t.Errorf("redelivery asked %d records, want the %d in flight", got, len(m1.IDs))
	}
	r.set(night1.Add(time.Hour))
	if _, calls := r.run(spec, StartOptions{}); calls != 0 {
		t.Errorf("next night: %d calls, want 0", calls)
	}
}

func TestRecalculateOptsIn(t *testing.T) {
	r := newNightly(t, 120, 0, nil)
	spec, err := Lookup("recalculate-tier")
	if err != nil {
		t.Fatal(err)
	}
	spec.ChunkSize, spec.PageSize = 50, 100
	sum, _ := r.run(spec, StartOptions{})
	if sum.Outcomes[pipeline.Fresh] != 0 {
		t.Fatalf("non-incremental recalculation: %v", sum.Outcomes)
	}
	if sum, _ = r.run(spec, StartOptions{}); sum.Outcomes[pipeline.Fresh] != 0 {
		t.Fatalf("without opting in every record is recomputed: %v", sum.Outcomes)
	}
	inc := *spec
	inc.Incremental = true
	r.run(&inc, StartOptions{})
	id := r.active()[5]
	r.dv.rows[id]["revenue"] = json.Number("2000000")
	r.set(night1.Add(2000 * time.Hour)) // no refresh for recalculations: only inputs count
	sum, _ = r.run(&inc, StartOptions{})
	if sum.Outcomes[pipeline.Fresh] != 119 || sum.Outcomes[pipeline.Updated] != 1 {
		t.Errorf("incremental recalculation after one input changed: %v, want 119 fresh and 1 updated", sum.Outcomes)
	}
	bad := *spec
	bad.Transform = Transform{Kind: KindAction, Action: "new_Score"}
	bad.Incremental = true
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "incremental") {
		t.Errorf("an incremental action job was accepted: %v", err)
	}
}

func TestStartMessageFull(t *testing.T) {
	m, err := DecodeMessage([]byte(`{"v":1,"kind":"start","job":"nightly-enrichment","full":true}`))
	if err != nil || !m.Full {
		t.Fatalf("full start message: %+v, %v", m, err)
	}
	if _, err := DecodeMessage([]byte(`{"v":1,"kind":"start","job":"nightly-enrichment","ful":true}`)); err == nil || !strings.Contains(err.Error(), "ful") {
		t.Errorf("a misspelled full was accepted: %v", err)
	}
	// Handled like dvbulk run --full: every record is sent although the ledger knows them all.
	r := newNightly(t, 120, 0, nil)
	spec := smallSpec(t)
	r.run(spec, StartOptions{})
	before := r.en.total()
	res, err := r.e.Handle(context.Background(), []byte(`{"v":1,"kind":"start","job":"nightly-enrichment","run":"nightly-enrichment-full","full":true}`), Delivery{DequeueCount: 1})
	if err != nil || len(res.DeadLetter) != 0 {
		t.Fatalf("start: %v %v", err, res.DeadLetter)
	}
	q := &LocalQueue{Engine: r.e, Workers: 2, Retry: 10 * time.Millisecond}
	if err := q.Run(context.Background(), res); err != nil {
		t.Fatal(err)
	}
	if got := r.en.total() - before; got != 120 {
		t.Errorf("full start message: %d records sent, want 120", got)
	}
}
