package dataverse

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/rs/zerolog"
)

// fakeDV is a hand-written Dataverse stand-in for the write paths: an in-memory accounts table
// with PATCH (upsert unless If-Match), $batch (own multipart parser, CRLF required, change sets,
// continue-on-error), UpdateMultiple (all-or-nothing) and the sdkmessagefilters probe.
type fakeDV struct {
	t *testing.T

	mu      sync.Mutex
	records map[string]map[string]any // id -> fields
	version map[string]int
	created []string // ids created by an upsert (must stay empty in these tests)
	log     []fakeReq

	bad            map[string]bool // ids whose write fails with a plug-in style 400
	maxBatch       int             // > 0: refuse bigger $batch with the OData quota message
	bulkSupported  bool
	bulkActionGone bool // the probe says yes but the action is unknown (404 segment)
	hint           string
	// fault, when set, answers a write of id first: a non-zero status replaces the write (for a
	// $batch, the operation's part). retryAfter is sent on 429 parts.
	fault      func(id string) (status int, body string)
	retryAfter string
	// probeRefused answers the UpdateMultiple probe 403, as for a role without prvReadSdkMessage.
	probeRefused bool

	batchSizes   []int
	bulkSizes    []int
	innerHeaders []http.Header
}

type fakeReq struct {
	Method, URI string
	Header      http.Header
	At          time.Time
}

var idInPath = regexp.MustCompile(`accounts\(([0-9a-f-]{36})\)$`)

func newFakeDV(t *testing.T, ids ...string) *fakeDV {
	f := &fakeDV{t: t, records: map[string]map[string]any{}, version: map[string]int{}, bad: map[string]bool{}, hint: "8"}
	for _, id := range ids {
		f.records[id] = map[string]any{"name": "acct " + id[:4]}
		f.version[id] = 1
	}
	return f
}

func (f *fakeDV) start() *httptest.Server {
	srv := httptest.NewServer(f)
	f.t.Cleanup(srv.Close)
	return srv
}

func (f *fakeDV) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.log = append(f.log, fakeReq{Method: r.Method, URI: r.RequestURI, Header: r.Header.Clone(), At: time.Now()})
	f.mu.Unlock()
	w.Header().Set("OData-Version", "4.0")
	w.Header().Set("x-ms-dop-hint", f.hint)
	p := r.URL.Path
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(p, "/sdkmessagefilters"):
		f.mu.Lock()
		ok, refused := f.bulkSupported, f.probeRefused
		f.mu.Unlock()
		if refused {
			writeJSON(w, 403, errBody("0x80040220", "Principal user is missing prvReadSdkMessage privilege on OTC=4607 for entity 'sdkmessagefilter'."))
			return
		}
		if ok {
			io.WriteString(w, `{"value":[{"sdkmessagefilterid":"9e2a5b1c-0000-4000-8000-000000000001"}]}`)
		} else {
			io.WriteString(w, `{"value":[]}`)
		}
	case r.Method == http.MethodPatch:
		st, b := f.patch(p, r.Header, body)
		writeJSON(w, st, b)
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/$batch"):
		f.batch(w, r, body)
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/accounts/Microsoft.Dynamics.CRM.UpdateMultiple"):
		f.updateMultiple(w, body)
	default:
		writeJSON(w, 404, errBody("0x8006088a", "Resource not found for the segment '"+p+"'."))
	}
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	if body != "" {
		w.Header().Set("Content-Type", "application/json; odata.metadata=minimal")
	}
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func errBody(code, msg string) string {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": msg}})
	return string(b)
}

