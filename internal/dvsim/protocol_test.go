package dvsim_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"dvbulk/internal/dvsim"
)

// raw is one HTTP exchange with the simulator, without the client.
type raw struct {
	status int
	header http.Header
	body   string
}

func send(t *testing.T, base, method, path string, hdr map[string]string, body string) raw {
	t.Helper()
	req, err := http.NewRequest(method, base+"/api/data/v9.2/"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return raw{resp.StatusCode, resp.Header, string(b)}
}

// errorOf decodes the Web API error envelope.
func errorOf(t *testing.T, r raw) (code, msg string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Fatalf("not an error envelope (%d): %s", r.status, r.body)
	}
	return e.Error.Code, e.Error.Message
}

func TestPatchConditions(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 3})
	base, stop := sim.Start()
	defer stop()
	id := dvsim.AccountID(0)
	missing := "00000000-0000-4000-8000-000000000001"
	row, _ := sim.Get(id)
	cur := fmt.Sprintf(`W/"%d"`, row["versionnumber"])
	cases := []struct {
		name       string
		id         string
		hdr        map[string]string
		body       string
		wantStatus int
		wantCode   string
		wantInMsg  string
	}{
		{"If-Match * on a missing record never creates", missing, map[string]string{"If-Match": "*"}, `{"name":"x"}`, 404, "0x80040217", "account With Id = " + missing + " Does Not Exist"},
		{"stale ETag", id, map[string]string{"If-Match": `W/"1"`}, `{"name":"x"}`, 412, "0x80060882", "doesn't match the RowVersion"},
		{"If-None-Match * on an existing record", id, map[string]string{"If-None-Match": "*"}, `{"name":"x"}`, 412, "", "matching key values"},
		{"unknown property", id, map[string]string{"If-Match": "*"}, `{"Name":"x"}`, 400, "0x0", "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.account'."},
		{"wrong JSON type", id, map[string]string{"If-Match": "*"}, `{"numberofemployees":"many"}`, 400, "0x0", "'numberofemployees'"},
		{"current ETag", id, map[string]string{"If-Match": cur}, `{"name":"renamed"}`, 204, "", ""},
		{"return=representation", id, map[string]string{"If-Match": "*", "Prefer": "return=representation"}, `{"revenue":12.5}`, 200, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := send(t, base, http.MethodPatch, "accounts("+tc.id+")", tc.hdr, tc.body)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			if tc.wantStatus >= 400 {
				code, msg := errorOf(t, r)
				if tc.wantCode != "" && code != tc.wantCode || !strings.Contains(msg, tc.wantInMsg) {
					t.Fatalf("error %s %q, want %s containing %q", code, msg, tc.wantCode, tc.wantInMsg)
				}
			}
		})
	}
	if _, ok := sim.Get(missing); ok || sim.Counters().Creates != 0 {
		t.Fatal("a conditional PATCH created a record")
	}
	after, _ := sim.Get(id)
	if after["name"] != "renamed" || after["revenue"] != 12.5 || after["versionnumber"].(int64) != row["versionnumber"].(int64)+2 {
		t.Fatalf("after two updates: %v", after)
	}
	// Without If-Match a PATCH is an upsert: it creates, and the counter says so.
	if r := send(t, base, http.MethodPatch, "accounts("+missing+")", nil, `{"name":"new"}`); r.status != 204 {
		t.Fatalf("upsert: %d %s", r.status, r.body)
	}
	if got, ok := sim.Get(missing); !ok || got["name"] != "new" || sim.Counters().Creates != 1 {
		t.Fatalf("upsert created %v %v, Creates %d", got, ok, sim.Counters().Creates)
	}
}

