package funcemu

import (
	"context"
	"strings"
	"testing"
	"time"

	"dvbulk/internal/testutil"
)

// TestFailingMessageIsPoisoned: a failing message is delivered exactly maxDequeueCount times, each
// retry only after visibilityTimeout, then lands in <queue>-poison.
func TestFailingMessageIsPoisoned(t *testing.T) {
	const visibility = 700 * time.Millisecond
	root := newApp(t, "00:01:00", `"maxDequeueCount": 3, "visibilityTimeout": "00:00:00.7"`)
	out := &testutil.SyncBuffer{}
	h, _ := start(t, Options{AppRoot: root, Instances: 2, Env: []string{"WORK_QUEUE=work"}, Output: out})
	h.Enqueue("work", `{"fail":true}`, true)
	waitFor(t, "the poison queue", 15*time.Second, func() bool { return len(h.Messages("work-poison")) == 1 })
	if got := h.Messages("work-poison"); got[0] != `{"fail":true}` {
		t.Errorf("poison body %q", got[0])
	}
	if got := h.Messages("work"); len(got) != 0 {
		t.Errorf("work queue still holds %q", got)
	}
	time.Sleep(2 * visibility) // no further delivery may happen
	// Poisoned on completing the 3rd failure (DequeueCount >= maxDequeueCount), not on a 4th dequeue.
	if log := out.String(); !strings.Contains(log, "[host] Message ") || !strings.Contains(log, " failed 3 times: moved to work-poison") {
		t.Errorf("host log does not show the poisoning on the third failure:\n%s", log)
	}
	invs := byFunction(h.Invocations(), "Work")
	if len(invs) != 3 {
		t.Fatalf("%d deliveries, want maxDequeueCount = 3", len(invs))
	}
	for i, inv := range invs {
		if inv.DequeueCount != i+1 || inv.Status != 500 || inv.Err == "" || inv.MessageID != invs[0].MessageID {
			t.Errorf("delivery %d: %+v", i, inv)
		}
		if i > 0 {
			if gap := inv.Start.Sub(invs[i-1].End); gap < visibility-50*time.Millisecond {
				t.Errorf("retry %d came %s after the failure, want >= visibilityTimeout %s", i, gap, visibility)
			}
		}
	}
}

// TestMessageEncoding: under base64 encoding a raw (azqueue-style) message goes straight to poison
// without an invocation; under "none" it is delivered.
func TestMessageEncoding(t *testing.T) {
	tests := []struct {
		encoding    string
		wantInvoked bool
	}{
		{"base64", false},
		{"none", true},
	}
	for _, tt := range tests {
		t.Run(tt.encoding, func(t *testing.T) {
			root := newApp(t, "00:01:00", `"messageEncoding": "`+tt.encoding+`"`)
			h, _ := start(t, Options{AppRoot: root, Env: []string{"WORK_QUEUE=work"}})
			const raw = `{"plain":"not base64"}`
			h.Enqueue("work", raw, false)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := h.Drain(ctx, 300*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			invs := h.Invocations()
			poison := h.Messages("work-poison")
			if tt.wantInvoked {
				if len(invs) != 1 || invs[0].Body != raw || invs[0].Status != 200 || len(poison) != 0 {
					t.Errorf("invocations %+v, poison %q", invs, poison)
				}
				return
			}
			if len(invs) != 0 {
				t.Errorf("%d invocations of an undecodable message, want 0", len(invs))
			}
			if len(poison) != 1 || poison[0] != raw {
				t.Errorf("poison = %q, want [%q]", poison, raw)
			}
		})
	}
}
