package telemetry

import (
	"context"
	"sync"
	"testing"
	"time"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/testutil"
)

type fakeGauges struct {
	mu sync.Mutex
	g  Gauges
}

func (f *fakeGauges) get() Gauges {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.g
	g.DVThrottled = map[string]int64{}
	for k, v := range f.g.DVThrottled {
		g.DVThrottled[k] = v
	}
	return g
}

func newRecorder(st checkpoint.Store, instance string, c *testutil.Clock, g *fakeGauges) *Recorder {
	return &Recorder{Store: st, Instance: instance, Interval: 5 * time.Second, Now: c.Now, Gauges: g.get,
		Settings: map[string]string{"DVBULK_DATAVERSE_CONCURRENCY": "12"}}
}

func TestRecorderCountsFromItsBaseline(t *testing.T) {
	ctx := context.Background()
	st := checkpoint.NewMem()
	c := testutil.NewClock(t0)
	// The process had already sent 100 Dataverse requests (an earlier run) when this run began.
	g := &fakeGauges{g: Gauges{DVRequests: 100, DVThrottled: map[string]int64{"0x80072322": 2}, EnRequests: 40}}
	r := newRecorder(st, "host-1", c, g)
	for i := 0; i < 30; i++ {
		r.Outcome("run-a", "updated")
	}
	r.Outcome("run-a", "failed")
	r.ChunkDone("run-a", 3, 31, 1500*time.Millisecond)
	g.mu.Lock()
	g.g = Gauges{DVRequests: 110, DVThrottled: map[string]int64{"0x80072322": 3, "0x80072321": 1}, DVInFlight: 7, DVLimit: 12, DVHint: 48,
		EnRequests: 52, EnThrottled: 1, EnInFlight: 4, EnLimit: 8}
	g.mu.Unlock()
	c.Add(5 * time.Second)
	if err := r.Flush(ctx, "run-a"); err != nil {
		t.Fatal(err)
	}
	docs, err := Read(ctx, st, "run-a")
	if err != nil || len(docs) != 1 {
		t.Fatalf("Read: %d docs, %v", len(docs), err)
	}
	d := docs[0]
	s := d.Last()
	if s.Done["updated"] != 30 || s.Done["failed"] != 1 || s.Records() != 31 {
		t.Errorf("done %v", s.Done)
	}
	if s.DVRequests != 10 || s.DVThrottled["0x80072322"] != 1 || s.DVThrottled["0x80072321"] != 1 || s.EnRequests != 12 || s.EnThrottled != 1 {
		t.Errorf("counters not relative to the run's first sight: %+v", s)
	}
	if s.DVInFlight != 7 || s.DVLimit != 12 || s.DVHint != 48 || s.EnInFlight != 4 || s.EnLimit != 8 {
		t.Errorf("gauges %+v", s)
	}
	if len(d.Slowest) != 1 || d.Slowest[0] != (ChunkTime{Seq: 3, Records: 31, Milli: 1500}) {
		t.Errorf("slowest %+v", d.Slowest)
	}
	if d.Settings["DVBULK_DATAVERSE_CONCURRENCY"] != "12" || d.Instance != "host-1" {
		t.Errorf("doc %+v", d)
	}
	if runs, _ := Read(ctx, st, "run-b"); len(runs) != 0 {
		t.Errorf("a run never touched has telemetry: %v", runs)
	}
}

func TestRecorderForgetsAnIdleRunAndContinuesItsCounters(t *testing.T) {
	ctx := context.Background()
	st := checkpoint.NewMem()
	c := testutil.NewClock(t0)
	g := &fakeGauges{}
	r := newRecorder(st, "host-1", c, g)
	r.Outcome("run-a", "updated")
	c.Add(2 * time.Minute)
	if err := r.Flush(ctx, "run-a"); err != nil { // idle for longer than forgetAfter: last sample
		t.Fatal(err)
	}
	r.mu.Lock()
	n := len(r.runs)
	r.mu.Unlock()
	if n != 0 {
		t.Fatalf("idle run still sampled")
	}
	// The run comes back (a resumed chunk), and so does a restarted process with the same id.
	for _, rec := range []*Recorder{r, newRecorder(st, "host-1", c, g)} {
		rec.Outcome("run-a", "updated")
		c.Add(time.Second)
		if err := rec.Flush(ctx, "run-a"); err != nil {
			t.Fatal(err)
		}
	}
	docs, _ := Read(ctx, st, "run-a")
	if got := docs[0].Last().Done["updated"]; got != 3 {
		t.Fatalf("updated %d after a forget and a restart, want 3", got)
	}
	// The start sample of the first meeting, then one per flush; meeting the run again continues the
	// stored series instead of starting a second one at zero.
	if len(docs[0].Samples) != 4 {
		t.Fatalf("%d samples, want 4 (none lost)", len(docs[0].Samples))
	}
	for i, s := range docs[0].Samples[1:] {
		if s.Records() < docs[0].Samples[i].Records() {
			t.Fatalf("sample %d goes back from %d to %d records", i+1, docs[0].Samples[i].Records(), s.Records())
		}
	}
}