func TestUnknownNamesAndUnsupportedOptions(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 3})
	base, stop := sim.Start()
	defer stop()
	cases := []struct {
		path       string
		wantStatus int
		wantCode   string
		wantMsg    string
	}{
		{"Accounts", 404, "0x8006088a", "Resource not found for the segment 'Accounts'."},
		{"contacts?$select=fullname", 404, "0x8006088a", "Resource not found for the segment 'contacts'."},
		{"accounts?$select=Name", 400, "0x0", "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.account'."},
		{"accounts?$skip=10", 400, "0x0", "$skip"},
		{"accounts(" + dvsim.AccountID(0) + ")/Microsoft.Dynamics.CRM.dvb_Nope", 404, "0x8006088a", "dvb_Nope"},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			method := http.MethodGet
			if strings.Contains(tc.path, "dvb_") {
				method = http.MethodPost
			}
			r := send(t, base, method, tc.path, nil, "")
			code, msg := errorOf(t, r)
			if r.status != tc.wantStatus || code != tc.wantCode || !strings.Contains(msg, tc.wantMsg) {
				t.Fatalf("%d %s %q, want %d %s %q", r.status, code, msg, tc.wantStatus, tc.wantCode, tc.wantMsg)
			}
		})
	}
}

func TestEveryResponseCarriesTheServiceHeaders(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 1, DOPHint: 48})
	base, stop := sim.Start()
	defer stop()
	for _, path := range []string{"WhoAmI", "Accounts"} {
		r := send(t, base, http.MethodGet, path, nil, "")
		h := r.header
		if h.Get("OData-Version") != "4.0" || h.Get("x-ms-dop-hint") != "48" || h.Get("x-ms-service-request-id") == "" || h.Get("REQ_ID") == "" {
			t.Errorf("%s: headers %v", path, h)
		}
		if h.Get("x-ms-ratelimit-burst-remaining-xrm-requests") != "5999" || h.Get("x-ms-ratelimit-time-remaining-xrm-requests") == "" {
			t.Errorf("%s: rate-limit headers %q %q", path, h.Get("x-ms-ratelimit-burst-remaining-xrm-requests"), h.Get("x-ms-ratelimit-time-remaining-xrm-requests"))
		}
		cookies := strings.Join(h.Values("Set-Cookie"), "\n")
		if !strings.Contains(cookies, "ARRAffinity=") || !strings.Contains(cookies, "; path=/; secure; HttpOnly") || !strings.Contains(cookies, "ReqClientId=") {
			t.Errorf("%s: cookies %s", path, cookies)
		}
	}
	// A fresh user on a fresh server has the whole execution budget: "1,200.00".
	sim2 := dvsim.New(dvsim.Config{Accounts: 1, Servers: 1, Cost: dvsim.Cost{Action: 1}})
	base2, stop2 := sim2.Start()
	defer stop2()
	r := send(t, base2, http.MethodGet, "WhoAmI", nil, "")
	if got := r.header.Get("x-ms-ratelimit-time-remaining-xrm-requests"); got != "1,200.00" {
		t.Errorf("time remaining %q, want 1,200.00", got)
	}
}

