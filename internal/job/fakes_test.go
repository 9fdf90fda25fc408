package job

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"dvbulk/internal/dataverse"
	"dvbulk/internal/enrich"
)

// fakeDV is an in-memory Dataverse with just the semantics the engine relies on: key-ordered paging
// with an opaque cursor, If-Match: * updates (missing = gone, never created) and counters.
type fakeDV struct {
	mu        sync.Mutex
	rows      map[string]map[string]any
	version   map[string]int
	writes    map[string]int // id -> writes
	pages     atomic.Int64
	gets      atomic.Int64
	failAll   atomic.Bool  // every write fails with ErrUnavailable
	failPages atomic.Int64 // the next this many page reads fail with ErrUnavailable
}

func newFakeDV(n, inactive int) *fakeDV {
	f := &fakeDV{rows: map[string]map[string]any{}, version: map[string]int{}, writes: map[string]int{}}
	for i := range n + inactive {
		id := fmt.Sprintf("%08x-0000-4000-8000-%012x", i+1, i+1)
		state := 0
		if i >= n {
			state = 1
		}
		f.rows[id] = map[string]any{"accountid": id, "name": fmt.Sprintf("Account %d", i), "websiteurl": "https://example.com",
			"numberofemployees": json.Number("1"), "revenue": json.Number("0"), "industrycode": nil, "description": "old", "statecode": json.Number(strconv.Itoa(state))}
		f.version[id] = 1
	}
	return f
}

func (f *fakeDV) row(id string) dataverse.Record {
	r := dataverse.Record{}
	for k, v := range f.rows[id] {
		r[k] = v
	}
	r["@odata.etag"] = fmt.Sprintf(`W/"%d"`, f.version[id])
	return r
}

func (f *fakeDV) QueryPage(_ context.Context, q dataverse.Query, next string) (dataverse.Page, error) {
	f.pages.Add(1)
	if f.failPages.Add(-1) >= 0 {
		return dataverse.Page{}, fmt.Errorf("%w: page read failed", dataverse.ErrUnavailable)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	after := ""
	if next != "" {
		u, _ := url.Parse(next)
		after = u.Query().Get("after")
	}
	var ids []string
	for id, r := range f.rows {
		if q.Filter == "statecode eq 0" && r["statecode"] != json.Number("0") {
			continue
		}
		if id > after {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	var p dataverse.Page
	for i, id := range ids {
		if i == q.PageSize {
			p.NextLink = "https://fake/api/data/v9.2/accounts?after=" + p.Records[len(p.Records)-1]["accountid"].(string)
			break
		}
		p.Records = append(p.Records, f.row(id))
	}
	return p, nil
}

func (f *fakeDV) GetByIDs(_ context.Context, _ dataverse.Table, ids []string, _ []string) ([]dataverse.Record, error) {
	f.gets.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []dataverse.Record
	for _, id := range ids {
		if _, ok := f.rows[id]; ok {
			out = append(out, f.row(id))
		}
	}
	return out, nil
}

func (f *fakeDV) Update(_ context.Context, _ dataverse.Table, ups []dataverse.Update, _ dataverse.WriteOptions) ([]dataverse.Result, error) {
	if f.failAll.Load() {
		return nil, fmt.Errorf("fake outage: %w", dataverse.ErrUnavailable)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]dataverse.Result, len(ups))
	for i, u := range ups {
		row, ok := f.rows[u.ID]
		switch {
		case !ok:
			out[i] = dataverse.Result{ID: u.ID, Status: dataverse.Gone, Err: dataverse.ErrNotFound}
		case u.IfMatch != "" && u.IfMatch != fmt.Sprintf(`W/"%d"`, f.version[u.ID]):
			out[i] = dataverse.Result{ID: u.ID, Status: dataverse.Conflict, Err: dataverse.ErrConflict}
		default:
			for k, v := range u.Fields {
				switch n := v.(type) {
				case int64:
					v = json.Number(strconv.FormatInt(n, 10))
				case float64:
					v = json.Number(strconv.FormatFloat(n, 'f', -1, 64))
				}
				row[k] = v
			}
			f.version[u.ID]++
			f.writes[u.ID]++
			out[i] = dataverse.Result{ID: u.ID, Status: dataverse.Updated}
		}
	}
	return out, nil
}

func (f *fakeDV) InvokeAction(_ context.Context, _ dataverse.Table, id, _ string, _ map[string]any) (dataverse.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.rows[id]; !ok {
		return nil, dataverse.ErrNotFound
	}
	f.writes[id]++
	return nil, nil
}

func (f *fakeDV) totalWrites() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, w := range f.writes {
		n += w
	}
	return n
}

// truth is the fake enrichment: deterministic values per id.
func truth(id string) map[string]any {
	n, _ := strconv.ParseInt(id[:8], 16, 64)
	return map[string]any{"numberofemployees": json.Number(strconv.FormatInt(10+n%500, 10)), "description": "Company " + id[:8], "ownerid": "not-allowed"}
}

type fakeEnricher struct {
	mu    sync.Mutex
	calls map[string]int
	fail  map[string]string
}

func (f *fakeEnricher) Enrich(_ context.Context, recs []enrich.Record) ([]enrich.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	out := make([]enrich.Result, len(recs))
	for i, r := range recs {
		f.calls[r.ID]++
		if reason, ok := f.fail[r.ID]; ok {
			out[i] = enrich.Result{ID: r.ID, Err: reason}
			continue
		}
		out[i] = enrich.Result{ID: r.ID, Fields: truth(r.ID)}
	}
	return out, nil
}

func (f *fakeEnricher) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}
