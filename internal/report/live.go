// Package report shows a run to people: the live status line (dvbulk status --watch and the demo),
// the self-contained HTML run report, and the failed records as CSV. It reads only the checkpoint
// store (manifest, progress, summary, chunk checkpoints and the instances' telemetry).
package report

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/job"
	"dvbulk/internal/pipeline"
	"dvbulk/internal/telemetry"
)

// Live is a run's state for the status line and `dvbulk status --watch --json`.
type Live struct {
	Run          string           `json:"run"`
	Job          string           `json:"job"`
	State        string           `json:"state"`
	Elapsed      float64          `json:"elapsedSeconds"`
	Planned      int              `json:"planned"`
	PlanningDone bool             `json:"planningDone"`
	Done         int64            `json:"done"`
	Outcomes     map[string]int64 `json:"outcomes"`
	Failed       int64            `json:"failed"`

	Total       int     `json:"total"`
	TotalSource string  `json:"totalSource"`
	Rate        float64 `json:"recordsPerSecond"`
	ETASeconds  float64 `json:"etaSeconds,omitempty"`
	ETAKnown    bool    `json:"etaKnown"`

	Throttled   map[string]int64 `json:"throttled,omitempty"` // Dataverse 429s by limit
	EnThrottled int64            `json:"enrichmentThrottled"`
	DVInFlight  int              `json:"dataverseInFlight"`
	DVLimit     int              `json:"dataverseLimit"` // sum of the instances' adaptive limits
	DVHint      int              `json:"dataverseHint"`
	EnInFlight  int              `json:"enrichmentInFlight"`
	EnLimit     int              `json:"enrichmentLimit"`
	Alive       int              `json:"instancesAlive"`
	Instances   int              `json:"instances"` // that ever sampled this run
	Telemetry   bool             `json:"telemetry"` // samples exist (else only the finished chunks' counts are known)

	Summary *job.Summary `json:"summary,omitempty"`
}

// PreviousTotal is the number of records the latest completed run of job, other than run, processed:
// the estimator's guess of the total while planning goes on. 0 if there is none.
func PreviousTotal(ctx context.Context, st checkpoint.Store, jobName, run string) (int, error) {
	runs, err := job.ListRuns(ctx, st)
	if err != nil {
		return 0, err
	}
	sort.Sort(sort.Reverse(sort.StringSlice(runs)))
	looked := 0
	for _, r := range runs {
		if looked == 20 { // an unfinished streak this long: give up rather than read the whole store
			break
		}
		// Run ids start with the job's name and sort by time within a job.
		if r == run || !strings.HasPrefix(r, jobName+"-") || strings.Contains(r, "-rerun-") {
			continue
		}
		looked++
		s, err := job.ReadStatus(ctx, st, r)
		if errors.Is(err, job.ErrNoRun) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if s.Summary != nil && s.Manifest.Job == jobName && s.Manifest.RerunOf == "" {
			return s.Summary.Planned, nil
		}
	}
	return 0, nil
}

// ReadLive reads a run's state now. previous is the previous run's total (PreviousTotal), read once
// by a caller that refreshes.
func ReadLive(ctx context.Context, st checkpoint.Store, run string, previous int, now time.Time) (*Live, error) {
	s, err := job.ReadStatus(ctx, st, run)
	if err != nil {
		return nil, err
	}
	docs, err := telemetry.Read(ctx, st, run)
	if err != nil {
		return nil, err
	}
	return live(s, docs, previous, now), nil
}

