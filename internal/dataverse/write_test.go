package dataverse

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func updatesFor(ids []string, desc string) []Update {
	ups := make([]Update, len(ids))
	for i, id := range ids {
		ups[i] = Update{ID: id, Fields: map[string]any{"description": desc}}
	}
	return ups
}

// checkResults asserts one result per input, each carrying its input's ID, in input order.
func checkResults(t *testing.T, ups []Update, res []Result) {
	t.Helper()
	if len(res) != len(ups) {
		t.Fatalf("got %d results for %d updates", len(res), len(ups))
	}
	for i := range ups {
		if res[i].ID != ups[i].ID {
			t.Fatalf("result %d has ID %q, want %q", i, res[i].ID, ups[i].ID)
		}
	}
}

func TestUpdateOneBadAmongHundred(t *testing.T) {
	for _, mode := range []WriteMode{ModeBatch, ModeBulk, ModeSingle} {
		t.Run(string(mode), func(t *testing.T) {
			ids := testIDs(100)
			f := newFakeDV(t, ids...)
			f.bulkSupported = true
			bad := ids[37]
			f.bad[bad] = true
			c := newTestClient(t, f.start().URL, nil)
			ups := updatesFor(ids, "enriched")
			res, err := c.Update(ctxT(t), accounts, ups, WriteOptions{Mode: mode, BatchSize: 100})
			if err != nil {
				t.Fatalf("Update: %v", err)
			}
			checkResults(t, ups, res)
			for i, r := range res {
				if ids[i] == bad {
					var ae *APIError
					if r.Status != Failed || !errors.As(r.Err, &ae) || ae.Code != "0x80040265" {
						t.Errorf("bad record: got %v %v, want Failed with code 0x80040265", r.Status, r.Err)
					}
					if got := f.field(bad, "description"); got != nil {
						t.Errorf("bad record was written: %v", got)
					}
					continue
				}
				if r.Status != Updated || r.Err != nil {
					t.Errorf("record %d: got %v %v, want Updated", i, r.Status, r.Err)
				}
				if got := f.field(ids[i], "description"); got != "enriched" {
					t.Errorf("record %d not written: %v", i, got)
				}
			}
			switch mode {
			case ModeBulk:
				// One UpdateMultiple of 100, then bisection: the bad record is isolated in a
				// few dozen requests at most, not one request per record.
				n := f.count(func(r fakeReq) bool { return strings.HasSuffix(r.URI, "UpdateMultiple") })
				if n < 3 || n > 2*7+1 {
					t.Errorf("UpdateMultiple requests = %d, want bisection (3..15)", n)
				}
				if f.bulkSizes[0] != 100 {
					t.Errorf("first UpdateMultiple carried %d targets, want 100", f.bulkSizes[0])
				}
			case ModeBatch:
				if !slices.Equal(f.batchSizes, []int{100}) {
					t.Errorf("batch sizes = %v, want one batch of 100", f.batchSizes)
				}
			}
		})
	}
}

func TestUpdateDeletedRecordIsGoneNotCreated(t *testing.T) {
	for _, mode := range []WriteMode{ModeBatch, ModeBulk, ModeSingle} {
		t.Run(string(mode), func(t *testing.T) {
			ids := testIDs(5)
			f := newFakeDV(t, ids[:4]...) // ids[4] was deleted
			f.bulkSupported = true
			c := newTestClient(t, f.start().URL, nil)
			ups := updatesFor(ids, "x")
			res, err := c.Update(ctxT(t), accounts, ups, WriteOptions{Mode: mode})
			if err != nil {
				t.Fatalf("Update: %v", err)
			}
			checkResults(t, ups, res)
			if res[4].Status != Gone || !errors.Is(res[4].Err, ErrNotFound) {
				t.Errorf("deleted record: got %v %v, want Gone wrapping ErrNotFound", res[4].Status, res[4].Err)
			}
			for i := range 4 {
				if res[i].Status != Updated {
					t.Errorf("record %d: %v %v", i, res[i].Status, res[i].Err)
				}
			}
			if len(f.created) != 0 {
				t.Errorf("records created: %v", f.created)
			}
			// Every single-record write carried If-Match: * (the fake upserts without it).
			for _, r := range f.requests() {
				if r.Method == http.MethodPatch && r.Header.Get("If-Match") != "*" {
					t.Errorf("PATCH %s without If-Match: *", r.URI)
				}
			}
			for _, h := range f.innerHeaders {
				if h.Get("If-Match") != "*" {
					t.Errorf("batch operation without If-Match: *: %v", h)
				}
			}
		})
	}
}