func TestDocThinningKeepsCountsAndBounds(t *testing.T) {
	var d Doc
	for i := 1; i <= 5*MaxSamples; i++ {
		d.add(Sample{T: int64(i) * 5000, Done: map[string]int64{"updated": int64(i)}})
		if len(d.Samples) > MaxSamples {
			t.Fatalf("%d samples kept, max %d", len(d.Samples), MaxSamples)
		}
	}
	if first, last := d.Samples[0], d.Last(); first.T != 5000 || last.Done["updated"] != 5*MaxSamples {
		t.Fatalf("first %v, last %v: the ends must stay", first, last)
	}
	for i := 1; i < len(d.Samples); i++ {
		if d.Samples[i].T <= d.Samples[i-1].T {
			t.Fatalf("samples out of order at %d", i)
		}
	}
}

func TestClusterSumsInstancesAndCountsTheLiving(t *testing.T) {
	a := &Doc{Instance: "a", Interval: 5, Samples: []Sample{
		{T: 5000, Done: map[string]int64{"updated": 10}, DVInFlight: 3, DVLimit: 12, DVHint: 48},
		{T: 10000, Done: map[string]int64{"updated": 30}, DVInFlight: 5, DVLimit: 12, DVHint: 48},
	}}
	b := &Doc{Instance: "b", Interval: 5, Samples: []Sample{
		{T: 7000, Done: map[string]int64{"failed": 1, "updated": 5}, DVThrottled: map[string]int64{"0x80072326": 2}, DVInFlight: 2, DVLimit: 6, DVHint: 40},
	}}
	pts := Cluster([]*Doc{a, b})
	if len(pts) != 3 {
		t.Fatalf("%d points, want 3", len(pts))
	}
	p := pts[2] // t=10s: a's second sample, b's only one
	if p.Records != 36 || p.Done["updated"] != 35 || p.Done["failed"] != 1 || p.ThrottledTotal() != 2 {
		t.Fatalf("point %+v", p)
	}
	if p.Alive != 2 || p.DVInFlight != 7 || p.DVLimit != 18 || p.DVHint != 48 {
		t.Fatalf("gauges %+v", p)
	}
	// Long after, b has stopped sampling: its counts stay, its gauges do not.
	late := At([]*Doc{a, b}, time.UnixMilli(7000).Add(time.Minute), nil)
	if late.Records != 36 || late.Alive != 0 || late.DVInFlight != 0 {
		t.Fatalf("late point %+v", late)
	}
}

func TestRecorderRunStopsAndWritesALastSample(t *testing.T) {
	st := checkpoint.NewMem()
	r := &Recorder{Store: st, Instance: "i", Interval: time.Hour}
	r.Outcome("run-a", "updated")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	docs, err := Read(context.Background(), st, "run-a")
	if err != nil || len(docs) != 1 || docs[0].Last().Done["updated"] != 1 {
		t.Fatalf("no last sample written at stop: %v %v", docs, err)
	}
}

// TestAShortRunHasASeries: a run that finishes inside one sampling interval still has a series with a
// start (nothing done) and an end, so the report can draw its rate (the report's charts need two
// samples; the browser test once met a run with only one).
func TestAShortRunHasASeries(t *testing.T) {
	ctx := context.Background()
	st := checkpoint.NewMem()
	c := testutil.NewClock(t0)
	r := newRecorder(st, "host-1", c, &fakeGauges{})
	r.Outcome("run-a", "updated")
	c.Add(300 * time.Millisecond)
	if err := r.Flush(ctx, "run-a"); err != nil {
		t.Fatal(err)
	}
	docs, err := Read(ctx, st, "run-a")
	if err != nil || len(docs) != 1 {
		t.Fatalf("read: %v, %d docs", err, len(docs))
	}
	s := docs[0].Samples
	if len(s) != 2 || s[0].Records() != 0 || s[1].Records() != 1 || !s[1].Time().After(s[0].Time()) {
		t.Fatalf("samples %+v, want a start with 0 records and an end with 1", s)
	}
}