func TestFilters(t *testing.T) {
	names := []string{"O'Brien", "Contoso", "Fabrikam", "contoso"}
	sim := dvsim.New(dvsim.Config{Accounts: 8, InactiveAccounts: 2, Init: func(i int, id string, rec map[string]any) {
		rec["name"] = names[i%len(names)]
		rec["numberofemployees"] = i * 10
		if i%3 == 0 {
			rec["industrycode"] = nil
		} else {
			rec["industrycode"] = 7
		}
	}})
	base, stop := sim.Start()
	defer stop()
	in := fmt.Sprintf("Microsoft.Dynamics.CRM.In(PropertyName='accountid',PropertyValues=['%s','%s','%s'])", dvsim.AccountID(1), strings.ToUpper(dvsim.AccountID(5)), "00000000-0000-4000-8000-000000000009")
	cases := []struct {
		filter string
		want   []int
	}{
		{"statecode eq 0", []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{"statecode eq 1", []int{8, 9}},
		{"name eq 'O''Brien'", []int{0, 4, 8}},
		{"name eq 'CONTOSO' and statecode eq 0", []int{1, 3, 5, 7}}, // Dataverse compares text case-insensitively
		{"numberofemployees gt 30 and numberofemployees le 60", []int{4, 5, 6}},
		{"(numberofemployees lt 20 or numberofemployees ge 90) and statecode eq 1", []int{9}},
		{"industrycode eq null", []int{0, 3, 6, 9}},
		{"industrycode ne null and numberofemployees lt 30", []int{1, 2}},
		{"accountid eq " + dvsim.AccountID(2), []int{2}},
		{in, []int{1, 5}},
		{in + " and numberofemployees gt 20", []int{5}},
	}
	for _, tc := range cases {
		t.Run(tc.filter, func(t *testing.T) {
			r := send(t, base, http.MethodGet, "accounts?$select=name&$filter="+url.QueryEscape(tc.filter), nil, "")
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			var page struct{ Value []map[string]any }
			_ = json.Unmarshal([]byte(r.body), &page)
			got := map[string]bool{}
			for _, row := range page.Value {
				got[row["accountid"].(string)] = true
				if row["@odata.etag"] == nil || row["name"] == nil || row["numberofemployees"] != nil {
					t.Errorf("row carries the wrong columns: %v", row)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d rows, want %v", len(got), tc.want)
			}
			for _, i := range tc.want {
				if !got[dvsim.AccountID(i)] {
					t.Errorf("record %d missing", i)
				}
			}
		})
	}
	if r := send(t, base, http.MethodGet, "accounts?$filter="+url.QueryEscape("Name eq 'x'"), nil, ""); r.status != 400 {
		t.Errorf("unknown column in $filter: %d", r.status)
	}
}

func TestPagingHeadersAndNextLink(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 7})
	base, stop := sim.Start()
	defer stop()
	r := send(t, base, http.MethodGet, "accounts?$select=name&$filter=statecode%20eq%200&$orderby=accountid%20asc", map[string]string{"Prefer": "odata.maxpagesize=3"}, "")
	if r.header.Get("Preference-Applied") != "odata.maxpagesize=3" {
		t.Fatalf("Preference-Applied %q", r.header.Get("Preference-Applied"))
	}
	var page struct {
		Value []map[string]any
		Next  string `json:"@odata.nextLink"`
	}
	_ = json.Unmarshal([]byte(r.body), &page)
	u, err := url.Parse(page.Next)
	if err != nil || len(page.Value) != 3 {
		t.Fatalf("page: %d rows, next %q", len(page.Value), page.Next)
	}
	q := u.Query()
	tok := q.Get("$skiptoken")
	last := page.Value[2]["accountid"].(string)
	if q.Get("$select") != "name" || q.Get("$filter") != "statecode eq 0" || !strings.HasPrefix(tok, `<cookie pagenumber="2" pagingcookie="`) ||
		!strings.Contains(tok, last) || !strings.HasSuffix(tok, `istracking="False" />`) || strings.Contains(u.RawQuery, "<") {
		t.Fatalf("nextLink %s (token %q)", page.Next, tok)
	}
}

