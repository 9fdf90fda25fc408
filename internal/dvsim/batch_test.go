package dvsim_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"dvbulk/internal/dataverse"
	"dvbulk/internal/dvsim"
)

// op renders one application/http part (CRLF line endings) for a PATCH with If-Match: *.
func op(id, body, contentID string) string {
	cid := ""
	if contentID != "" {
		cid = "Content-ID: " + contentID + "\r\n"
	}
	return "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n" + cid + "\r\n" +
		"PATCH /api/data/v9.2/accounts(" + id + ") HTTP/1.1\r\nContent-Type: application/json; type=entry\r\nIf-Match: *\r\nMSCRM.BypassCustomPluginExecution: true\r\n\r\n" + body + "\r\n"
}

func batchBody(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString("--batch_x\r\n" + p)
	}
	b.WriteString("--batch_x--\r\n")
	return b.String()
}

func changeSet(ops ...string) string {
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=changeset_y\r\n\r\n")
	for _, o := range ops {
		b.WriteString("--changeset_y\r\n" + o)
	}
	b.WriteString("--changeset_y--\r\n")
	return b.String()
}

func postBatch(t *testing.T, base, body string, continueOnError bool) raw {
	hdr := map[string]string{"Content-Type": `multipart/mixed; boundary="batch_x"`}
	if continueOnError {
		hdr["Prefer"] = "odata.continue-on-error"
	}
	return send(t, base, http.MethodPost, "$batch", hdr, body)
}

func TestBatchStopsOrContinuesAndChangeSetsAreAtomic(t *testing.T) {
	a, b, c := dvsim.AccountID(0), dvsim.AccountID(1), dvsim.AccountID(2)
	missing := "00000000-0000-4000-8000-000000000007"
	body := batchBody(
		op(a, `{"description":"a"}`, ""),
		changeSet(op(b, `{"description":"b"}`, "1"), op(missing, `{"description":"m"}`, "2")),
		op(c, `{"description":"c"}`, ""),
	)
	cases := []struct {
		continueOnError bool
		wantStatus      int
		wantC           string // description of c afterwards
		wantParts       int    // application/http parts in the answer
	}{
		{false, 400, "", 2}, // a, then the change set's failure; c never runs
		{true, 200, "c", 3}, // a, the change set's failure, c
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint("continue-on-error=", tc.continueOnError), func(t *testing.T) {
			sim := dvsim.New(dvsim.Config{Accounts: 3})
			base, stop := sim.Start()
			defer stop()
			r := postBatch(t, base, body, tc.continueOnError)
			if r.status != tc.wantStatus || !strings.HasPrefix(r.header.Get("Content-Type"), "multipart/mixed; boundary=batchresponse_") {
				t.Fatalf("%d %s\n%s", r.status, r.header.Get("Content-Type"), r.body)
			}
			if n := strings.Count(r.body, "Content-Type: application/http\r\n"); n != tc.wantParts {
				t.Errorf("%d parts, want %d:\n%s", n, tc.wantParts, r.body)
			}
			if !strings.Contains(r.body, "HTTP/1.1 204 No Content\r\n") || !strings.Contains(r.body, "boundary=changesetresponse_") ||
				!strings.Contains(r.body, "Content-ID: 2\r\n") || !strings.Contains(r.body, "HTTP/1.1 404 Not Found\r\n") {
				t.Errorf("answer shape:\n%s", r.body)
			}
			rows := map[string]string{}
			for _, id := range []string{a, b, c} {
				row, _ := sim.Get(id)
				rows[id] = row["description"].(string)
			}
			if rows[a] != "a" || rows[b] != "" || rows[c] != tc.wantC {
				t.Errorf("descriptions %v: a must land, b must roll back with its change set, c = %q", rows, tc.wantC)
			}
			if cs := sim.Counters(); cs.Writes != int64(1+len(tc.wantC)) || cs.Creates != 0 || cs.ByKind["batch"] != 1 || cs.ByKind["batchOps"] != 4 || cs.ByKind["patch"] != 0 {
				t.Errorf("counters %+v", cs)
			}
		})
	}
}

func TestBatchRejectsMalformedRequests(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 3, MaxBatchSize: 2})
	base, stop := sim.Start()
	defer stop()
	get := "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET /api/data/v9.2/accounts(" + dvsim.AccountID(0) + ") HTTP/1.1\r\n\r\n\r\n"
	cases := []struct {
		name, body, wantCode, wantInMsg string
	}{
		{"too many operations", batchBody(op(dvsim.AccountID(0), "{}", ""), changeSet(op(dvsim.AccountID(1), "{}", "1"), op(dvsim.AccountID(2), "{}", "2"))), "0x80040203", "maximum number of '2' query operations"},
		{"bare LF line endings", strings.ReplaceAll(batchBody(op(dvsim.AccountID(0), "{}", "")), "\r\n", "\n"), "0x80048d19", "Stream was not readable."},
		{"GET inside a change set", batchBody(changeSet(get)), "", "change set"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := postBatch(t, base, tc.body, true)
			code, msg := errorOf(t, r)
			if r.status != 400 || tc.wantCode != "" && code != tc.wantCode || !strings.Contains(msg, tc.wantInMsg) {
				t.Fatalf("%d %s %q", r.status, code, msg)
			}
		})
	}
	if sim.Counters().Writes != 0 {
		t.Fatal("a rejected batch wrote")
	}
	// A GET outside a change set is fine, and answers the row.
	r := postBatch(t, base, batchBody(get), false)
	if r.status != 200 || !strings.Contains(r.body, "HTTP/1.1 200 OK\r\n") || !strings.Contains(r.body, dvsim.AccountID(0)) {
		t.Fatalf("GET in a batch: %d\n%s", r.status, r.body)
	}
}

// TestBatchOfHundredWithOneRejected: the client's $batch mode lands 99 of 100 and reports the one
// a plug-in rejected, also when the server only takes 50 operations a batch.
func TestBatchOfHundredWithOneRejected(t *testing.T) {
	for _, max := range []int{1000, 50} {
		t.Run(fmt.Sprint("MaxBatchSize=", max), func(t *testing.T) {
			sim := dvsim.New(dvsim.Config{Accounts: 100, MaxBatchSize: max})
			base, stop := sim.Start()
			defer stop()
			ids := sim.IDs(true)
			sim.Faults().RejectOnWrite(ids[42])
			ups := make([]dataverse.Update, len(ids))
			for i, id := range ids {
				ups[i] = dataverse.Update{ID: id, Fields: map[string]any{"description": "done"}}
			}
			res, err := client(t, base).Update(context.Background(), accounts, ups, dataverse.WriteOptions{Mode: dataverse.ModeBatch, BatchSize: 100})
			if err != nil {
				t.Fatal(err)
			}
			failed := 0
			for _, r := range res {
				if r.Status != dataverse.Updated {
					failed++
					if r.ID != ids[42] || !strings.Contains(fmt.Sprint(r.Err), "rejected record "+ids[42]) {
						t.Errorf("%+v", r)
					}
				}
			}
			c := sim.Counters()
			if failed != 1 || c.Writes != 99 || c.WritesByID(ids[42]) != 0 || c.WritesByID(ids[0]) != 1 {
				t.Fatalf("failed %d, writes %d", failed, c.Writes)
			}
			if max == 50 && c.ByKind["batch"] < 3 {
				t.Errorf("batches %d: the first (too large) should be refused and the rest split", c.ByKind["batch"])
			}
		})
	}
}