// patch applies one PATCH the way Dataverse does: upsert unless If-Match.
func (f *fakeDV) patch(path string, h http.Header, body []byte) (int, string) {
	m := idInPath.FindStringSubmatch(path)
	if m == nil {
		return 404, errBody("0x8006088a", "Resource not found for the segment.")
	}
	id := m[1]
	if f.fault != nil {
		if st, b := f.fault(id); st != 0 {
			return st, b
		}
	}
	var fields map[string]any
	if err := json.Unmarshal(body, &fields); err != nil {
		return 400, errBody("0x80048d19", "Error identified in Payload provided by the user for Entity :'accounts'")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bad[id] {
		return 400, errBody("0x80040265", "plug-in rejected "+id)
	}
	rec, exists := f.records[id]
	switch im := h.Get("If-Match"); {
	case im == "" && !exists:
		f.created = append(f.created, id)
		rec = map[string]any{}
		f.records[id] = rec
	case im != "" && !exists:
		return 404, errBody("0x80040217", "account With Id = "+id+" Does Not Exist")
	case im != "" && im != "*" && im != fmt.Sprintf(`W/"%d"`, f.version[id]):
		return 412, errBody("0x80060882", "The version of the existing record doesn't match the RowVersion property provided.")
	}
	for k, v := range fields {
		rec[k] = v
	}
	f.version[id]++
	return 204, ""
}

// batch parses the request with its own multipart reader (not the client's code).
func (f *fakeDV) batch(w http.ResponseWriter, r *http.Request, body []byte) {
	if bytes.Contains(bytes.ReplaceAll(body, []byte("\r\n"), nil), []byte("\n")) || !bytes.HasSuffix(body, []byte("\r\n")) {
		writeJSON(w, 400, errBody("0x80048d19", "Stream was not readable."))
		return
	}
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		writeJSON(w, 400, errBody("0x0", "bad content type"))
		return
	}
	type op struct {
		req       *http.Request
		body      []byte
		contentID string
		set       int // change set index, -1 for top level
	}
	var ops []op
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for i := 0; ; i++ {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			writeJSON(w, 400, errBody("0x0", err.Error()))
			return
		}
		mt, pp, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
		if mt == "multipart/mixed" {
			cr := multipart.NewReader(part, pp["boundary"])
			for {
				cp, err := cr.NextRawPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					writeJSON(w, 400, errBody("0x0", err.Error()))
					return
				}
				req, b, err := readInnerRequest(cp)
				if err != nil {
					writeJSON(w, 400, errBody("0x0", err.Error()))
					return
				}
				ops = append(ops, op{req: req, body: b, contentID: cp.Header.Get("Content-ID"), set: i})
			}
			continue
		}
		req, b, err := readInnerRequest(part)
		if err != nil {
			writeJSON(w, 400, errBody("0x0", err.Error()))
			return
		}
		ops = append(ops, op{req: req, body: b, set: -1})
	}
	f.mu.Lock()
	f.batchSizes = append(f.batchSizes, len(ops))
	for _, o := range ops {
		f.innerHeaders = append(f.innerHeaders, o.req.Header)
	}
	limit := f.maxBatch
	f.mu.Unlock()
	if limit > 0 && len(ops) > limit {
		writeJSON(w, 400, errBody("0x0", fmt.Sprintf("The current batch message contains too many parts. Only batch messages with a maximum number of '%d' query operations, including changeset operations, are allowed.", limit)))
		return
	}
	continueOnError := strings.Contains(r.Header.Get("Prefer"), "odata.continue-on-error")
	boundary := "batchresponse_4b1d"
	var out bytes.Buffer
	status := 200
	writePart := func(b *bytes.Buffer, bnd, contentID string, st int, msg string) {
		b.WriteString("--" + bnd + "\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n")
		if contentID != "" {
			b.WriteString("Content-ID: " + contentID + "\r\n")
		}
		fmt.Fprintf(b, "\r\nHTTP/1.1 %d %s\r\nOData-Version: 4.0\r\n", st, http.StatusText(st))
		if st == http.StatusTooManyRequests && f.retryAfter != "" {
			b.WriteString("Retry-After: " + f.retryAfter + "\r\n")
		}
		if msg != "" {
			b.WriteString("Content-Type: application/json; odata.metadata=minimal\r\n\r\n" + msg + "\r\n")
		} else {
			b.WriteString("\r\n\r\n")
		}
	}
	for i := 0; i < len(ops); i++ {
		o := ops[i]
		if o.set < 0 {
			st, msg := f.patch(o.req.URL.Path, o.req.Header, o.body)
			writePart(&out, boundary, "", st, msg)
			if st >= 400 && !continueOnError {
				status = 400
				break
			}
			continue
		}
		// A change set: all members, atomically (snapshot and restore on failure).
		j := i
		for j < len(ops) && ops[j].set == o.set {
			j++
		}
		f.mu.Lock()
		snap := map[string]map[string]any{}
		for k, v := range f.records {
			c := map[string]any{}
			for kk, vv := range v {
				c[kk] = vv
			}
			snap[k] = c
		}
		f.mu.Unlock()
		var cs bytes.Buffer
		csb := "changesetresponse_77aa"
		failed := false
		for _, m := range ops[i:j] {
			st, msg := f.patch(m.req.URL.Path, m.req.Header, m.body)
			if st >= 400 {
				f.mu.Lock()
				f.records = snap
				f.mu.Unlock()
				cs.Reset()
				writePart(&out, boundary, m.contentID, st, msg)
				failed = true
				break
			}
			writePart(&cs, csb, m.contentID, st, "")
		}
		if !failed {
			out.WriteString("--" + boundary + "\r\nContent-Type: multipart/mixed; boundary=" + csb + "\r\n\r\n")
			out.Write(cs.Bytes())
			out.WriteString("--" + csb + "--\r\n")
		} else if !continueOnError {
			status = 400
			break
		}
		i = j - 1
	}
	out.WriteString("--" + boundary + "--\r\n")
	w.Header().Set("Content-Type", "multipart/mixed; boundary="+boundary)
	w.WriteHeader(status)
	w.Write(out.Bytes())
}

