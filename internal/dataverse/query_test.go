package dataverse

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

func TestQueryPagesAndNextLink(t *testing.T) {
	var mu sync.Mutex
	var uris []string
	var prefer []string
	var srvURL string
	// The skiptoken is the kind of value that breaks if re-encoded.
	const skip = `%3Ccookie%20pagenumber=%222%22%20pagingcookie=%22%253ccookie%2520page%253d%25221%2522%253e%22%20istracking=%22False%22%20/%3E`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		uris = append(uris, r.RequestURI)
		prefer = append(prefer, r.Header.Get("Prefer"))
		mu.Unlock()
		if strings.Contains(r.RequestURI, "$skiptoken") {
			io.WriteString(w, `{"value":[{"@odata.etag":"W/\"2\"","accountid":"00000002-0000-4000-8000-000000000002","revenue":12345678901234567890.5}]}`)
			return
		}
		fmt.Fprintf(w, `{"value":[{"@odata.etag":"W/\"1\"","accountid":"00000001-0000-4000-8000-000000000001","numberofemployees":120}],"@odata.nextLink":"%s/api/data/v9.2/accounts?$select=name,accountid&$skiptoken=%s"}`, srvURL, skip)
	}))
	defer srv.Close()
	srvURL = srv.URL
	c := newTestClient(t, srv.URL, nil)
	q := Query{Table: accounts, Select: []string{"name", "websiteurl"}, Filter: "statecode eq 0 and name ne " + Literal("O'Brien & Co"), PageSize: 500}
	var got []Record
	err := c.Query(ctxT(t), q, func(p Page) error {
		got = append(got, p.Records...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(uris) != 2 {
		t.Fatalf("requests %v", uris)
	}
	first, err := url.ParseQuery(strings.SplitN(uris[0], "?", 2)[1])
	if err != nil {
		t.Fatal(err)
	}
	if first.Get("$select") != "name,websiteurl,accountid" || first.Get("$orderby") != "accountid" ||
		first.Get("$filter") != "statecode eq 0 and name ne 'O''Brien & Co'" {
		t.Errorf("first page query %v", first)
	}
	if strings.Contains(uris[0], "+") {
		t.Errorf("spaces encoded as '+': %s", uris[0])
	}
	if want := "/api/data/v9.2/accounts?$select=name,accountid&$skiptoken=" + skip; uris[1] != want {
		t.Errorf("nextLink was modified:\n got %s\nwant %s", uris[1], want)
	}
	if prefer[0] != "odata.maxpagesize=500" || prefer[1] != "odata.maxpagesize=500" {
		t.Errorf("Prefer = %v, want the same maxpagesize on every page", prefer)
	}
	if len(got) != 2 || got[0]["@odata.etag"] != `W/"1"` {
		t.Fatalf("records %v", got)
	}
	if n, ok := got[0]["numberofemployees"].(json.Number); !ok || n.String() != "120" {
		t.Errorf("numberofemployees = %#v, want json.Number", got[0]["numberofemployees"])
	}
	if n := got[1]["revenue"].(json.Number); n.String() != "12345678901234567890.5" {
		t.Errorf("revenue lost precision: %s", n)
	}
}

func TestQueryPageRefusesForeignNextLink(t *testing.T) {
	rc := &recorder{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.Credential = staticCred("tok") })
	for _, link := range []string{
		"https://evil.example.com/api/data/v9.2/accounts?$skiptoken=x",
		strings.Replace(srv.URL, "http://", "https://", 1) + "/api/data/v9.2/accounts",
		srv.URL + "/other/accounts",
		"http://user@" + strings.TrimPrefix(srv.URL, "http://") + "/api/data/v9.2/accounts",
		"::not a url",
	} {
		if _, err := c.QueryPage(ctxT(t), Query{Table: accounts}, link); err == nil {
			t.Errorf("followed %q", link)
		}
	}
	if len(rc.headers) != 0 || c.Stats().Requests != 0 {
		t.Errorf("%d requests sent", len(rc.headers))
	}
}

func TestQueryRejectsBadNames(t *testing.T) {
	c := newTestClient(t, "http://127.0.0.1:1", nil)
	for _, q := range []Query{
		{Table: Table{EntitySet: "accounts?$top=1", LogicalName: "account", Key: "accountid"}},
		{Table: accounts, Select: []string{"name,revenue"}},
		{Table: accounts, Select: []string{"name&$expand=x"}},
	} {
		if _, err := c.QueryPage(ctxT(t), q, ""); err == nil {
			t.Errorf("accepted %+v", q)
		}
	}
}

func TestGetByIDs(t *testing.T) {
	var mu sync.Mutex
	var filters []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := r.URL.Query().Get("$filter")
		mu.Lock()
		filters = append(filters, f)
		mu.Unlock()
		// Answer with one record per id in the filter.
		var recs []string
		for _, part := range strings.Split(f, "'") {
			if _, err := ParseID(part); err == nil {
				recs = append(recs, fmt.Sprintf(`{"accountid":"%s"}`, part))
			}
		}
		fmt.Fprintf(w, `{"value":[%s]}`, strings.Join(recs, ","))
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil)
	ids := testIDs(250)
	ids = append(ids, strings.ToUpper(ids[0])) // a duplicate in another case
	recs, err := c.GetByIDs(ctxT(t), accounts, ids, []string{"name"})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 250 || len(filters) != 3 {
		t.Fatalf("records %d, requests %d; want 250 and 3 (groups of <= 100)", len(recs), len(filters))
	}
	for _, f := range filters {
		if !strings.HasPrefix(f, "Microsoft.Dynamics.CRM.In(PropertyName='accountid',PropertyValues=['") || strings.Count(f, ",")+1 > 101 {
			t.Errorf("filter %.120s...", f)
		}
	}
	if _, err := c.GetByIDs(ctxT(t), accounts, []string{ids[0], "{" + ids[1] + "}"}, nil); err == nil {
		t.Error("invalid id accepted")
	}
	if len(filters) != 3 {
		t.Error("a request was sent before all ids were validated")
	}
}

