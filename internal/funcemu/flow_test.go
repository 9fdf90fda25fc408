package funcemu

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestTimerOutputsAreProcessed: a timer's output messages reach the queue, both instances process
// them (and the messages they fan out to), nothing is poisoned, and Drain returns.
func TestTimerOutputsAreProcessed(t *testing.T) {
	const n = 6
	root := newApp(t, "00:01:00", defaultQueues)
	h, _ := start(t, Options{AppRoot: root, Instances: 2, Env: []string{"WORK_QUEUE=work", "ECHO_TIMER_COUNT=6"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	inv, err := h.FireTimer(ctx, "Timer", TimerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if inv.Status != 200 || len(inv.Outputs["out"]) != n || inv.Outputs["out"][0] != `{"fanout":2,"n":0}` {
		t.Fatalf("timer invocation = %+v", inv)
	}
	if len(inv.Logs) != 1 || inv.Logs[0] != "timer fired" {
		t.Errorf("timer logs = %q", inv.Logs)
	}
	if err := h.Drain(ctx, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	work := byFunction(h.Invocations(), "Work")
	if len(work) != n+2*n {
		t.Fatalf("%d queue invocations, want %d (each timer message fans out to 2)", len(work), 3*n)
	}
	perInstance := map[int]int{}
	leaves := 0
	for _, w := range work {
		if w.Status != 200 || w.Err != "" || w.DequeueCount != 1 || w.End.IsZero() {
			t.Errorf("invocation %+v", w)
		}
		if strings.HasPrefix(w.Body, `{"leaf":`) {
			leaves++
		}
		perInstance[w.Instance]++
	}
	if leaves != 2*n {
		t.Errorf("%d leaf messages processed, want %d", leaves, 2*n)
	}
	if perInstance[0] == 0 || perInstance[1] == 0 {
		t.Errorf("work per instance = %v: both instances should compete", perInstance)
	}
	for _, q := range []string{"work", "work-poison"} {
		if m := h.Messages(q); len(m) != 0 {
			t.Errorf("queue %s holds %q", q, m)
		}
	}
	if len(h.InFlight(0))+len(h.InFlight(1)) != 0 {
		t.Error("invocations still in flight after Drain")
	}
}

// TestResponseRules: what the host makes of bad answers (each fails; maxDequeueCount 1 poisons it).
func TestResponseRules(t *testing.T) {
	root := newApp(t, "00:00:01", `"maxDequeueCount": 1`)
	h, _ := start(t, Options{AppRoot: root, Env: []string{"WORK_QUEUE=work"}})
	tests := []struct {
		body, wantErr string
		status        int
		minDuration   time.Duration
	}{
		{`{"fail":true}`, "500", 500, 0},
		{`{"text":true}`, "media type", 200, 0},
		{`{"null":true}`, "functionTimeout", 200, time.Second}, // the host hangs until functionTimeout
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			h.Enqueue("work", tt.body, true)
			var got Invocation
			waitFor(t, "the invocation", 10*time.Second, func() bool {
				for _, inv := range h.Invocations() {
					if inv.Body == tt.body && !inv.End.IsZero() {
						got = inv
						return true
					}
				}
				return false
			})
			if got.Status != tt.status || !strings.Contains(got.Err, tt.wantErr) {
				t.Errorf("status %d err %q, want %d and %q", got.Status, got.Err, tt.status, tt.wantErr)
			}
			if got.Logs != nil || got.Outputs != nil {
				t.Errorf("a failed invocation kept logs %q / outputs %v", got.Logs, got.Outputs)
			}
			if d := got.End.Sub(got.Start); d < tt.minDuration {
				t.Errorf("failed after %s, want at least %s", d, tt.minDuration)
			}
			waitFor(t, "poison", 5*time.Second, func() bool {
				for _, m := range h.Messages("work-poison") {
					if m == tt.body {
						return true
					}
				}
				return false
			})
		})
	}
}
