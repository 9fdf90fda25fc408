package dvsim_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/dataverse"
	"dvbulk/internal/dvsim"
)

var accounts = dataverse.Table{EntitySet: "accounts", LogicalName: "account", Key: "accountid"}

func client(t testing.TB, url string) *dataverse.Client {
	t.Helper()
	c, err := dataverse.New(dataverse.Config{URL: url, MaxConcurrency: 16, Logger: zerolog.Nop(), RetryBaseDelay: 10 * time.Millisecond, RetryMaxDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sqlKey orders GUIDs as SQL Server (and so Dataverse) sorts uniqueidentifiers: the last group
// first, then the fourth, then the first three byte-swapped.
func sqlKey(id string) string {
	if id == "" {
		return ""
	}
	return id[24:36] + id[19:23] + id[16:18] + id[14:16] + id[11:13] + id[9:11] + id[6:8] + id[4:6] + id[2:4] + id[0:2]
}

func TestPagingVisitsEveryActiveRecordOnceWhileEdited(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 12000, InactiveAccounts: 500})
	url, stop := sim.Start()
	defer stop()
	c := client(t, url)
	seen := map[string]bool{}
	last := ""
	pages := 0
	err := c.Query(context.Background(), dataverse.Query{Table: accounts, Select: []string{"name", "numberofemployees"}, Filter: "statecode eq 0", PageSize: 5000}, func(p dataverse.Page) error {
		pages++
		for _, r := range p.Records {
			id := r["accountid"].(string)
			if seen[id] || sqlKey(id) <= sqlKey(last) {
				return fmt.Errorf("%s out of order or twice", id)
			}
			seen[id], last = true, id
			if len(seen)%1000 == 0 {
				sim.Edit(id, map[string]any{"description": "edited while paging"})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 12000 || pages != 3 {
		t.Fatalf("saw %d records in %d pages, want 12000 in 3", len(seen), pages)
	}
}

func TestWritesThroughTheClient(t *testing.T) {
	for _, mode := range []dataverse.WriteMode{dataverse.ModeBulk, dataverse.ModeBatch, dataverse.ModeSingle} {
		t.Run(string(mode), func(t *testing.T) {
			sim := dvsim.New(dvsim.Config{Accounts: 120, MaxBatchSize: 40, NoUpdateMultiple: mode == dataverse.ModeBatch})
			url, stop := sim.Start()
			defer stop()
			c := client(t, url)
			ids := sim.IDs(true)[:100]
			bad := ids[37]
			sim.Faults().RejectOnWrite(bad)
			gone := ids[50]
			sim.Delete(gone)
			ups := make([]dataverse.Update, len(ids))
			for i, id := range ids {
				ups[i] = dataverse.Update{ID: id, Fields: map[string]any{"description": "new " + id[:8], "numberofemployees": 7}}
			}
			res, err := c.Update(context.Background(), accounts, ups, dataverse.WriteOptions{Mode: mode, BatchSize: 100})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				switch r.ID {
				case bad:
					if r.Status != dataverse.Failed || !strings.Contains(fmt.Sprint(r.Err), "ISV code aborted") {
						t.Errorf("rejected record: %+v", r)
					}
				case gone:
					if r.Status != dataverse.Gone {
						t.Errorf("deleted record: %+v", r)
					}
				default:
					if r.Status != dataverse.Updated {
						t.Errorf("%s: %+v", r.ID, r)
					}
					if row, _ := sim.Get(r.ID); row["description"] != "new "+r.ID[:8] || row["numberofemployees"] != 7 {
						t.Errorf("%s holds %v", r.ID, row)
					}
				}
			}
			if _, ok := sim.Get(gone); ok || sim.Counters().Creates != 0 {
				t.Error("a deleted record was re-created")
			}
		})
	}
}

func TestConcurrencyLimitPerUserPerServer(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 1, Servers: 1, Cost: dvsim.Cost{Action: 300 * time.Millisecond}})
	url, stop := sim.Start()
	defer stop()
	get := func(user string) int {
		req, _ := http.NewRequest(http.MethodGet, url+"/api/data/v9.2/WhoAmI", nil)
		req.Header.Set("Authorization", "Bearer "+user)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return -1
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := 0; i < 53; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); c := get("alice"); mu.Lock(); codes[c]++; mu.Unlock() }()
	}
	time.Sleep(100 * time.Millisecond)
	other := get("bob")
	wg.Wait()
	if codes[429] != 1 || codes[200] != 52 {
		t.Fatalf("53 concurrent requests of one user: %v, want 52 OK and one 429", codes)
	}
	if other != 200 {
		t.Fatalf("another user got %d", other)
	}
	if sim.Counters().Throttled[dvsim.CodeConcurrency] != 1 {
		t.Fatalf("throttled %v", sim.Counters().Throttled)
	}
}

