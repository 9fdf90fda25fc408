package enrich

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"dvbulk/internal/enrich/enrichsim"
	"dvbulk/internal/testutil"
)

const testKey = "s3cr3t-KEY-0f9a"

// TestAPIKeyInHeaderOnly: the key travels in the configured header and nowhere else in the
// request.
func TestAPIKeyInHeaderOnly(t *testing.T) {
	var got *http.Request
	srv := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		answerAll(w, r)
	})
	cfg := testConfig(srv.URL)
	cfg.APIKey, cfg.APIKeyHeader = testKey, "X-Company-Key"
	c := newClient(t, cfg)
	if res, _ := c.Enrich(context.Background(), records(1)); res[0].Err != "" {
		t.Fatal(res[0].Err)
	}
	for name, vals := range got.Header {
		for _, v := range vals {
			if strings.Contains(v, testKey) != (name == "X-Company-Key") {
				t.Errorf("header %s: %q", name, v)
			}
		}
	}
	if got.Header.Get("X-Company-Key") != testKey || strings.Contains(got.URL.String(), testKey) {
		t.Errorf("key header %q, URL %s", got.Header.Get("X-Company-Key"), got.URL)
	}
}

// TestAPIKeyNeverLogged drives every logging path (retry, throttle, 401, a service echoing the
// key back in its error body) with debug logging on, and looks for the key in the logs and in
// every reason.
func TestAPIKeyNeverLogged(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	logger := zerolog.New(logs).Level(zerolog.TraceLevel)
	var reasons []string
	collect := func(res []Result) {
		for _, r := range res {
			reasons = append(reasons, r.Err)
		}
	}

	sim, url := startSim(t, enrichsim.Config{APIKey: testKey, APIKeyHeader: "x-company-key"})
	sim.Faults().ServerErrors.Store(1)
	cfg := testConfig(url)
	cfg.APIKey, cfg.APIKeyHeader, cfg.Logger = testKey, "x-company-key", logger
	res, _ := newClient(t, cfg).Enrich(context.Background(), records(3))
	requireAllOK(t, records(3), res)

	cfg.APIKey = "wrong-" + testKey
	res, _ = newClient(t, cfg).Enrich(context.Background(), records(1))
	if !strings.Contains(res[0].Err, "401") {
		t.Errorf("wrong key: %+v, want a 401", res[0])
	}
	collect(res)

	for _, status := range []int{http.StatusBadRequest, http.StatusInternalServerError, http.StatusTooManyRequests} {
		echo := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"error":"key %s is not valid here"}`, r.Header.Get("x-api-key"))
		})
		cfg := testConfig(echo.URL)
		cfg.APIKey, cfg.MaxRetries, cfg.Logger = testKey, 1, logger
		res, _ := newClient(t, cfg).Enrich(context.Background(), records(1))
		if !strings.Contains(res[0].Err, "[REDACTED]") {
			t.Errorf("status %d: reason %q, want the echoed key redacted", status, res[0].Err)
		}
		collect(res)
	}

	if out := logs.String(); !strings.Contains(out, "retried") || !strings.Contains(out, "gave up") {
		t.Errorf("expected retry and give-up log lines, got:\n%s", out)
	}
	if strings.Contains(logs.String(), testKey) {
		t.Errorf("the API key is in the logs:\n%s", logs.String())
	}
	for _, r := range reasons {
		if strings.Contains(r, testKey) {
			t.Errorf("the API key is in a reason: %q", r)
		}
	}
}
