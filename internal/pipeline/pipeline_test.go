package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"dvbulk/internal/ctxutil"
	"dvbulk/internal/dataverse"
)

// fakeTransform answers from a table; per-id errors and a hook to block let tests steer it.
type fakeTransform struct {
	fields map[string]map[string]any
	errs   map[string]TransformResult
	before func(items []*Item)
	mu     sync.Mutex
	calls  int
}

func (f *fakeTransform) Transform(_ context.Context, items []*Item) []TransformResult {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	if f.before != nil {
		f.before(items)
	}
	out := make([]TransformResult, len(items))
	for i, it := range items {
		if r, ok := f.errs[it.ID]; ok {
			out[i] = r
			continue
		}
		out[i] = TransformResult{Fields: f.fields[it.ID]}
	}
	return out
}

// fakeWriter records what it is asked to write and fails chosen ids.
type fakeWriter struct {
	mu      sync.Mutex
	batches [][]dataverse.Update
	fail    map[string]dataverse.Status
	err     error
	onWrite func()
}

func (w *fakeWriter) Update(_ context.Context, _ dataverse.Table, ups []dataverse.Update, _ dataverse.WriteOptions) ([]dataverse.Result, error) {
	if w.onWrite != nil {
		w.onWrite()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.batches = append(w.batches, ups)
	if w.err != nil {
		return nil, w.err
	}
	res := make([]dataverse.Result, len(ups))
	// Answer in reverse order: outcomes must be matched by id, never by position.
	for i, u := range ups {
		st := dataverse.Updated
		var err error
		if s, ok := w.fail[u.ID]; ok {
			st, err = s, fmt.Errorf("plugin rejected %s", u.ID)
		}
		res[len(ups)-1-i] = dataverse.Result{ID: u.ID, Status: st, Err: err}
	}
	return res, nil
}

func (w *fakeWriter) written() map[string]map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]map[string]any{}
	for _, b := range w.batches {
		for _, u := range b {
			out[u.ID] = u.Fields
		}
	}
	return out
}

func id(i int) string { return fmt.Sprintf("00000000-0000-0000-0000-%012d", i+1) }

func items(n int) []*Item {
	out := make([]*Item, n)
	for i := range out {
		out[i] = &Item{ID: id(i), Current: map[string]any{"numberofemployees": int64(10), "description": "old"}}
	}
	return out
}

func baseConfig(tr Transformer, w Writer) Config {
	return Config{
		Table:       dataverse.Table{EntitySet: "accounts", LogicalName: "account", Key: "accountid"},
		Types:       map[string]string{"numberofemployees": TypeInt, "description": TypeString, "revenue": TypeDecimal},
		Writable:    []string{"numberofemployees", "description"},
		Transformer: tr,
		Writer:      w,
		WriteBatch:  10,
		Linger:      20 * time.Millisecond,
	}
}

func collect(t *testing.T, cfg Config, its []*Item) (map[string]Event, error) {
	t.Helper()
	got := map[string]Event{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := Run(ctx, cfg, its, func(ev Event) {
		if ev.Kind == EventTransformed {
			return
		}
		if _, dup := got[ev.ID]; dup {
			t.Errorf("record %s reported twice", ev.ID)
		}
		got[ev.ID] = ev
	})
	return got, err
}

func TestAllowListAndCompare(t *testing.T) {
	tr := &fakeTransform{fields: map[string]map[string]any{
		id(0): {"numberofemployees": 20, "ownerid": "11111111-1111-1111-1111-111111111111", "_parentaccountid_value": "x"},
		id(1): {"numberofemployees": 10.0, "description": "old"}, // equal after normalization
		id(2): {"numberofemployees": "many"},                     // wrong type
		id(3): {"description": "new", "revenue": 5},              // revenue not writable
	}}
	w := &fakeWriter{}
	got, err := collect(t, baseConfig(tr, w), items(4))
	if err != nil {
		t.Fatal(err)
	}
	written := w.written()
	if len(written) != 2 {
		t.Fatalf("wrote %d records, want 2: %v", len(written), written)
	}
	if f := written[id(0)]; len(f) != 1 || f["numberofemployees"] != int64(20) {
		t.Errorf("record 0 wrote %v, want only numberofemployees=20", f)
	}
	if f := written[id(3)]; len(f) != 1 || f["description"] != "new" {
		t.Errorf("record 3 wrote %v, want only description", f)
	}
	for i, want := range []Outcome{Updated, Unchanged, Failed, Updated} {
		if got[id(i)].Outcome != want {
			t.Errorf("record %d outcome %q, want %q (%s)", i, got[id(i)].Outcome, want, got[id(i)].Reason)
		}
	}
	if got[id(2)].Reason == "" {
		t.Error("wrong-type failure has no reason")
	}
}

func TestFailuresAreIsolated(t *testing.T) {
	const n = 30
	fields := map[string]map[string]any{}
	for i := range n {
		fields[id(i)] = map[string]any{"description": "new"}
	}
	tr := &fakeTransform{fields: fields, errs: map[string]TransformResult{
		id(5): {Err: "no match"},
		id(6): {Err: "service unavailable", Retryable: true},
	}}
	w := &fakeWriter{fail: map[string]dataverse.Status{id(7): dataverse.Failed, id(8): dataverse.Gone, id(9): dataverse.Conflict}}
	got, err := collect(t, baseConfig(tr, w), items(n))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d records reported, want %d", len(got), n)
	}
	want := map[int]Outcome{5: Failed, 7: Failed, 8: Gone, 9: Skipped}
	for i := range n {
		ev := got[id(i)]
		switch {
		case i == 6:
			if ev.Kind != EventRetry || ev.Outcome != "" {
				t.Errorf("record 6: %+v, want a retry without outcome", ev)
			}
		case want[i] != "":
			if ev.Outcome != want[i] || ev.Reason == "" {
				t.Errorf("record %d: outcome %q reason %q, want %q with a reason", i, ev.Outcome, ev.Reason, want[i])
			}
		default:
			if ev.Outcome != Updated {
				t.Errorf("record %d: outcome %q, want updated", i, ev.Outcome)
			}
		}
	}
}

