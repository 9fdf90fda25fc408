package telemetry

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// demoRun is a recorded run: `make demo` (50,000 accounts, 3 instances, samples every second).
var demoRun = struct {
	dir               string
	started, finished time.Time
	records           int
}{"testdata/demo-50k", time.Date(2026, 12, 2, 17, 32, 6, 414867244, time.UTC), time.Date(2026, 12, 2, 17, 32, 19, 164162240, time.UTC), 50000}

func loadDocs(t *testing.T, dir string) []*Doc {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded telemetry in %s: %v", dir, err)
	}
	var docs []*Doc
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d Doc
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		docs = append(docs, &d)
	}
	return docs
}

// TestEstimateOnARecordedRun replays a recorded run: from the first finished records on, the ETA is
// always finite, and from 5 s on (of 12.7 s) it is within 4 s above and 2 s below the time the run
// really took to finish: the ramp-up (planning's first pages, the adaptive limits growing) makes the
// early average pessimistic, 44 s at 2 s in.
func TestEstimateOnARecordedRun(t *testing.T) {
	docs := loadDocs(t, demoRun.dir)
	pts := Cluster(docs)
	if last := pts[len(pts)-1]; last.Records != int64(demoRun.records) || last.Alive != 3 {
		t.Fatalf("recorded series ends at %d records, %d instances; want %d, 3", last.Records, last.Alive, demoRun.records)
	}
	seen := 0
	for i, p := range pts {
		if p.Records == 0 || !p.T.Before(demoRun.finished) {
			continue
		}
		k := Known{Now: p.T, Started: demoRun.started, Planned: demoRun.records, PlanningDone: true, Done: p.Records, Series: pts[:i+1]}
		e := k.Estimate()
		if !e.Finite {
			t.Fatalf("at %s: no ETA with %d records done", p.T.Sub(demoRun.started), p.Records)
		}
		actual := demoRun.finished.Sub(p.T)
		off := e.ETA - actual
		if p.T.Sub(demoRun.started) >= 5*time.Second && (off > 4*time.Second || off < -2*time.Second) {
			t.Errorf("at %s: ETA %s, the run took %s more", p.T.Sub(demoRun.started), e.ETA, actual)
		}
		seen++
	}
	if seen < 5 {
		t.Fatalf("only %d points with records", seen)
	}
}
