package dataverse

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// httpFixture splits a CRLF fixture into its start line, headers (in file order) and body.
type httpFixture struct {
	start   string
	headers [][2]string
	body    []byte
}

func loadFixture(t *testing.T, name string) httpFixture {
	t.Helper()
	raw, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Fatalf("%s has bare LF line endings (git may have converted it)", name)
	}
	head, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("%s: no header/body separator", name)
	}
	lines := strings.Split(string(head), "\r\n")
	f := httpFixture{start: lines[0], body: body}
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ": ")
		f.headers = append(f.headers, [2]string{k, v})
	}
	return f
}

func (f httpFixture) header(k string) string {
	for _, h := range f.headers {
		if strings.EqualFold(h[0], k) {
			return h[1]
		}
	}
	return ""
}

// TestBatchRequestMatchesReferenceBytes: the documented continue-on-error batch (reference §4.4),
// byte for byte, including CRLF after the last line.
func TestBatchRequestMatchesReferenceBytes(t *testing.T) {
	want := loadFixture(t, "batch_request.http")
	resp := loadFixture(t, "batch_response.http")
	var gotMethod, gotPath string
	var gotHeader http.Header
	var gotBody []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotMethod, gotPath, gotHeader = r.Method, r.URL.Path, r.Header.Clone()
		gotBody, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", resp.header("Content-Type"))
		w.Write(resp.body)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.Credential = staticCred("<token>") })
	c.newBoundary = func(prefix string) string { return prefix + "_6f1d2e" }

	desc := []byte(`{"description":"enriched 2025-01-01"}`)
	ops := []BatchOp{
		{Method: "PATCH", Path: "accounts(11111111-1111-1111-1111-111111111111)", Header: http.Header{"If-Match": {"*"}}, Body: desc},
		{Method: "PATCH", Path: "accounts(22222222-2222-2222-2222-222222222222)", Header: http.Header{"If-Match": {"*"}}, Body: desc},
	}
	parts, err := c.Batch(ctxT(t), ops, true)
	if err != nil {
		t.Fatal(err)
	}
	method, rest, _ := strings.Cut(want.start, " ")
	if gotMethod != method || !strings.HasSuffix(strings.Fields(rest)[0], gotPath) || gotPath != "/api/data/v9.2/$batch" {
		t.Errorf("request line %s %s, want %s", gotMethod, gotPath, want.start)
	}
	for _, h := range want.headers {
		if got := gotHeader.Get(h[0]); got != h[1] {
			t.Errorf("header %s = %q, want %q", h[0], got, h[1])
		}
	}
	if !bytes.Equal(gotBody, want.body) {
		t.Errorf("body differs from reference:\n got: %q\nwant: %q", gotBody, want.body)
	}
	if len(parts) != 2 || parts[0].Status != 204 || parts[1].Status != 404 || parts[0].Part != 0 || parts[1].Part != 1 {
		t.Fatalf("parts = %+v", parts)
	}
	if err := parts[1].Err(); !errors.Is(err, ErrNotFound) || !recordGone(asAPIError(err)) {
		t.Errorf("part 2 error = %v", err)
	}
}

func asAPIError(err error) *APIError {
	var ae *APIError
	errors.As(err, &ae)
	return ae
}