// TestStagesOverlap proves the writer runs while the transformer is still busy: the second transform
// call does not return until a write has happened, which would deadlock a sequential pipeline.
func TestStagesOverlap(t *testing.T) {
	fields := map[string]map[string]any{}
	for i := range 20 {
		fields[id(i)] = map[string]any{"description": "new"}
	}
	wrote := make(chan struct{})
	var once sync.Once
	tr := &fakeTransform{fields: fields}
	var mu sync.Mutex
	calls := 0
	tr.before = func([]*Item) {
		mu.Lock()
		calls++
		c := calls
		mu.Unlock()
		if c == 2 {
			select {
			case <-wrote:
			case <-time.After(5 * time.Second):
				t.Error("no write happened while the transform stage was busy")
			}
		}
	}
	w := &fakeWriter{onWrite: func() { once.Do(func() { close(wrote) }) }}
	cfg := baseConfig(tr, w)
	cfg.TransformBatch, cfg.TransformWorkers, cfg.WriteBatch = 10, 1, 10
	got, err := collect(t, cfg, items(20))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 {
		t.Fatalf("%d outcomes, want 20", len(got))
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	tr := &fakeTransform{fields: map[string]map[string]any{id(0): {"description": "new"}, id(1): {"description": "old"}}}
	w := &fakeWriter{}
	cfg := baseConfig(tr, w)
	cfg.DryRun = true
	got, err := collect(t, cfg, items(2))
	if err != nil {
		t.Fatal(err)
	}
	if len(w.written()) != 0 {
		t.Fatalf("dry run wrote %v", w.written())
	}
	if got[id(0)].Outcome != WouldUpdate || got[id(0)].Changed["description"] != "new" {
		t.Errorf("record 0: %+v, want would-update with the change", got[id(0)])
	}
	if got[id(1)].Outcome != Unchanged {
		t.Errorf("record 1: %+v, want unchanged", got[id(1)])
	}
}

func TestCheckpointedFieldsSkipTransform(t *testing.T) {
	tr := &fakeTransform{}
	w := &fakeWriter{}
	its := items(3)
	for _, it := range its {
		it.Fields = map[string]any{"description": "resumed"}
	}
	got, err := collect(t, baseConfig(tr, w), its)
	if err != nil {
		t.Fatal(err)
	}
	if tr.calls != 0 {
		t.Errorf("transform called %d times for checkpointed records", tr.calls)
	}
	if len(got) != 3 || len(w.written()) != 3 {
		t.Errorf("got %d outcomes and %d writes, want 3 and 3", len(got), len(w.written()))
	}
}

func TestWriteUnavailableLeavesRecordsPending(t *testing.T) {
	tr := &fakeTransform{fields: map[string]map[string]any{id(0): {"description": "new"}}}
	w := &fakeWriter{err: fmt.Errorf("retry budget spent: %w", dataverse.ErrUnavailable)}
	got, err := collect(t, baseConfig(tr, w), items(1))
	if err != nil {
		t.Fatal(err)
	}
	if ev := got[id(0)]; ev.Kind != EventRetry || ev.Outcome != "" {
		t.Errorf("got %+v, want a retry event and no outcome", ev)
	}
}

func TestGuardStopsWrites(t *testing.T) {
	tr := &fakeTransform{fields: map[string]map[string]any{id(0): {"description": "new"}}}
	w := &fakeWriter{}
	cfg := baseConfig(tr, w)
	cfg.Guard = func() error { return ErrLostOwnership }
	_, err := collect(t, cfg, items(1))
	if !errors.Is(err, ErrLostOwnership) {
		t.Fatalf("err = %v, want ErrLostOwnership", err)
	}
	if len(w.written()) != 0 {
		t.Fatal("wrote after the guard refused")
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		typ  string
		in   any
		want any
		bad  bool
	}{
		{TypeInt, 12.0, int64(12), false},
		{TypeInt, 12.5, nil, true},
		{TypeInt, "12", nil, true},
		{TypeDecimal, 3, 3.0, false},
		{TypeString, "x", "x", false},
		{TypeString, 1, nil, true},
		{TypeGUID, "AAAAAAAA-0000-0000-0000-000000000001", "aaaaaaaa-0000-0000-0000-000000000001", false},
		{TypeGUID, "{AAAAAAAA-0000-0000-0000-000000000001}", nil, true},
		{TypeBool, true, true, false},
		{TypeInt, nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%v", tt.typ, tt.in), func(t *testing.T) {
			got, err := Normalize(tt.typ, tt.in)
			if (err != nil) != tt.bad || got != tt.want {
				t.Errorf("Normalize(%s, %v) = %v, %v; want %v, bad=%v", tt.typ, tt.in, got, err, tt.want, tt.bad)
			}
		})
	}
}