func TestWindowLimitsAndGrowingRetryAfter(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 1, Servers: 1, Limits: dvsim.Limits{Requests: 5, Window: 2 * time.Second}})
	url, stop := sim.Start()
	defer stop()
	var afters []string
	for i := 0; i < 8; i++ {
		resp, err := http.Get(url + "/api/data/v9.2/WhoAmI")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 429 {
			afters = append(afters, resp.Header.Get("Retry-After"))
			time.Sleep(30 * time.Millisecond) // a client that read the 429 and ignores it
		}
	}
	if len(afters) != 3 || sim.Counters().Throttled[dvsim.CodeRequests] != 3 {
		t.Fatalf("429s %v (%v), want 3 on the request-count limit", afters, sim.Counters().Throttled)
	}
	if sim.Counters().RequestsDuringRetryAfter != 2 {
		t.Errorf("requests inside a Retry-After window = %d, want the 2 sent after the first 429", sim.Counters().RequestsDuringRetryAfter)
	}
}

func TestAffinityCookiePinsOneServer(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 1, Servers: 4})
	url, stop := sim.Start()
	defer stop()
	resp, _ := http.Get(url + "/api/data/v9.2/WhoAmI")
	resp.Body.Close()
	var affinity *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "ARRAffinity" {
			affinity = c
		}
	}
	sim.ResetCounters()
	for i := 0; i < 20; i++ {
		req, _ := http.NewRequest(http.MethodGet, url+"/api/data/v9.2/WhoAmI", nil)
		req.AddCookie(affinity)
		r, _ := http.DefaultClient.Do(req)
		r.Body.Close()
	}
	used := 0
	for _, n := range sim.Counters().RequestsPerServer {
		if n > 0 {
			used++
		}
	}
	if used != 1 {
		t.Fatalf("with the cookie, requests reached %d servers: %v", used, sim.Counters().RequestsPerServer)
	}
	sim.ResetCounters()
	for i := 0; i < 20; i++ {
		r, _ := http.Get(url + "/api/data/v9.2/WhoAmI")
		r.Body.Close()
	}
	for i, n := range sim.Counters().RequestsPerServer {
		if n == 0 {
			t.Errorf("without the cookie, server %d got nothing: %v", i, sim.Counters().RequestsPerServer)
		}
	}
}

func TestDocumentedBatchAcceptedVerbatimAndLFRejected(t *testing.T) {
	rawReq, err := os.ReadFile("../dataverse/testdata/batch_request.http")
	if err != nil {
		t.Skip("fixture not found")
	}
	// The fixture is the reference's §4.4 request byte for byte: request line, headers, CRLF CRLF, body.
	_, body, ok := strings.Cut(string(rawReq), "\r\n\r\n")
	if !ok {
		t.Fatal("fixture has no CRLF header/body separator")
	}
	sim := dvsim.New(dvsim.Config{Accounts: 1})
	url, stop := sim.Start()
	defer stop()
	post := func(b string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, url+"/api/data/v9.2/$batch", strings.NewReader(b))
		req.Header.Set("Content-Type", `multipart/mixed; boundary="batch_6f1d2e"`)
		req.Header.Set("Prefer", "odata.continue-on-error")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(out)
	}
	status, out := post(body)
	if status != 200 || strings.Count(out, "HTTP/1.1 404 Not Found\r\n") != 2 || strings.Count(out, "0x80040217") != 2 || !strings.HasSuffix(out, "--\r\n") {
		t.Fatalf("CRLF batch: %d\n%s", status, out)
	}
	if status, out = post(strings.ReplaceAll(body, "\r\n", "\n")); status != 400 || !strings.Contains(out, "0x80048d19") || !strings.Contains(out, "Stream was not readable.") {
		t.Fatalf("LF-only batch: %d %s", status, out)
	}
	if sim.Counters().Creates != 0 || sim.Counters().Writes != 0 {
		t.Fatal("If-Match: * created records")
	}
}

// UpdateMultiple requests carry no If-Match, yet a record deleted since planning is never created
// on that path: UpdateMultiple is not an upsert (UpsertMultiple is), so a missing target fails the
// whole request ("account With Ids = ... Do Not Exist"); the client narrows the failure down and
// sends the missing record alone as a PATCH with If-Match: *, which answers 404 (gone).
func TestUpdateMultipleNeverCreatesAMissingRecord(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 50})
	url, stop := sim.Start()
	defer stop()
	c := client(t, url)
	ids := sim.IDs(true)
	gone := ids[17]
	sim.Delete(gone)
	ups := make([]dataverse.Update, len(ids))
	for i, id := range ids {
		ups[i] = dataverse.Update{ID: id, Fields: map[string]any{"description": "bulk"}}
	}
	res, err := c.Update(context.Background(), accounts, ups, dataverse.WriteOptions{Mode: dataverse.ModeBulk, BatchSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		want := dataverse.Updated
		if r.ID == gone {
			want = dataverse.Gone
		}
		if r.Status != want {
			t.Errorf("%s: %v %v, want %v", r.ID, r.Status, r.Err, want)
		}
	}
	cnt := sim.Counters()
	if cnt.ByKind["updateMultiple"] == 0 {
		t.Fatalf("no UpdateMultiple request was made (%v); the test needs that path", cnt.ByKind)
	}
	if _, ok := sim.Get(gone); ok || cnt.Creates != 0 {
		t.Fatalf("the deleted record was created (creates %d)", cnt.Creates)
	}
}
