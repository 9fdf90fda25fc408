package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/report"
	"dvbulk/internal/telemetry"
)

// TestTelemetryAndReportOnBlobStorage: under the host emulator with blob checkpoints (Azurite), every
// instance records telemetry whose counts add up to the run's records, the completing instance writes
// runs/<run>/report.html with the summary's totals, and the live status reads them back.
func TestTelemetryAndReportOnBlobStorage(t *testing.T) {
	r := newRig(t, rigOptions{accounts: 1000, inactive: 50, instances: 2, env: []string{"DVBULK_TELEMETRY_INTERVAL=1s"}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stop := r.serve(ctx)
	defer stop()
	run := r.planOnly(ctx)
	sum := r.waitSummary(ctx, run)
	checkCounts(t, sum, 1000)

	var html string
	for html == "" {
		data, _, err := r.store.Get(ctx, report.Name(run))
		if err == nil {
			html = string(data)
		} else if !errors.Is(err, checkpoint.ErrNotFound) || ctx.Err() != nil {
			t.Fatalf("no %s: %v", report.Name(run), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(html, `id="total-records" data-value="1000"`) || !strings.Contains(html, `id="chart-throughput"`) {
		t.Errorf("report lacks the totals or the charts")
	}
	// The instances keep sampling a run for a while after its last record: their latest samples
	// come to count every record exactly once.
	for {
		docs, err := telemetry.Read(ctx, r.store, run)
		if err != nil {
			t.Fatal(err)
		}
		var done int64
		for _, d := range docs {
			done += d.Last().Records()
		}
		if done == int64(sum.Records) {
			if len(docs) == 0 || len(docs) > 2 {
				t.Fatalf("%d telemetry documents for 2 instances", len(docs))
			}
			break
		}
		if done > int64(sum.Records) || ctx.Err() != nil {
			t.Fatalf("telemetry counts %d records, the summary %d", done, sum.Records)
		}
		time.Sleep(200 * time.Millisecond)
	}
	l, err := report.ReadLive(ctx, r.store, run, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if line := l.Line(); !strings.Contains(line, "done  1000/1000 records") || !strings.Contains(line, "ETA done") {
		t.Errorf("live line: %s", line)
	}
}