func TestUpdateMultipleIsAllOrNothing(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 5})
	base, stop := sim.Start()
	defer stop()
	missing := "00000000-0000-4000-8000-00000000000f"
	target := func(id, desc string) string {
		return fmt.Sprintf(`{"@odata.type":"Microsoft.Dynamics.CRM.account","accountid":%q,"description":%q}`, id, desc)
	}
	sim.Faults().RejectOnWrite(dvsim.AccountID(3))
	cases := []struct {
		name       string
		targets    []string
		wantStatus int
		wantCode   string
		wantInMsg  string
	}{
		{"a missing record", []string{target(dvsim.AccountID(0), "x"), target(missing, "x")}, 404, "0x80040217", "account With Ids = " + missing + " Do Not Exist"},
		{"a plugin rejects one", []string{target(dvsim.AccountID(0), "x"), target(dvsim.AccountID(3), "x")}, 400, "0x80040265", dvsim.AccountID(3)},
		{"no @odata.type", []string{target(dvsim.AccountID(0), "x"), fmt.Sprintf(`{"accountid":%q,"description":"x"}`, dvsim.AccountID(1))}, 400, "", "@odata.type"},
		{"a bad value", []string{target(dvsim.AccountID(0), "x"), fmt.Sprintf(`{"@odata.type":"Microsoft.Dynamics.CRM.account","accountid":%q,"revenue":"lots"}`, dvsim.AccountID(1))}, 400, "0x0", "'revenue'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := send(t, base, http.MethodPost, "accounts/Microsoft.Dynamics.CRM.UpdateMultiple", map[string]string{"Content-Type": "application/json"}, `{"Targets":[`+strings.Join(tc.targets, ",")+`]}`)
			code, msg := errorOf(t, r)
			if r.status != tc.wantStatus || tc.wantCode != "" && code != tc.wantCode || !strings.Contains(msg, tc.wantInMsg) {
				t.Fatalf("%d %s %q", r.status, code, msg)
			}
			if c := sim.Counters(); c.Writes != 0 {
				t.Fatalf("a failed UpdateMultiple applied %d writes", c.Writes)
			}
			if row, _ := sim.Get(dvsim.AccountID(0)); row["description"] != "" {
				t.Fatalf("record 0 changed: %v", row)
			}
		})
	}
	r := send(t, base, http.MethodPost, "accounts/Microsoft.Dynamics.CRM.UpdateMultiple", nil, `{"Targets":[`+target(dvsim.AccountID(0), "a")+","+target(dvsim.AccountID(1), "b")+`]}`)
	if r.status != 204 || sim.Counters().Writes != 2 || sim.Counters().ByKind["updateMultiple"] != 5 {
		t.Fatalf("good UpdateMultiple: %d %s %+v", r.status, r.body, sim.Counters())
	}
	if row, _ := sim.Get(dvsim.AccountID(1)); row["description"] != "b" {
		t.Fatalf("record 1: %v", row)
	}
}

func TestUpdateMultipleUnavailable(t *testing.T) {
	probe := "sdkmessagefilters?$select=sdkmessagefilterid&$filter=" + url.QueryEscape("sdkmessageid/name eq 'UpdateMultiple' and primaryobjecttypecode eq 'account'")
	for _, unavailable := range []bool{false, true} {
		t.Run(fmt.Sprint("NoUpdateMultiple=", unavailable), func(t *testing.T) {
			sim := dvsim.New(dvsim.Config{Accounts: 2, NoUpdateMultiple: unavailable})
			base, stop := sim.Start()
			defer stop()
			r := send(t, base, http.MethodGet, probe, nil, "")
			var v struct{ Value []map[string]string }
			_ = json.Unmarshal([]byte(r.body), &v)
			if r.status != 200 || (len(v.Value) == 0) != unavailable {
				t.Fatalf("probe %d %s", r.status, r.body)
			}
			r = send(t, base, http.MethodPost, "accounts/Microsoft.Dynamics.CRM.UpdateMultiple", nil, fmt.Sprintf(`{"Targets":[{"@odata.type":"Microsoft.Dynamics.CRM.account","accountid":%q,"name":"n"}]}`, dvsim.AccountID(0)))
			if unavailable {
				if code, msg := errorOf(t, r); r.status != 404 || msg != "Resource not found for the segment 'Microsoft.Dynamics.CRM.UpdateMultiple'." {
					t.Fatalf("action: %d %s %s", r.status, code, msg)
				}
			} else if r.status != 204 {
				t.Fatalf("action: %d %s", r.status, r.body)
			}
		})
	}
}

func TestBoundAction(t *testing.T) {
	var hooked []string
	sim := dvsim.New(dvsim.Config{Accounts: 2, OnWrite: func(ids []string) { hooked = append(hooked, ids...) }})
	base, stop := sim.Start()
	defer stop()
	id := dvsim.AccountID(1)
	if r := send(t, base, http.MethodPost, "accounts("+id+")/Microsoft.Dynamics.CRM.dvb_RecalculateScore", nil, "{}"); r.status != 204 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if row, _ := sim.Get(id); row["description"] != "recalculated" || len(hooked) != 1 || hooked[0] != id {
		t.Fatalf("row %v, OnWrite saw %v", row, hooked)
	}
	missing := "00000000-0000-4000-8000-000000000003"
	r := send(t, base, http.MethodPost, "accounts("+missing+")/Microsoft.Dynamics.CRM.dvb_RecalculateScore", nil, "{}")
	if code, _ := errorOf(t, r); r.status != 404 || code != "0x80040217" {
		t.Fatalf("missing record: %d %s", r.status, r.body)
	}
}