func TestUpdateETagConflict(t *testing.T) {
	ids := testIDs(2)
	f := newFakeDV(t, ids...)
	f.bulkSupported = true
	c := newTestClient(t, f.start().URL, nil)
	ups := []Update{
		{ID: ids[0], Fields: map[string]any{"name": "a"}, IfMatch: `W/"1"`},  // current
		{ID: ids[1], Fields: map[string]any{"name": "b"}, IfMatch: `W/"99"`}, // stale
	}
	res, err := c.Update(ctxT(t), accounts, ups, WriteOptions{Mode: ModeBulk})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Status != Updated || res[1].Status != Conflict || !errors.Is(res[1].Err, ErrConflict) {
		t.Fatalf("got %+v", res)
	}
	// ETag-guarded records must not go through UpdateMultiple, which cannot check them.
	if n := f.count(func(r fakeReq) bool { return strings.HasSuffix(r.URI, "UpdateMultiple") }); n != 0 {
		t.Errorf("%d UpdateMultiple requests for ETag-guarded records", n)
	}
}

func TestUpdateBatchSizeRefusalRecovered(t *testing.T) {
	ids := testIDs(35)
	f := newFakeDV(t, ids...)
	f.maxBatch = 10
	c := newTestClient(t, f.start().URL, nil)
	res, err := c.Update(ctxT(t), accounts, updatesFor(ids, "x"), WriteOptions{Mode: ModeBatch, BatchSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Status != Updated {
			t.Fatalf("record %d: %v %v", i, r.Status, r.Err)
		}
	}
	if got := c.Stats().BatchLimit; got != 10 {
		t.Errorf("learned batch limit = %d, want 10", got)
	}
	// The refused batch of 35, then batches of at most 10.
	if f.batchSizes[0] != 35 {
		t.Errorf("first batch = %d, want 35", f.batchSizes[0])
	}
	// Then straight to the named limit: 10, 10, 10, 5 (not halves of 35).
	if got := slices.Sorted(slices.Values(f.batchSizes[1:])); !slices.Equal(got, []int{5, 10, 10, 10}) {
		t.Errorf("batches after the refusal = %v, want 10, 10, 10 and 5", got)
	}
	// A later call splits up front: no refused batch any more.
	before := len(f.batchSizes)
	if _, err := c.Update(ctxT(t), accounts, updatesFor(ids[:25], "y"), WriteOptions{Mode: ModeBatch, BatchSize: 50}); err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(slices.Values(f.batchSizes[before:]))
	if !slices.Equal(got, []int{5, 10, 10}) {
		t.Errorf("second call batches = %v, want 10, 10 and 5 (any order)", got)
	}
}

func TestUpdateMultipleUnsupportedFallsBackToBatch(t *testing.T) {
	cases := []struct {
		name      string
		supported bool // probe answer
		gone      bool // action missing although the probe said yes
	}{
		{"probe says no", false, false},
		{"action not found", true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ids := testIDs(20)
			f := newFakeDV(t, ids...)
			f.bulkSupported, f.bulkActionGone = tc.supported, tc.gone
			c := newTestClient(t, f.start().URL, nil)
			for round := range 2 {
				res, err := c.Update(ctxT(t), accounts, updatesFor(ids, "x"), WriteOptions{Mode: ModeBulk})
				if err != nil {
					t.Fatal(err)
				}
				for i, r := range res {
					if r.Status != Updated {
						t.Fatalf("round %d record %d: %v %v", round, i, r.Status, r.Err)
					}
				}
			}
			bulk := f.count(func(r fakeReq) bool { return strings.HasSuffix(r.URI, "UpdateMultiple") })
			probes := f.count(func(r fakeReq) bool { return strings.Contains(r.URI, "sdkmessagefilters") })
			want := 0
			if tc.gone {
				want = 1 // tried once, then remembered
			}
			if bulk != want || probes != 1 {
				t.Errorf("UpdateMultiple requests = %d (want %d), probes = %d (want 1, cached)", bulk, want, probes)
			}
			if len(f.batchSizes) != 2 {
				t.Errorf("batches = %v, want one per call", f.batchSizes)
			}
		})
	}
}