// readInnerRequest reads an application/http part: request line, headers, and the rest of the
// part as the body (inner requests carry no Content-Length).
func readInnerRequest(r io.Reader) (*http.Request, []byte, error) {
	br := bufio.NewReader(r)
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, nil, err
	}
	b, err := io.ReadAll(br)
	return req, b, err
}

func (f *fakeDV) updateMultiple(w http.ResponseWriter, body []byte) {
	f.mu.Lock()
	gone := f.bulkActionGone
	f.mu.Unlock()
	if gone {
		writeJSON(w, 404, errBody("0x8006088a", "Resource not found for the segment 'Microsoft.Dynamics.CRM.UpdateMultiple'."))
		return
	}
	var req struct {
		Targets []map[string]any `json:"Targets"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, 400, errBody("0x0", err.Error()))
		return
	}
	if f.fault != nil {
		for _, t := range req.Targets {
			id, _ := t["accountid"].(string)
			if st, b := f.fault(id); st != 0 {
				writeJSON(w, st, b) // all or nothing: one record's failure fails the request
				return
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bulkSizes = append(f.bulkSizes, len(req.Targets))
	for _, t := range req.Targets {
		id, _ := t["accountid"].(string)
		if t["@odata.type"] != "Microsoft.Dynamics.CRM.account" {
			writeJSON(w, 400, errBody("0x0", "missing @odata.type"))
			return
		}
		if _, ok := f.records[id]; !ok {
			writeJSON(w, 400, errBody("0x80040217", "account With Ids = "+id+" Do Not Exist"))
			return
		}
		if f.bad[id] {
			// Plug-in errors do not name the record: the client has to bisect.
			writeJSON(w, 400, errBody("0x80040265", "A validation plug-in rejected the request."))
			return
		}
	}
	for _, t := range req.Targets {
		id := t["accountid"].(string)
		for k, v := range t {
			if k != "@odata.type" && k != "accountid" {
				f.records[id][k] = v
			}
		}
		f.version[id]++
	}
	w.WriteHeader(204)
}

func (f *fakeDV) requests() []fakeReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeReq(nil), f.log...)
}

func (f *fakeDV) count(pred func(fakeReq) bool) int {
	n := 0
	for _, r := range f.requests() {
		if pred(r) {
			n++
		}
	}
	return n
}

func (f *fakeDV) field(id, k string) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.records[id]; ok {
		return r[k]
	}
	return nil
}

// Helpers shared by the tests.

var accounts = Table{EntitySet: "accounts", LogicalName: "account", Key: "accountid"}

func testID(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", i+1, i+1) }

func testIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = testID(i)
	}
	return ids
}

// newTestClient builds a client against url with fast retry timings.
func newTestClient(t *testing.T, url string, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		URL:            url,
		RetryBaseDelay: 5 * time.Millisecond,
		RetryMaxDelay:  40 * time.Millisecond,
		RequestTimeout: 5 * time.Second,
		Logger:         zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// fakeCred hands out tokens tok-1, tok-2, ... (prefix configurable) and counts calls.
type fakeCred struct {
	prefix string
	calls  atomic.Int32
}

func (f *fakeCred) GetToken(ctx context.Context, _ policy.TokenRequestOptions) (azcore.AccessToken, error) {
	n := f.calls.Add(1)
	return azcore.AccessToken{Token: fmt.Sprintf("%s%d", f.prefix, n), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// staticCred always returns the same token.
type staticCred string

func (s staticCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
