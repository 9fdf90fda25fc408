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

// TestFunctionTimeoutRestartsTheHandler: an invocation past functionTimeout fails, and the host kills
// and restarts the whole handler process (reference §2.5), so another invocation in flight on it fails
// too (its message is released and redelivered, not abandoned until a lease lapses). The timed-out
// message fails on every delivery and is poisoned after maxDequeueCount.
func TestFunctionTimeoutRestartsTheHandler(t *testing.T) {
	root := newApp(t, "00:00:01", `"batchSize": 4, "newBatchThreshold": 0, "visibilityTimeout": "00:00:00", "maxDequeueCount": 2`)
	h, _ := start(t, Options{AppRoot: root, Env: []string{"WORK_QUEUE=work"}, Lease: time.Minute})
	const slow, short = `{"sleep":"3s"}`, `{"sleep":"900ms"}`
	h.Enqueue("work", slow, true)
	time.Sleep(400 * time.Millisecond)
	h.Enqueue("work", short, true)
	waitFor(t, "the slow message poisoned and the short one done", 20*time.Second, func() bool {
		done := false
		for _, inv := range h.Invocations() {
			done = done || (inv.Body == short && inv.Err == "" && !inv.End.IsZero())
		}
		return done && len(h.Messages("work-poison")) == 1
	})
	var slowInv, shortInv []Invocation
	for _, inv := range h.Invocations() {
		switch inv.Body {
		case slow:
			slowInv = append(slowInv, inv)
		case short:
			shortInv = append(shortInv, inv)
		}
	}
	if len(slowInv) != 2 {
		t.Fatalf("slow message delivered %d times, want 2 (maxDequeueCount)", len(slowInv))
	}
	for _, inv := range slowInv {
		if !strings.Contains(inv.Err, "functionTimeout exceeded") {
			t.Errorf("slow invocation err %q, want a functionTimeout failure", inv.Err)
		}
		if d := inv.End.Sub(inv.Start); d < time.Second || d > 2500*time.Millisecond {
			t.Errorf("slow invocation failed after %s, want about the 1 s functionTimeout", d)
		}
	}
	if len(shortInv) < 2 || shortInv[0].Err == "" || shortInv[len(shortInv)-1].DequeueCount != len(shortInv) {
		t.Fatalf("short message: %+v; want its first delivery failed by the restart and a redelivery that succeeds", shortInv)
	}
	if d := shortInv[1].Start.Sub(shortInv[0].End); d > 10*time.Second {
		t.Errorf("short message redelivered %s after the restart: it was abandoned to its lease instead of released", d)
	}
}

// TestOutputOverQueueLimitFails: an output message over 64 KiB as stored (base64: 48 KiB of text)
// fails the invocation, which enqueues nothing, and its trigger message is retried.
func TestOutputOverQueueLimitFails(t *testing.T) {
	root := newApp(t, "00:00:10", `"maxDequeueCount": 1`)
	h, _ := start(t, Options{AppRoot: root, Env: []string{"WORK_QUEUE=work"}})
	ok, big := `{"big":49000}`, `{"big":49200}` // 65,336 and 65,600 bytes encoded
	h.Enqueue("work", ok, true)
	h.Enqueue("work", big, true)
	waitFor(t, "both invocations", 10*time.Second, func() bool {
		n := 0
		for _, inv := range h.Invocations() {
			if (inv.Body == ok || inv.Body == big) && !inv.End.IsZero() {
				n++
			}
		}
		return n >= 2
	})
	for _, inv := range h.Invocations() {
		switch inv.Body {
		case ok:
			if inv.Err != "" {
				t.Errorf("a 49,000-byte output failed: %s", inv.Err)
			}
		case big:
			if !strings.Contains(inv.Err, "over the queue's 65536-byte limit") || inv.Outputs != nil {
				t.Errorf("a 49,200-byte output: err %q outputs %d; want refused, nothing enqueued", inv.Err, len(inv.Outputs))
			}
		}
	}
}
