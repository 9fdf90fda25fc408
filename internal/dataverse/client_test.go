package dataverse

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	azlog "github.com/Azure/azure-sdk-for-go/sdk/azcore/log"
	"github.com/rs/zerolog"
)

func TestNewValidatesURLAndCredential(t *testing.T) {
	cases := []struct {
		url     string
		cred    bool
		wantErr bool
	}{
		{"https://contoso.crm.dynamics.com", true, false},
		{"https://contoso.crm.dynamics.com/", true, false},
		{"https://contoso.crm.dynamics.com", false, true}, // no auth outside loopback
		{"http://contoso.crm.dynamics.com", true, true},   // https required
		{"http://127.0.0.1:8080", false, false},
		{"http://127.0.0.9:8080", false, false},
		{"http://[::1]:8080", false, false},
		{"http://localhost:8080", true, false},
		{"http://10.0.0.1:8080", false, true},
		{"ftp://127.0.0.1", false, true},
		{"https://contoso.crm.dynamics.com?x=1", true, true},
		{"https://user:pw@contoso.crm.dynamics.com", true, true},
		{"", false, true},
		{"contoso.crm.dynamics.com", true, true},
	}
	for _, tc := range cases {
		cfg := Config{URL: tc.url}
		if tc.cred {
			cfg.Credential = staticCred("t")
		}
		_, err := New(cfg)
		if (err != nil) != tc.wantErr {
			t.Errorf("New(%q, cred=%v) error = %v, want error %v", tc.url, tc.cred, err, tc.wantErr)
		}
	}
	c, err := New(Config{URL: "https://contoso.crm.dynamics.com/"})
	if err == nil || c != nil {
		t.Fatal("accepted")
	}
	c, _ = New(Config{URL: "https://Contoso.crm.dynamics.com/", Credential: staticCred("t")})
	if c.api != "https://contoso.crm.dynamics.com/api/data/v9.2/" || c.Limit() != 5 || c.DOP() != 5 {
		t.Errorf("api=%s limit=%d dop=%d", c.api, c.Limit(), c.DOP())
	}
	c, _ = New(Config{URL: "http://127.0.0.1", MaxConcurrency: 3})
	if c.Limit() != 3 {
		t.Errorf("initial limit = %d, want min(5, cap 3)", c.Limit())
	}
	tr := c.httpClient().Transport.(*http.Transport)
	if tr.MaxIdleConnsPerHost < 3 {
		t.Errorf("MaxIdleConnsPerHost = %d", tr.MaxIdleConnsPerHost)
	}
	c, _ = New(Config{URL: "http://127.0.0.1"})
	if tr := c.httpClient().Transport.(*http.Transport); tr.MaxIdleConnsPerHost < 52 {
		t.Errorf("default MaxIdleConnsPerHost = %d, want >= 52", tr.MaxIdleConnsPerHost)
	}
}