func TestUpdateMultipleWireFormatAndHeaders(t *testing.T) {
	ids := testIDs(3)
	f := newFakeDV(t, ids...)
	f.bulkSupported = true
	c := newTestClient(t, f.start().URL, nil)
	no := false
	err := c.UpdateMultiple(ctxT(t), accounts, updatesFor(ids, "x"), WriteOptions{
		BypassBusinessLogic: "CustomSync,CustomAsync", BypassCustomPlugins: true, SuppressDuplicateDetection: &no,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := f.requests()[0]
	for k, v := range map[string]string{
		"MSCRM.BypassBusinessLogicExecution": "CustomSync,CustomAsync",
		"MSCRM.BypassCustomPluginExecution":  "true",
		"MSCRM.SuppressDuplicateDetection":   "false",
		"Content-Type":                       "application/json; charset=utf-8",
	} {
		if got := r.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if !slices.Equal(f.bulkSizes, []int{3}) || f.field(ids[2], "description") != "x" {
		t.Errorf("bulk sizes %v; record not written", f.bulkSizes)
	}
	if err := c.UpdateMultiple(ctxT(t), accounts, []Update{{ID: ids[0], IfMatch: `W/"1"`}}, WriteOptions{}); err == nil {
		t.Error("UpdateMultiple accepted an ETag it cannot check")
	}
}

func TestBatchInnerRequestsCarryOptionalHeaders(t *testing.T) {
	ids := testIDs(3)
	f := newFakeDV(t, ids...)
	c := newTestClient(t, f.start().URL, nil)
	if _, err := c.Update(ctxT(t), accounts, updatesFor(ids, "x"), WriteOptions{Mode: ModeBatch, BypassCustomPlugins: true}); err != nil {
		t.Fatal(err)
	}
	if len(f.innerHeaders) != 3 {
		t.Fatalf("inner requests = %d", len(f.innerHeaders))
	}
	for _, h := range f.innerHeaders {
		if h.Get("MSCRM.BypassCustomPluginExecution") != "true" {
			t.Errorf("inner request headers %v lack the bypass header", h)
		}
	}
}

func TestUpdateInputValidation(t *testing.T) {
	ids := testIDs(2)
	f := newFakeDV(t, ids...)
	c := newTestClient(t, f.start().URL, nil)
	ups := []Update{
		{ID: strings.ToUpper(ids[0]), Fields: map[string]any{"name": "ok"}},
		{ID: "{" + ids[1] + "}", Fields: map[string]any{"name": "x"}},
		{ID: ids[0], Fields: map[string]any{"name": "repeat"}},
		{ID: ids[1], Fields: map[string]any{"accountid": ids[0]}},
		{ID: ids[1], Fields: map[string]any{"bad name": 1}},
		{ID: ids[1], Fields: map[string]any{"name": "y"}, IfMatch: "not-an-etag"},
	}
	res, err := c.Update(ctxT(t), accounts, ups, WriteOptions{Mode: ModeSingle})
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, ups, res)
	want := []Status{Updated, Failed, Failed, Failed, Failed, Failed}
	for i, r := range res {
		if r.Status != want[i] {
			t.Errorf("update %d: %v %v, want %v", i, r.Status, r.Err, want[i])
		}
	}
	if !errors.Is(res[1].Err, ErrInvalidID) {
		t.Errorf("braced id: %v", res[1].Err)
	}
	if got := f.count(func(r fakeReq) bool { return r.Method == http.MethodPatch }); got != 1 {
		t.Errorf("PATCH requests = %d, want 1 (only the valid record)", got)
	}
	if _, err := c.Update(ctxT(t), accounts, ups[:1], WriteOptions{Mode: "fast"}); err == nil {
		t.Error("unknown mode accepted")
	}
	if _, err := c.Update(ctxT(t), accounts, ups[:1], WriteOptions{BypassBusinessLogic: "All"}); err == nil {
		t.Error("invalid BypassBusinessLogic accepted")
	}
}

func TestChangeSetAllOrNothing(t *testing.T) {
	ids := testIDs(4)
	f := newFakeDV(t, ids[:3]...) // ids[3] does not exist
	c := newTestClient(t, f.start().URL, nil)

	res, err := c.ChangeSet(ctxT(t), accounts, updatesFor(ids[:3], "ok"), WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Status != Updated || f.field(ids[i], "description") != "ok" {
			t.Fatalf("record %d: %v %v", i, r.Status, r.Err)
		}
	}

	ups := updatesFor(ids, "rolled")
	res, err = c.ChangeSet(ctxT(t), accounts, ups, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, ups, res)
	if res[3].Status != Gone {
		t.Errorf("missing record: %v %v, want Gone", res[3].Status, res[3].Err)
	}
	for i := range 3 {
		if res[i].Status != Failed || !errors.Is(res[i].Err, ErrRolledBack) {
			t.Errorf("record %d: %v %v, want Failed/ErrRolledBack", i, res[i].Status, res[i].Err)
		}
		if got := f.field(ids[i], "description"); got != "ok" {
			t.Errorf("record %d changed to %v despite rollback", i, got)
		}
	}
	if len(f.created) != 0 {
		t.Errorf("created: %v", f.created)
	}
}

func TestPatchStatuses(t *testing.T) {
	ids := testIDs(2)
	f := newFakeDV(t, ids[0])
	c := newTestClient(t, f.start().URL, nil)
	if r := c.Patch(ctxT(t), accounts, Update{ID: ids[0], Fields: map[string]any{"name": "n"}}, WriteOptions{}); r.Status != Updated {
		t.Errorf("existing: %+v", r)
	}
	if r := c.Patch(ctxT(t), accounts, Update{ID: ids[1], Fields: map[string]any{"name": "n"}}, WriteOptions{}); r.Status != Gone {
		t.Errorf("missing: %+v", r)
	}
	if r := c.Patch(ctxT(t), accounts, Update{ID: ids[0], IfMatch: `W/"1"`}, WriteOptions{}); r.Status != Conflict {
		t.Errorf("stale etag: %+v", r)
	}
	// A 404 for an unknown entity set is not a deleted record.
	bogus := Table{EntitySet: "acounts", LogicalName: "account", Key: "accountid"}
	if r := c.Patch(ctxT(t), bogus, Update{ID: ids[0]}, WriteOptions{}); r.Status != Failed {
		t.Errorf("unknown entity set: %+v, want Failed", r)
	}
}
