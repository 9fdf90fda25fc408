package dataverse

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"dvbulk/internal/testutil"
)

// TestRateLimitHeadersAreOnlyLogged: x-ms-ratelimit-* headers saying the budget is nearly gone
// neither pace nor pause the client (Microsoft says not to steer by them); they show up in the
// debug log only.
func TestRateLimitHeadersAreOnlyLogged(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-ms-ratelimit-burst-remaining-xrm-requests", "0")
		w.Header().Set("x-ms-ratelimit-time-remaining-xrm-requests", "0.01")
		io.WriteString(w, `{"value":[{"accountid":"00000001-0000-4000-8000-000000000001"}]}`)
	}))
	defer srv.Close()
	for _, level := range []zerolog.Level{zerolog.DebugLevel, zerolog.InfoLevel} {
		var logs testutil.SyncBuffer
		c := newTestClient(t, srv.URL, func(cfg *Config) { cfg.Logger = zerolog.New(&logs).Level(level) })
		before := c.Limit()
		for range 20 {
			if _, err := c.QueryPage(ctxT(t), Query{Table: accounts, Select: []string{"name"}}, ""); err != nil {
				t.Fatal(err)
			}
		}
		logged := strings.Contains(logs.String(), `"ratelimit_burst_remaining":"0"`) &&
			strings.Contains(logs.String(), `"ratelimit_time_remaining":"0.01"`)
		if logged != (level == zerolog.DebugLevel) {
			t.Errorf("level %s: headers logged %v", level, logged)
		}
		if st := c.Stats(); c.Limit() < before || st.Requests != 20 || c.thr.remaining(context.Background()) > 0 {
			t.Errorf("level %s: limit %d (was %d), %d requests, pause %s: the headers steered the client",
				level, c.Limit(), before, st.Requests, c.thr.remaining(context.Background()))
		}
	}
}
