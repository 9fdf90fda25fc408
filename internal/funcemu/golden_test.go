package funcemu

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	utcNowRE = regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z"`)
	guidRE   = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`)
	offsetRE = regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"`)
)

// normalize replaces the values that change per run: sys.UtcNow, GUIDs and, for queue payloads,
// the message's times.
func normalize(body string, times bool) string {
	body = utcNowRE.ReplaceAllString(body, `"<NOW>"`)
	body = guidRE.ReplaceAllString(body, `<GUID>`)
	if times {
		body = offsetRE.ReplaceAllString(body, `"<T>"`)
	}
	return body
}

// TestRequestBodiesAreTheHosts checks, byte for byte, what the handler receives (reference §1.2-1.4,
// §7): Newtonsoft shapes, double encoding, Metadata shadowing, no HTML escaping, and the headers.
func TestRequestBodiesAreTheHosts(t *testing.T) {
	const lease = 3 * time.Second
	root := newApp(t, "00:01:00", defaultQueues)
	h, l := start(t, Options{AppRoot: root, Lease: lease, Env: []string{"WORK_QUEUE=work"}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	next := time.Date(2024, 10, 24, 14, 30, 0, 0, time.UTC)

	t.Run("timer", func(t *testing.T) {
		tests := []struct {
			opts TimerOptions
			want string
		}{
			{TimerOptions{Next: next},
				`{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"2024-10-23T14:30:00+00:00","Next":"2024-10-24T14:30:00+00:00","LastUpdated":"2024-10-23T14:30:00+00:00"},"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"Timer","UtcNow":"<NOW>","RandGuid":"<GUID>"}}}`},
			{TimerOptions{Next: next, NullStatus: true, PastDue: true},
				`{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":true}},"Metadata":{"sys":{"MethodName":"Timer","UtcNow":"<NOW>","RandGuid":"<GUID>"}}}`},
		}
		for i, tt := range tests {
			if _, err := h.FireTimer(ctx, "Timer", tt.opts); err != nil {
				t.Fatal(err)
			}
			var bodies []string // the output line may trail the response
			waitFor(t, "the logged body", 5*time.Second, func() bool { bodies = l.bodies(t, "Timer"); return len(bodies) >= i+1 })
			if len(bodies) != i+1 {
				t.Fatalf("%d timer bodies logged, want %d", len(bodies), i+1)
			}
			if got := normalize(bodies[i], false); got != tt.want {
				t.Errorf("timer body\n got %s\nwant %s", got, tt.want)
			}
		}
	})

	t.Run("queue", func(t *testing.T) {
		const msg = `{"id":"shadow","tag":"<a&b>","n":1,"ok":true,"nested":{"x": [1, 2]},"arr":[1],"nul":null,"fooTrigger":"x"}`
		const want = `{"Data":{"item":"\"{\\\"id\\\":\\\"shadow\\\",\\\"tag\\\":\\\"<a&b>\\\",\\\"n\\\":1,\\\"ok\\\":true,\\\"nested\\\":{\\\"x\\\": [1, 2]},\\\"arr\\\":[1],\\\"nul\\\":null,\\\"fooTrigger\\\":\\\"x\\\"}\""},` +
			`"Metadata":{"DequeueCount":"1","ExpirationTime":"<T>","Id":"\"shadow\"","InsertionTime":"<T>","NextVisibleTime":"<T>","PopReceipt":"\"<GUID>\"",` +
			`"sys":{"MethodName":"Work","UtcNow":"<NOW>","RandGuid":"<GUID>"},"tag":"\"<a&b>\"","n":"\"1\"","ok":"\"True\"","nested":{"x":[1,2]}}}`
		h.Enqueue("work", msg, true)
		if err := h.Drain(ctx, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		bodies := l.bodies(t, "Work")
		if len(bodies) != 1 {
			t.Fatalf("%d queue bodies, want 1", len(bodies))
		}
		if got := normalize(bodies[0], true); got != want {
			t.Errorf("queue body\n got %s\nwant %s", got, want)
		}
		var p struct{ Metadata map[string]json.RawMessage }
		if err := json.Unmarshal([]byte(bodies[0]), &p); err != nil {
			t.Fatal(err)
		}
		var ins, vis string
		_ = json.Unmarshal(p.Metadata["InsertionTime"], &ins)
		_ = json.Unmarshal(p.Metadata["NextVisibleTime"], &vis)
		ti, _ := time.Parse(time.RFC3339, ins)
		tv, _ := time.Parse(time.RFC3339, vis)
		if d := tv.Sub(ti); d < lease-time.Second || d > lease+time.Second {
			t.Errorf("NextVisibleTime - InsertionTime = %s, want the lease %s", d, lease)
		}
	})

	t.Run("headers", func(t *testing.T) {
		invs := h.Invocations()
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, inv := range invs {
			want := `HDR ` + inv.Function + ` ct="application/json; charset=utf-8" hv="4.1037.0.0" ua="Azure-Functions-Host/4.1037.0.0" id=` + inv.ID
			found := false
			for _, line := range l.all {
				found = found || line == want
			}
			if !found || !guidRE.MatchString(inv.ID) {
				t.Errorf("no header line %q", want)
			}
		}
		if !strings.Contains(strings.Join(l.all, "\n"), "DONE Work") {
			t.Error("queue invocation did not complete")
		}
	})
}