func TestInvokeAction(t *testing.T) {
	var gotPath, gotBody string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotPath, gotBody = r.URL.Path, string(b)
		io.WriteString(w, `{"@odata.context":"x","Total":42}`)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil)
	rec, err := c.InvokeAction(ctxT(t), accounts, testID(1), "new_Recalculate", map[string]any{"Full": true})
	if err != nil {
		t.Fatal(err)
	}
	if gotPath != "/api/data/v9.2/accounts("+testID(1)+")/Microsoft.Dynamics.CRM.new_Recalculate" || gotBody != `{"Full":true}` {
		t.Errorf("path %s body %s", gotPath, gotBody)
	}
	if rec["Total"].(json.Number).String() != "42" {
		t.Errorf("response %v", rec)
	}
	if _, err := c.InvokeAction(ctxT(t), accounts, testID(1), "x/../../WhoAmI", nil); err == nil {
		t.Error("bad action name accepted")
	}
}

// A hostile filter cannot add query options, cut the URL short or reach another path: every byte
// outside the OData-safe set is percent-encoded, so the server sees exactly $select, $filter and
// $orderby, with the filter text unchanged.
func TestHostileFilterStaysOneQueryOption(t *testing.T) {
	c := newTestClient(t, "http://127.0.0.1:1", nil)
	for _, f := range []string{
		"statecode eq 0&$top=1",
		"statecode eq 0#&$expand=owninguser",
		"name eq 'a' or 1 eq 1&$select=*",
		"statecode eq 0%26$top=1",
		"name eq 'x\r\nAuthorization: Bearer stolen'",
		"name eq '../../WhoAmI?'",
		"name eq '\u00e9\u00e8 \u2028'",
	} {
		u, err := c.firstPageURL(Query{Table: accounts, Select: []string{"name"}, Filter: f})
		if err != nil {
			t.Fatalf("%q: %v", f, err)
		}
		p, err := url.Parse(u)
		if err != nil {
			t.Fatalf("%q: built an unparsable URL %q: %v", f, u, err)
		}
		if p.Host != "127.0.0.1:1" || p.Path != "/api/data/v9.2/accounts" || p.Fragment != "" || strings.ContainsAny(u, " \r\n#") {
			t.Errorf("%q: URL %q escapes its path or query", f, u)
		}
		q, err := url.ParseQuery(p.RawQuery)
		if err != nil || len(q) != 3 || q.Get("$filter") != f || q.Get("$select") != "name,accountid" {
			t.Errorf("%q: query options %v (%v); want exactly $select, $filter (unchanged), $orderby", f, q, err)
		}
	}
}
