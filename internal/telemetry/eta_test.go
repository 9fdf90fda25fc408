package telemetry

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)

// series makes a cluster series sampled every step from t0+offset: done(i) records at sample i.
func series(n int, step time.Duration, done func(i int) int64) []Point {
	var out []Point
	for i := 0; i < n; i++ {
		out = append(out, Point{T: t0.Add(time.Duration(i+1) * step), Records: done(i)})
	}
	return out
}

func TestEstimateSteady(t *testing.T) {
	// 100 records/s from the first sample on; planning finished with 10,000 records.
	s := series(7, 5*time.Second, func(i int) int64 { return int64(i) * 500 })
	last := s[len(s)-1]
	k := Known{Now: last.T, Started: t0, Planned: 10000, PlanningDone: true, PageSize: 5000, Done: last.Records, Series: s}
	e := k.Estimate()
	if e.Total != 10000 || e.TotalSource != TotalPlanned {
		t.Fatalf("total %d (%s), want 10000 (planned)", e.Total, e.TotalSource)
	}
	if !e.Finite || e.Rate < 99 || e.Rate > 101 {
		t.Fatalf("rate %.1f finite %v, want 100 rec/s", e.Rate, e.Finite)
	}
	if want := 70 * time.Second; e.ETA != want {
		t.Fatalf("ETA %s, want %s (7,000 left at 100/s)", e.ETA, want)
	}
}

func TestEstimateRetryAfterPause(t *testing.T) {
	// 100 records/s for 30 s, then a 30 s Retry-After pause with nothing finishing, then 100/s again.
	done := func(sec int) int64 {
		switch {
		case sec <= 30:
			return int64(sec) * 100
		case sec <= 60:
			return 3000
		default:
			return 3000 + int64(sec-60)*100
		}
	}
	var s []Point
	prev := time.Duration(0)
	for sec := 1; sec <= 90; sec++ {
		s = append(s, Point{T: t0.Add(time.Duration(sec) * time.Second), Records: done(sec)})
		k := Known{Now: s[len(s)-1].T, Started: t0, Planned: 12000, PlanningDone: true, PageSize: 5000, Done: done(sec), Series: s}
		e := k.Estimate()
		if !e.Finite {
			t.Fatalf("at %ds: no ETA (rate %.1f)", sec, e.Rate)
		}
		if sec > 30 && sec <= 60 {
			// During the pause the ETA grows with the pause, never jumps to infinity, and stays
			// within what the average since the start can explain.
			if e.ETA < prev {
				t.Fatalf("at %ds: ETA fell to %s from %s while nothing finished", sec, e.ETA, prev)
			}
			if max := time.Duration(9000/(3000/float64(sec))) * time.Second; e.ETA > max+time.Second {
				t.Fatalf("at %ds: ETA %s beyond %s", sec, e.ETA, max)
			}
		}
		prev = e.ETA
	}
	// Afterwards: 6,000 done in 90 s, 6,000 left at 66.7/s = 90 s (a run that meets pauses at this
	// rate keeps meeting them).
	k := Known{Now: s[len(s)-1].T, Started: t0, Planned: 12000, PlanningDone: true, Done: 6000, Series: s}
	if e := k.Estimate(); e.ETA != 90*time.Second {
		t.Fatalf("ETA after the pause %s, want 1m30s", e.ETA)
	}
}

func TestEstimatePlanningGoesOn(t *testing.T) {
	// One 5,000-record page planned in the first 2 s; 300 records done by 5 s.
	s := series(1, 5*time.Second, func(int) int64 { return 300 })
	base := Known{Now: t0.Add(5 * time.Second), Started: t0, Planned: 5000, PlanUpdated: t0.Add(2 * time.Second), PageSize: 5000, Done: 300, Series: s}

	cases := []struct {
		name       string
		previous   int
		wantTotal  int
		wantSource string
	}{
		{"no previous run", 0, 10000, TotalAtLeast},
		{"previous run larger", 50000, 50000, TotalPrevious},
		{"previous run smaller than planned + a page", 7000, 10000, TotalAtLeast},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := base
			k.PreviousTotal = c.previous
			e := k.Estimate()
			if e.Total != c.wantTotal || e.TotalSource != c.wantSource {
				t.Fatalf("total %d (%s), want %d (%s)", e.Total, e.TotalSource, c.wantTotal, c.wantSource)
			}
			if !e.Finite {
				t.Fatal("no ETA once a page was planned and records finished")
			}
			// Planning runs at 2,500/s; processing so far at 300 per 5 s = 60/s (first point at 5 s,
			// counted from the run's start): the processing bound is the larger.
			proc := time.Duration(float64(c.wantTotal-300) / 60 * float64(time.Second)).Round(time.Second)
			if e.ETA != proc {
				t.Fatalf("ETA %s, want %s", e.ETA, proc)
			}
		})
	}
	t.Run("planning slower than processing", func(t *testing.T) {
		// Records started finishing after 5 s and then went at 1,000/s; planning averaged 600/s.
		k := base
		k.Now = t0.Add(10 * time.Second)
		k.Planned, k.PlanUpdated = 6000, k.Now
		k.PreviousTotal = 1_000_000
		k.Done = 5000
		k.Series = []Point{{T: t0.Add(5 * time.Second)}, {T: k.Now, Records: 5000}}
		e := k.Estimate()
		// Processing would need (1e6-5000)/1000 = 995 s; planning needs (1e6-6000)/600 = 1657 s.
		if want := 1657 * time.Second; e.ETA != want {
			t.Fatalf("ETA %s, want %s (planning binds)", e.ETA, want)
		}
	})
}

func TestEstimateNothingYet(t *testing.T) {
	for _, k := range []Known{
		{Now: t0.Add(time.Second), Started: t0},                                                 // nothing planned
		{Now: t0.Add(3 * time.Second), Started: t0, Planned: 5000, PageSize: 5000},              // planned, nothing done
		{Now: t0.Add(3 * time.Second), Started: t0, Planned: 5000, PlanningDone: true, Done: 0}, // done nothing
	} {
		if e := k.Estimate(); e.Finite {
			t.Errorf("%+v: finite ETA %s with no record finished", k, e.ETA)
		}
	}
	k := Known{Now: t0.Add(3 * time.Second), Started: t0}
	if e := k.Estimate(); e.TotalSource != TotalNone {
		t.Errorf("source %q, want %q", e.TotalSource, TotalNone)
	}
}

func TestEstimateLowerBoundOvertaken(t *testing.T) {
	// Records done beyond planned + 1 page (planning wrote its manifest late): the total is never
	// shown below what is done.
	k := Known{Now: t0.Add(10 * time.Second), Started: t0, Planned: 5000, PageSize: 1000, Done: 7000}
	if e := k.Estimate(); e.Total != 7000 {
		t.Fatalf("total %d, want 7000", e.Total)
	}
}
