package telemetry

import (
	"math"
	"time"
)

// Known is what the status code knows about a run when it estimates its total and finish.
type Known struct {
	Now     time.Time
	Started time.Time // the run was created (planning started)

	Planned      int       // records planned so far
	PlanningDone bool      // the last page has been planned: Planned is the total
	PlanUpdated  time.Time // when planning last wrote the manifest (its latest step)
	PageSize     int       // records per planning page (a page that is not the last is full)

	PreviousTotal int // records of the job's previous completed run; 0 if none

	Done   int64   // records finished, cluster-wide
	Series []Point // the cluster's telemetry, oldest first (may be empty)
}

// Total sources, as shown next to the estimate.
const (
	TotalPlanned  = "planned"                        // planning is complete: exact
	TotalPrevious = "previous run"                   // planning goes on; the previous run had more
	TotalAtLeast  = "at least: planned + 1 page"     // planning goes on; the next page is not the last
	TotalNone     = "unknown (planning not started)" // nothing planned yet
)

// Estimate is the estimator's answer.
type Estimate struct {
	Total       int
	TotalSource string  // one of the Total* constants
	Rate        float64 // records per second
	RateSource  string  // how Rate was measured
	ETA         time.Duration
	Finite      bool // ETA is meaningful
	PlanRate    float64
}

// Estimate estimates the run's total and time left from what is known.
//
// Dataverse does not say how many records a filtered query has ($count stops at 5,000, which is one
// planning page, and RetrieveTotalRecordCount ignores the filter and may be a day old), so the total
// is: exact once planning is done; else the previous run's total if it is larger than what has been
// planned; else what has been planned plus one page (planning continues only after a full page, so
// at least one more record exists), marked as a lower bound.
//
// The rate is the run's average since its records started finishing (from the telemetry series,
// else since the run was created). An average already contains the Retry-After pauses and hand-overs
// a run meets, so a pause lengthens the ETA gradually instead of sending it to infinity, and the
// estimate is finite from the first finished records on. While planning goes on, the run cannot end
// before planning does: the ETA is at least the time planning needs for the rest at its own rate.
func (k Known) Estimate() Estimate {
	var e Estimate
	switch {
	case k.PlanningDone:
		e.Total, e.TotalSource = k.Planned, TotalPlanned
	case k.Planned == 0:
		e.Total, e.TotalSource = max(k.PreviousTotal, 0), TotalNone
		if k.PreviousTotal > 0 {
			e.TotalSource = TotalPrevious
		}
	case k.PreviousTotal > k.Planned+k.PageSize:
		e.Total, e.TotalSource = k.PreviousTotal, TotalPrevious
	default:
		e.Total, e.TotalSource = k.Planned+k.PageSize, TotalAtLeast
	}
	done := k.Done
	if e.Total > 0 && done > int64(e.Total) && !k.PlanningDone {
		e.Total = int(done) // a lower bound that was too low
	}
	e.Rate, e.RateSource = k.rate()
	if !k.PlanningDone && k.Planned > 0 {
		if el := k.PlanUpdated.Sub(k.Started).Seconds(); el > 0 {
			e.PlanRate = float64(k.Planned) / el
		}
	}
	if e.Total == 0 || e.Rate <= 0 {
		return e
	}
	left := max(float64(e.Total)-float64(done), 0) / e.Rate
	if !k.PlanningDone && e.PlanRate > 0 {
		left = max(left, float64(e.Total-k.Planned)/e.PlanRate)
	}
	if math.IsInf(left, 0) || math.IsNaN(left) || left > float64(math.MaxInt64/int64(time.Second)) {
		return e
	}
	e.ETA, e.Finite = time.Duration(left*float64(time.Second)).Round(time.Second), true
	return e
}

// rate is records per second: the average from the first telemetry point with records done (or the
// run's creation) to now.
func (k Known) rate() (float64, string) {
	from, base := k.Started, int64(0)
	source := "average since the run started"
	for i, p := range k.Series {
		if p.Records > 0 {
			if i > 0 { // else they started finishing between the run's start and the first sample
				from, base = k.Series[i-1].T, k.Series[i-1].Records
			}
			source = "average since records started finishing"
			break
		}
	}
	if from.Before(k.Started) {
		from = k.Started
	}
	el := k.Now.Sub(from).Seconds()
	if el <= 0.5 || k.Done <= base {
		return 0, source
	}
	return float64(k.Done-base) / el, source
}