func live(s *job.Status, docs []*telemetry.Doc, previous int, now time.Time) *Live {
	m := s.Manifest
	l := &Live{Run: m.Run, Job: m.Job, State: string(m.State), Planned: m.PlannedRecords, PlanningDone: m.PlanningDone,
		Outcomes: map[string]int64{}, Instances: len(docs), Telemetry: len(docs) > 0, Summary: s.Summary}
	if s.Progress != nil {
		l.Done = int64(s.Progress.Records)
		for o, n := range s.Progress.Outcomes {
			l.Outcomes[string(o)] = int64(n)
		}
	}
	series := telemetry.Cluster(docs)
	p := telemetry.At(docs, now, nil)
	if p.Records > l.Done { // the samples see records of chunks not finished yet
		l.Done, l.Outcomes = p.Records, p.Done
	}
	l.Throttled, l.EnThrottled = p.Throttled, p.EnThrottl
	l.DVInFlight, l.DVLimit, l.DVHint, l.EnInFlight, l.EnLimit, l.Alive = p.DVInFlight, p.DVLimit, p.DVHint, p.EnInFlight, p.EnLimit, p.Alive
	end := now
	if sum := s.Summary; sum != nil {
		end = sum.Finished
		l.Done, l.Outcomes = int64(sum.Records), map[string]int64{}
		for o, n := range sum.Outcomes {
			l.Outcomes[string(o)] = int64(n)
		}
	}
	if m.PlanningDone && l.Done > int64(m.PlannedRecords) {
		// Records redone after a crash were counted twice by the samples; what is planned is all there is.
		l.Done = int64(m.PlannedRecords)
	}
	l.Failed = l.Outcomes[string(pipeline.Failed)]
	l.Elapsed = end.Sub(m.Created).Seconds()
	k := telemetry.Known{Now: end, Started: m.Created, Planned: m.PlannedRecords, PlanningDone: m.PlanningDone,
		PlanUpdated: m.Updated, PreviousTotal: previous, Done: l.Done, Series: series}
	if m.Spec != nil {
		k.PageSize = m.Spec.PlanPageSize()
	}
	e := k.Estimate()
	l.Total, l.TotalSource, l.Rate = e.Total, e.TotalSource, e.Rate
	if s.Summary != nil {
		l.Rate = s.Summary.RecordsPerSecond
	}
	if e.Finite {
		l.ETASeconds, l.ETAKnown = e.ETA.Seconds(), true
	}
	if s.Summary != nil {
		l.ETASeconds, l.ETAKnown = 0, true
	}
	return l
}

// Line is the one-line status: progress against the estimated total (and which estimate), rate,
// ETA, failures, 429s, concurrency against the limits and the hint, instances alive.
func (l *Live) Line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%6.1fs  %s  %d/%d records", l.Elapsed, l.State, l.Done, l.Total)
	if l.Total > 0 {
		fmt.Fprintf(&b, " %5.1f%%", 100*float64(l.Done)/float64(l.Total))
	}
	fmt.Fprintf(&b, " (total: %s)  %.0f rec/s  ETA %s  failed %d  429s %d", l.TotalSource, l.Rate, l.ETA(), l.Failed, sum(l.Throttled))
	if l.EnThrottled > 0 {
		fmt.Fprintf(&b, " (+%d enrichment)", l.EnThrottled)
	}
	if l.Telemetry {
		fmt.Fprintf(&b, "  Dataverse %d in flight / limit %d (hint %d)  enrichment %d/%d  instances %d/%d",
			l.DVInFlight, l.DVLimit, l.DVHint, l.EnInFlight, l.EnLimit, l.Alive, l.Instances)
	} else {
		b.WriteString("  (no telemetry: counts of finished chunks only)")
	}
	return b.String()
}

// ETA formats the estimate: a duration, "done", or "?" before the first records finish.
func (l *Live) ETA() string {
	switch {
	case l.Summary != nil:
		return "done"
	case !l.ETAKnown:
		return "?"
	}
	return (time.Duration(l.ETASeconds) * time.Second).String()
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// outcomeOrder is the order outcomes are listed in reports.
var outcomeOrder = []pipeline.Outcome{"created", "upserted", pipeline.Updated, pipeline.WouldUpdate, pipeline.Unchanged, pipeline.Fresh, pipeline.Gone, pipeline.Skipped, pipeline.Failed}

// SortedOutcomes lists the outcomes of m in report order: the known ones first, then the rest by name.
func SortedOutcomes[V any](m map[pipeline.Outcome]V) []pipeline.Outcome {
	var out []pipeline.Outcome
	for _, o := range outcomeOrder {
		if _, ok := m[o]; ok {
			out = append(out, o)
		}
	}
	var rest []pipeline.Outcome
	for o := range m {
		if !slices.Contains(outcomeOrder, o) {
			rest = append(rest, o)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}