func TestFaults(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 1})
	base, stop := sim.Start()
	defer stop()
	sim.Faults().ServerErrors(2, 503)
	var got []int
	for i := 0; i < 3; i++ {
		got = append(got, send(t, base, http.MethodGet, "WhoAmI", nil, "").status)
	}
	if fmt.Sprint(got) != "[503 503 200]" || sim.Counters().Errors5xx != 2 {
		t.Fatalf("statuses %v, Errors5xx %d", got, sim.Counters().Errors5xx)
	}
	sim.Faults().DropConnections(1)
	// A POST, because Go's transport silently retries an idempotent GET on a dropped connection.
	if _, err := http.Post(base+"/api/data/v9.2/$batch", "text/plain", strings.NewReader("x")); err == nil || sim.Counters().Dropped != 1 {
		t.Fatalf("dropped connection answered (err %v, Dropped %d)", err, sim.Counters().Dropped)
	}
	if r := send(t, base, http.MethodGet, "WhoAmI", nil, ""); r.status != 200 {
		t.Fatalf("after the drop: %d", r.status)
	}
}

// $count=true answers @odata.count: every matching row whatever the page size, capped at 5,000 as
// Dataverse caps it for standard tables, on every page; the totalrecordcount annotations say
// whether the cap was reached ("Count rows using OData").
func TestCountIsCappedLikeDataverse(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 5200, InactiveAccounts: 30})
	base, stop := sim.Start()
	defer stop()
	type page struct {
		Count    *int   `json:"@odata.count"`
		Total    *int   `json:"@Microsoft.Dynamics.CRM.totalrecordcount"`
		Exceeded *bool  `json:"@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"`
		Next     string `json:"@odata.nextLink"`
		Value    []map[string]any
	}
	get := func(path, prefer string) page {
		t.Helper()
		r := send(t, base, http.MethodGet, path, map[string]string{"Prefer": prefer}, "")
		if r.status != 200 {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
		var p page
		if err := json.Unmarshal([]byte(r.body), &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	annotations := `odata.include-annotations="Microsoft.Dynamics.CRM.totalrecordcount,Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"`
	p := get("accounts?$select=accountid&$count=true&$filter="+url.QueryEscape("statecode eq 0"), "odata.maxpagesize=10,"+annotations)
	if p.Count == nil || *p.Count != 5000 || len(p.Value) != 10 {
		t.Fatalf("5,200 matching, page of 10: count %v, %d rows; want 5000 and 10", p.Count, len(p.Value))
	}
	if p.Total == nil || *p.Total != 5000 || p.Exceeded == nil || !*p.Exceeded {
		t.Fatalf("annotations %v %v, want 5000 and limit exceeded", p.Total, p.Exceeded)
	}
	next, err := url.Parse(p.Next)
	if err != nil || p.Next == "" {
		t.Fatalf("nextLink %q: %v", p.Next, err)
	}
	if p2 := get("accounts?"+next.RawQuery, "odata.maxpagesize=10"); p2.Count == nil || *p2.Count != 5000 || p2.Total != nil {
		t.Fatalf("second page: count %v, annotations %v; want the count again and no annotations unasked", p2.Count, p2.Total)
	}
	p = get("accounts?$select=accountid&$count=true&$filter="+url.QueryEscape("statecode eq 1"), annotations)
	if p.Count == nil || *p.Count != 30 || len(p.Value) != 30 || p.Exceeded == nil || *p.Exceeded {
		t.Fatalf("30 inactive: count %v, %d rows, exceeded %v", p.Count, len(p.Value), p.Exceeded)
	}
	if p = get("accounts?$select=accountid&$top=3", ""); p.Count != nil {
		t.Fatalf("without $count: @odata.count %v, want none", *p.Count)
	}
	if r := send(t, base, http.MethodGet, "accounts?$count=yes", nil, ""); r.status != 400 {
		t.Fatalf("$count=yes: %d, want 400", r.status)
	}
}
