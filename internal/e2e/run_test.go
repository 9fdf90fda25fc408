package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"dvbulk/internal/dvsim"
	"dvbulk/internal/job"
)

// TestTimerToQueueTwoInstances: the timer's outputs become messages, every message is processed by
// two instances, nothing lands in the poison queue, and the run completes.
func TestTimerToQueueTwoInstances(t *testing.T) {
	r := newRig(t, rigOptions{accounts: 1000, inactive: 100, instances: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sum := r.runTimer(ctx)
	checkCounts(t, sum, 1000)
	r.checkEnriched()
	if p := r.host.Messages("dvbulk-chunks-poison"); len(p) != 0 {
		t.Errorf("poison queue holds %d messages", len(p))
	}
	used := map[int]bool{}
	for _, inv := range r.host.Invocations() {
		if inv.Function == "ChunkQueue" {
			used[inv.Instance] = true
		}
	}
	if len(used) != 2 {
		t.Errorf("chunk invocations ran on %d instances, want both", len(used))
	}
}

// TestNightlyRun20k is issue 5's acceptance run: 20,000 active accounts through three instances.
func TestNightlyRun20k(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	r := newRig(t, rigOptions{accounts: 20000, inactive: 2000, instances: 3, env: []string{"DVBULK_CHUNK_SIZE=500", "DVBULK_LOG_LEVEL=info"}})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sum := r.runTimer(ctx)
	checkCounts(t, sum, 20000)
	r.checkEnriched()
	if sum.Outcomes["updated"] != 16000 || sum.Outcomes["unchanged"] != 4000 {
		t.Errorf("outcomes %v, want 16000 updated and 4000 unchanged", sum.Outcomes)
	}
	if c := r.dv.Counters(); c.ByKind["updateMultiple"] == 0 {
		t.Errorf("no UpdateMultiple requests: %v", c.ByKind)
	}
}

// TestRecalculationAndDryRun runs the mass-recalculation example, and the enrichment as a dry run.
func TestRecalculationAndDryRun(t *testing.T) {
	t.Run("recalculate", func(t *testing.T) {
		r := newRig(t, rigOptions{accounts: 1500, inactive: 100, job: "recalculate-tier"})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		sum := r.runTimer(ctx)
		checkCounts(t, sum, 1500)
		for i := 0; i < 1500; i++ {
			row, _ := r.dv.Get(dvsim.AccountID(i))
			want := tier(row)
			if row["description"] != want {
				t.Fatalf("account %d: description %v, want %s (row %v)", i, row["description"], want, row)
			}
		}
		if r.dv.Counters().Creates != 0 {
			t.Error("records created")
		}
	})
	t.Run("dry run", func(t *testing.T) {
		r := newRig(t, rigOptions{accounts: 800, inactive: 50, env: []string{"DVBULK_DRY_RUN=true"}})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		sum := r.runTimer(ctx)
		checkCounts(t, sum, 800)
		if c := r.dv.Counters(); c.Writes != 0 {
			t.Errorf("dry run wrote %d records", c.Writes)
		}
		if !sum.DryRun || sum.Outcomes["would-update"] != 640 || len(sum.Changes) != 640 {
			t.Errorf("dry run summary: dryRun=%v outcomes %v changes %d; want 640 would-update with their changes", sum.DryRun, sum.Outcomes, len(sum.Changes))
		}
	})
}

func tier(row map[string]any) string {
	rev, _ := row["revenue"].(float64)
	emp, _ := row["numberofemployees"].(int)
	switch {
	case rev >= 1000000:
		return "Tier A"
	case emp >= 100:
		return "Tier B"
	}
	return "Tier C"
}

// TestStartMessageAndBadMessages: an ad-hoc start message dropped on the queue runs the job; malformed
// messages are dead-lettered at once with their reason, not retried five times.
func TestStartMessageAndBadMessages(t *testing.T) {
	r := newRig(t, rigOptions{accounts: 300, inactive: 10})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	go func() { _ = r.host.Run(ctx) }()
	bad := []string{
		"hello world",
		`{"v":9,"kind":"start","job":"nightly-enrichment"}`,
		`{"v":1,"kind":"start","job":"no-such-job"}`,
		`{"v":1,"kind":"chunk","job":"nightly-enrichment","run":"r","seq":1,"ids":["1')/x"]}`,
	}
	for _, b := range bad {
		r.host.Enqueue("dvbulk-chunks", b, true)
	}
	r.host.Enqueue("dvbulk-chunks", `{"v":1,"kind":"start","job":"nightly-enrichment","run":"adhoc-1"}`, true)
	// The Go SDK trap: a message that is not base64 never reaches the handler.
	r.host.Enqueue("dvbulk-chunks", `{"v":1,"kind":"start","job":"nightly-enrichment"}`, false)
	sum := r.waitSummary(ctx, "adhoc-1")
	checkCounts(t, sum, 300)
	if err := r.host.Drain(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	dead := r.host.Messages("dvbulk-deadletter")
	if len(dead) != len(bad) {
		t.Fatalf("dead letters %d, want %d: %v", len(dead), len(bad), dead)
	}
	for _, d := range dead {
		var dl job.DeadLetter
		if err := json.Unmarshal([]byte(d), &dl); err != nil || dl.Reason == "" {
			t.Errorf("dead letter %q has no reason", d)
		}
	}
	for _, inv := range r.host.Invocations() {
		if inv.DequeueCount > 1 {
			t.Errorf("message %s delivered %d times", inv.MessageID, inv.DequeueCount)
		}
	}
	if p := r.host.Messages("dvbulk-chunks-poison"); len(p) != 1 {
		t.Errorf("poison queue %v, want just the non-base64 message", p)
	}
}