func TestParseBatchResponseFixtures(t *testing.T) {
	t.Run("continue-on-error", func(t *testing.T) {
		f := loadFixture(t, "batch_response.http")
		parts, err := parseBatchResponse(f.header("Content-Type"), f.body)
		if err != nil {
			t.Fatal(err)
		}
		if len(parts) != 2 {
			t.Fatalf("%d parts", len(parts))
		}
		if parts[0].Status != 204 || len(parts[0].Body) != 0 || parts[0].Err() != nil {
			t.Errorf("part 1 = %+v", parts[0])
		}
		ae := asAPIError(parts[1].Err())
		if ae == nil || ae.Status != 404 || ae.Code != "0x80040217" || ae.RequestID != "de4c5227-4a28-4ebd-8ced-3392ece1697b" ||
			ae.Message != "account With Id = 22222222-2222-2222-2222-222222222222 Does Not Exist" {
			t.Errorf("part 2 error = %#v", ae)
		}
	})
	t.Run("change set", func(t *testing.T) {
		f := loadFixture(t, "changeset_response.http")
		parts, err := parseBatchResponse(f.header("Content-Type"), f.body)
		if err != nil {
			t.Fatal(err)
		}
		if len(parts) != 3 {
			t.Fatalf("%d parts", len(parts))
		}
		for i, want := range []struct {
			part   int
			id     string
			status int
		}{{0, "1", 204}, {0, "2", 204}, {1, "", 200}} {
			if p := parts[i]; p.Part != want.part || p.ContentID != want.id || p.Status != want.status {
				t.Errorf("part %d = {Part:%d ContentID:%q Status:%d}, want %+v", i, p.Part, p.ContentID, p.Status, want)
			}
		}
		if !strings.HasSuffix(parts[1].Header.Get("OData-EntityId"), "tasks(a69c24a0-e0c8-ea11-a812-000d3a122b89)") {
			t.Errorf("OData-EntityId = %q", parts[1].Header.Get("OData-EntityId"))
		}
		if !bytes.Contains(parts[2].Body, []byte(`"subject":"Task 1 in batch"`)) {
			t.Errorf("GET body = %s", parts[2].Body)
		}
	})
	t.Run("LF only", func(t *testing.T) {
		f := loadFixture(t, "batch_response.http")
		lf := bytes.ReplaceAll(f.body, []byte("\r\n"), []byte("\n"))
		parts, err := parseBatchResponse(f.header("Content-Type"), lf)
		if err != nil || len(parts) != 2 || parts[1].Status != 404 {
			t.Fatalf("parts=%+v err=%v", parts, err)
		}
	})
	for name, tc := range map[string]struct{ ct, body string }{
		"not multipart":   {"application/json", `{}`},
		"no boundary":     {"multipart/mixed", "--x\r\n"},
		"wrong part type": {"multipart/mixed; boundary=b", "--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n"},
		"bad status line": {"multipart/mixed; boundary=b", "--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 abc\r\n\r\n\r\n--b--\r\n"},
		"truncated":       {"multipart/mixed; boundary=b", "--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n"},
	} {
		t.Run(name, func(t *testing.T) {
			if parts, err := parseBatchResponse(tc.ct, []byte(tc.body)); err == nil {
				t.Errorf("accepted: %+v", parts)
			}
		})
	}
}

func TestEncodeChangeSet(t *testing.T) {
	c := newTestClient(t, "http://127.0.0.1:1", nil)
	c.newBoundary = func(prefix string) string { return prefix + "_X" }
	body, err := c.encodeBatch("batch_X", []BatchOp{
		{ChangeSet: []BatchOp{
			{Method: "PATCH", Path: "accounts(11111111-1111-1111-1111-111111111111)", Header: http.Header{"If-Match": {"*"}}, Body: []byte(`{"a":1}`)},
			{Method: "DELETE", Path: "accounts(22222222-2222-2222-2222-222222222222)", ContentID: "7"},
		}},
		{Method: "GET", Path: "WhoAmI"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "--batch_X\r\n" +
		"Content-Type: multipart/mixed; boundary=changeset_X\r\n\r\n" +
		"--changeset_X\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\n" +
		"PATCH /api/data/v9.2/accounts(11111111-1111-1111-1111-111111111111) HTTP/1.1\r\n" +
		"Content-Type: application/json; type=entry\r\nIf-Match: *\r\n\r\n{\"a\":1}\r\n" +
		"--changeset_X\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 7\r\n\r\n" +
		"DELETE /api/data/v9.2/accounts(22222222-2222-2222-2222-222222222222) HTTP/1.1\r\n\r\n" +
		"--changeset_X--\r\n" +
		"--batch_X\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n" +
		"GET /api/data/v9.2/WhoAmI HTTP/1.1\r\n\r\n" +
		"--batch_X--\r\n"
	if string(body) != want {
		t.Errorf("got:\n%q\nwant:\n%q", body, want)
	}
	// Each inner request must be readable as HTTP/1.1 by a standard parser.
	if _, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET /api/data/v9.2/WhoAmI HTTP/1.1\r\n\r\n"))); err != nil {
		t.Fatal(err)
	}
	for name, ops := range map[string][]BatchOp{
		"GET in change set": {{ChangeSet: []BatchOp{{Method: "GET", Path: "accounts"}}}},
		"empty change set":  {{ChangeSet: []BatchOp{}}},
		"newline in body":   {{Method: "PATCH", Path: "accounts", Body: []byte("{\n}")}},
		"header injection":  {{Method: "PATCH", Path: "accounts", Header: http.Header{"X": {"a\r\nB: c"}}}},
		"space in path":     {{Method: "GET", Path: "accounts HTTP/1.1\r\nX: y"}},
	} {
		if _, err := c.encodeBatch("b", ops); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestBatchTooManyOperations(t *testing.T) {
	c := newTestClient(t, "http://127.0.0.1:1", nil)
	ops := make([]BatchOp, 1001)
	for i := range ops {
		ops[i] = BatchOp{Method: "GET", Path: "WhoAmI"}
	}
	if _, err := c.Batch(ctxT(t), ops, true); !errors.Is(err, ErrBatchTooLarge) {
		t.Fatalf("err = %v, want ErrBatchTooLarge", err)
	}
	if c.Stats().Requests != 0 {
		t.Error("oversized batch was sent")
	}
}