// The records still waiting when the transform stage ends go out split over the write workers (each
// request at least minSplit records), not as one long request; full batches stay whole.
func TestLastPartialBatchIsSplitOverWriters(t *testing.T) {
	fields := map[string]map[string]any{}
	for i := range 245 {
		fields[id(i)] = map[string]any{"description": "new"}
	}
	w := &fakeWriter{}
	cfg := baseConfig(&fakeTransform{fields: fields}, w)
	cfg.WriteBatch, cfg.WriteWorkers, cfg.TransformBatch = 100, 4, 245
	cfg.Linger = time.Hour
	got, err := collect(t, cfg, items(245))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 245 || len(w.written()) != 245 {
		t.Fatalf("%d outcomes, %d written; want 245 of each", len(got), len(w.written()))
	}
	var sizes []int
	for _, b := range w.batches {
		sizes = append(sizes, len(b))
	}
	// Two full batches of 100, then the 45 left split into 4 requests of 12, 12, 12 and 9.
	full, parts := 0, 0
	for _, n := range sizes {
		switch {
		case n == 100:
			full++
		case n >= minSplit-1 && n <= 12:
			parts++
		default:
			t.Errorf("request of %d records", n)
		}
	}
	if full != 2 || parts != 4 {
		t.Errorf("request sizes %v: want 2 of 100 and 4 of ~12", sizes)
	}
}

// Closing Stop starts no further transform calls, but the call in flight finishes: its results are
// kept and written. The items never started are not reported (they stay pending).
func TestStopLetsCallsInFlightFinish(t *testing.T) {
	fields := map[string]map[string]any{}
	for i := range 30 {
		fields[id(i)] = map[string]any{"description": "new"}
	}
	stop := make(chan struct{})
	var once sync.Once
	tr := &fakeTransform{fields: fields, before: func([]*Item) {
		once.Do(func() {
			close(stop)
			time.Sleep(50 * time.Millisecond) // the answer arrives after the stop
		})
	}}
	w := &fakeWriter{}
	cfg := baseConfig(tr, w)
	cfg.TransformBatch, cfg.TransformWorkers = 10, 1
	got := map[string]Event{}
	err := Run(ctxutil.WithStop(context.Background(), stop), cfg, items(30), func(ev Event) {
		if ev.Kind != EventTransformed {
			got[ev.ID] = ev
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if tr.calls != 1 {
		t.Errorf("%d transform calls, want only the one in flight at the stop", tr.calls)
	}
	if len(got) != 10 || len(w.written()) != 10 {
		t.Errorf("%d outcomes, %d written; want the 10 answered in flight, the other 20 pending", len(got), len(w.written()))
	}
}