func TestCredentialFor(t *testing.T) {
	full := Identity{TenantID: "72f988bf-86f1-41af-91ab-2d7cd011db47", ClientID: "c1", ClientSecret: "hunter2-secret"}
	cases := []struct {
		auth, url string
		env       Identity
		wantCred  bool
		errHas    []string
	}{
		{"none", "http://127.0.0.1:9000", Identity{}, false, nil},
		{"none", "http://localhost:9000", Identity{}, false, nil},
		{"none", "https://contoso.crm.dynamics.com", Identity{}, false, []string{"DATAVERSE_AUTH", "loopback"}},
		{"bogus", "https://contoso.crm.dynamics.com", Identity{}, false, []string{"DATAVERSE_AUTH", "bogus"}},
		{"default", "http://contoso.crm.dynamics.com", Identity{}, false, []string{"DATAVERSE_URL"}},
		{"clientsecret", "https://contoso.crm.dynamics.com", Identity{ClientID: "c1"}, false,
			[]string{"DATAVERSE_AUTH=clientsecret", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET"}},
		{"clientsecret", "https://contoso.crm.dynamics.com", full, true, nil},
		{"ClientSecret", "https://contoso.crm.dynamics.com", full, true, nil},
		{"managedidentity", "https://contoso.crm.dynamics.com", Identity{}, true, nil},
		{"managedidentity", "https://contoso.crm.dynamics.com", Identity{ClientID: "c1"}, true, nil},
		{"", "https://contoso.crm.dynamics.com", Identity{}, true, nil},
	}
	for _, tc := range cases {
		cred, err := CredentialFor(tc.auth, tc.url, tc.env)
		if (cred != nil) != tc.wantCred {
			t.Errorf("CredentialFor(%q, %q): cred=%v err=%v", tc.auth, tc.url, cred, err)
		}
		if len(tc.errHas) == 0 && err != nil {
			t.Errorf("CredentialFor(%q, %q): %v", tc.auth, tc.url, err)
		}
		for _, s := range tc.errHas {
			if err == nil || !strings.Contains(err.Error(), s) {
				t.Errorf("CredentialFor(%q, %q) error %v should mention %q", tc.auth, tc.url, err, s)
			}
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error leaks the secret: %v", err)
		}
	}
}

// recorder is a server that answers every request with an empty page (and 204 to PATCH) and
// records the request headers.
type recorder struct {
	mu      sync.Mutex
	headers []http.Header
	extra   func(w http.ResponseWriter)
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	rc.mu.Lock()
	rc.headers = append(rc.headers, r.Header.Clone())
	rc.mu.Unlock()
	if rc.extra != nil {
		rc.extra(w)
	}
	if r.Method == http.MethodPatch {
		w.WriteHeader(204)
		return
	}
	io.WriteString(w, `{"value":[]}`)
}

func TestStandardHeaders(t *testing.T) {
	rc := &recorder{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	c := newTestClient(t, srv.URL, nil)
	if _, err := c.QueryPage(ctxT(t), Query{Table: accounts, PageSize: 250}, ""); err != nil {
		t.Fatal(err)
	}
	if r := c.Patch(ctxT(t), accounts, Update{ID: testID(1)}, WriteOptions{}); r.Err != nil {
		t.Fatal(r.Err)
	}
	get, patch := rc.headers[0], rc.headers[1]
	for k, v := range map[string]string{
		"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0",
		"If-None-Match": "null", "Prefer": "odata.maxpagesize=250",
	} {
		if got := get.Get(k); got != v {
			t.Errorf("GET %s = %q, want %q", k, got, v)
		}
	}
	if patch.Get("If-None-Match") != "" || patch.Get("If-Match") != "*" || patch.Get("Content-Type") != "application/json" {
		t.Errorf("PATCH headers %v", patch)
	}
	if get.Get("Authorization") != "" {
		t.Error("Authorization sent without a credential")
	}
}

func TestAffinityCookie(t *testing.T) {
	for _, affinity := range []bool{false, true} {
		t.Run(map[bool]string{false: "default off", true: "on"}[affinity], func(t *testing.T) {
			rc := &recorder{extra: func(w http.ResponseWriter) {
				w.Header().Add("Set-Cookie", "ARRAffinity=f60cbee4; path=/; HttpOnly")
				w.Header().Add("Set-Cookie", "ReqClientId=4fc95009-0b3d-4a19-b223-0d80745636ac; path=/; HttpOnly")
			}}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			c := newTestClient(t, srv.URL, func(cfg *Config) {
				cfg.AffinityCookie = affinity
				// A caller-supplied client with a jar must not bring cookies back in.
				cfg.HTTPClient = &http.Client{Jar: mustJar(t)}
			})
			for range 3 {
				if err := get(c, t); err != nil {
					t.Fatal(err)
				}
			}
			for i, h := range rc.headers {
				cookie := h.Get("Cookie")
				switch {
				case !affinity && cookie != "":
					t.Errorf("request %d sent Cookie %q", i, cookie)
				case affinity && i > 0 && !strings.Contains(cookie, "ARRAffinity=f60cbee4"):
					t.Errorf("request %d Cookie %q, want the affinity cookie", i, cookie)
				}
			}
		})
	}
}

func TestTokenNeverLogged(t *testing.T) {
	const secret = "eyJ0eXAiOiJKV1QiLCJzZWNyZXQ"
	var logs bytes.Buffer
	var azMu sync.Mutex
	var azLogs strings.Builder
	azlog.SetListener(func(_ azlog.Event, msg string) {
		azMu.Lock()
		azLogs.WriteString(msg + "\n")
		azMu.Unlock()
	})
	defer azlog.SetListener(nil)

	var mu sync.Mutex
	n := 0
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		step := n
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		switch step {
		case 1:
			writeJSON(w, 401, errBody("", "ExpiredAuthTicket"))
		case 2:
			w.Header().Set("Retry-After", "0.01")
			writeJSON(w, 429, errBody("0x80072326", "Number of concurrent requests exceeded the limit of 52."))
		case 3:
			writeJSON(w, 500, errBody("", "Generic SQL error"))
		case 4:
			w.WriteHeader(204)
		default:
			writeJSON(w, 400, errBody("0x0", "Could not find a property named 'Name'"))
		}
	}))
	defer srv.Close()
	cred := &fakeCred{prefix: secret}
	c := newTestClient(t, srv.URL, func(cfg *Config) {
		cfg.Credential = cred
		cfg.Logger = zerolog.New(&logs).Level(zerolog.TraceLevel)
	})
	r := c.Patch(ctxT(t), accounts, Update{ID: testID(1)}, WriteOptions{})
	if r.Status != Updated {
		t.Fatalf("%+v", r)
	}
	_, qerr := c.QueryPage(ctxT(t), Query{Table: accounts}, "")
	if qerr == nil {
		t.Fatal("want the 400")
	}
	if !strings.HasPrefix(auth[0], "Bearer "+secret) {
		t.Fatalf("server did not get the token: %q", auth[0])
	}
	if logs.Len() == 0 || azLogs.Len() == 0 {
		t.Fatalf("nothing logged (zerolog %d bytes, azcore %d bytes): the test would prove nothing", logs.Len(), azLogs.Len())
	}
	for name, s := range map[string]string{"zerolog": logs.String(), "azcore": azLogs.String(), "error": qerr.Error()} {
		if strings.Contains(s, secret) {
			t.Errorf("token appears in %s output:\n%s", name, s)
		}
	}
}

func mustJar(t *testing.T) http.CookieJar {
	t.Helper()
	c, _ := New(Config{URL: "http://127.0.0.1", AffinityCookie: true})
	return c.httpClient().Jar
}
