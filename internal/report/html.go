package report

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"sort"
	"time"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/job"
	"dvbulk/internal/pipeline"
	"dvbulk/internal/telemetry"
)

//go:embed report.html.tmpl
var pageTemplate string

var page = template.Must(template.New("report").Funcs(funcs).Parse(pageTemplate))

// Name is where a run's report is kept in the checkpoint store, next to its summary.
func Name(run string) string { return "runs/" + run + "/report.html" }

// data is what the template renders.
type data struct {
	Summary        *job.Summary
	Manifest       *job.Manifest
	Complete       bool
	Generated      time.Time
	Outcomes       []outcomeRow
	OutcomesHeight int
	Charts         []*chart
	Slowest        []slowChunk
	Failures       []job.Failure
	MoreFailed     int
	Spec           string
	Settings       []settingRow
	Instances      []string
	Throttled      []outcomeRow // 429s by limit
	EnThrottle     int64
	Peak           telemetry.Point
}

type outcomeRow struct {
	Name  string
	Count int
	Width float64 // bar width in the outcomes chart
	Y     int     // row offset in the outcomes chart
}

type slowChunk struct {
	Seq      int
	Records  int
	Milli    int64
	Instance string
}

type settingRow struct {
	Name   string
	Values string // "12" or "12 (host-a), 16 (host-b)" when instances differ
}

// shownFailures is how many failed records the report lists (the CSV has all of them).
const shownFailures = 50

// Build reads what a run's report shows. A run still going gets a report of its state so far.
func build(ctx context.Context, st checkpoint.Store, run string, now time.Time) (*data, error) {
	s, err := job.ReadStatus(ctx, st, run)
	if err != nil {
		return nil, err
	}
	docs, err := telemetry.Read(ctx, st, run)
	if err != nil {
		return nil, err
	}
	d := &data{Manifest: s.Manifest, Summary: s.Summary, Complete: s.Summary != nil, Generated: now.UTC()}
	if d.Summary == nil {
		// Not finished: the counts so far, in the summary's shape.
		l := live(s, docs, 0, now)
		sum := &job.Summary{Run: s.Manifest.Run, Job: s.Manifest.Job, DryRun: s.Manifest.DryRun, Trigger: s.Manifest.Trigger,
			Started: s.Manifest.Created, Finished: now, Planned: s.Manifest.PlannedRecords, Records: int(l.Done),
			Outcomes: map[pipeline.Outcome]int{}, DurationSeconds: now.Sub(s.Manifest.Created).Seconds()}
		for o, n := range l.Outcomes {
			sum.Outcomes[pipeline.Outcome(o)] = int(n)
		}
		if s.Progress != nil {
			sum.Chunks, sum.Stats = s.Progress.Chunks, s.Progress.Stats
		}
		if sum.DurationSeconds > 0 {
			sum.RecordsPerSecond = float64(sum.Records) / sum.DurationSeconds
		}
		d.Summary = sum
	}
	sum := d.Summary
	maxOutcome := 1
	for _, n := range sum.Outcomes {
		maxOutcome = max(maxOutcome, n)
	}
	for _, o := range SortedOutcomes(sum.Outcomes) {
		d.Outcomes = append(d.Outcomes, outcomeRow{Name: string(o), Count: sum.Outcomes[o], Width: 480 * float64(sum.Outcomes[o]) / float64(maxOutcome), Y: 30 * len(d.Outcomes)})
	}
	d.OutcomesHeight = 30*len(d.Outcomes) + 8
	d.Failures = sum.Failures
	if len(d.Failures) > shownFailures {
		d.Failures, d.MoreFailed = d.Failures[:shownFailures], len(sum.Failures)-shownFailures
	}
	if spec, err := json.MarshalIndent(s.Manifest.Spec, "", "  "); err == nil {
		d.Spec = string(spec)
	}
	d.Settings, d.Instances = settings(docs)
	d.Slowest = slowest(docs, 10)
	d.Charts = charts(docs, sum.Started, sum.Finished)
	end := telemetry.At(docs, sum.Finished.Add(time.Minute), nil)
	for _, code := range sortedKeys(end.Throttled) {
		d.Throttled = append(d.Throttled, outcomeRow{Name: limitName(code), Count: int(end.Throttled[code])})
	}
	d.EnThrottle = end.EnThrottl
	return d, nil
}

// Write renders run's report as one self-contained HTML document: inline SVG and CSS, no scripts,
// nothing loaded from elsewhere, so it opens from a downloaded blob or a mail attachment.
func Write(ctx context.Context, st checkpoint.Store, run string, now time.Time, w io.Writer) error {
	d, err := build(ctx, st, run, now)
	if err != nil {
		return err
	}
	if err := page.Execute(w, d); err != nil {
		return fmt.Errorf("report: render: %w", err)
	}
	return nil
}

// Save renders run's report into the checkpoint store (runs/<run>/report.html), replacing an older one.
func Save(ctx context.Context, st checkpoint.Store, run string, now time.Time) error {
	var b bytes.Buffer
	if err := Write(ctx, st, run, now, &b); err != nil {
		return err
	}
	name := Name(run)
	for attempt := 0; attempt < 3; attempt++ {
		_, etag, err := st.Get(ctx, name)
		switch {
		case errors.Is(err, checkpoint.ErrNotFound):
			_, err = st.Create(ctx, name, b.Bytes())
		case err == nil:
			_, err = st.Update(ctx, name, b.Bytes(), etag)
		}
		if !errors.Is(err, checkpoint.ErrConflict) {
			if err != nil {
				return fmt.Errorf("report: write %s: %w", name, err)
			}
			return nil
		}
	}
	return fmt.Errorf("report: write %s: %w", name, checkpoint.ErrConflict)
}

// charts draws throughput, concurrency and 429s over the run's time, on one time axis.
func charts(docs []*telemetry.Doc, start, end time.Time) []*chart {
	a := axis{start: start, end: end, width: 880}
	samples := 0
	step := time.Second
	for _, d := range docs {
		samples += len(d.Samples)
		step = max(step, time.Duration(d.Interval*float64(time.Second)))
	}
	if samples < 2 || !end.After(start) {
		c := newChart("chart-throughput", "Throughput", "records/s", a, 220)
		c.Empty = "No telemetry was recorded for this run (DVBULK_TELEMETRY_INTERVAL=0, or a build without it)."
		return []*chart{c}
	}
	// The instances sample at their own moments: the charts read the cluster on a regular grid of
	// the sampling interval (at most 300 steps), so a rate is never a difference over a few
	// milliseconds between two instances' samples.
	step = max(step, end.Sub(start)/300)
	var pts []telemetry.Point
	for t := start.Add(step); ; t = t.Add(step) {
		if t.After(end) {
			t = end
		}
		pts = append(pts, telemetry.At(docs, t, nil))
		if !t.Before(end) {
			break
		}
	}
	var rate, dvIn, dvLim, hint, enIn, enLim, thr, enThr []xy
	var prevT []time.Time
	var peakRate, peakConc, peakThr float64
	prev := telemetry.Point{T: start}
	for _, p := range pts {
		dt := p.T.Sub(prev.T).Seconds()
		if dt <= 0 {
			continue
		}
		r := float64(p.Records-prev.Records) / dt
		rate = append(rate, xy{p.T, r})
		dvIn = append(dvIn, xy{p.T, float64(p.DVInFlight)})
		dvLim = append(dvLim, xy{p.T, float64(p.DVLimit)})
		hint = append(hint, xy{p.T, float64(p.DVHint)})
		enIn = append(enIn, xy{p.T, float64(p.EnInFlight)})
		enLim = append(enLim, xy{p.T, float64(p.EnLimit)})
		t := float64(p.ThrottledTotal() - prev.ThrottledTotal())
		et := float64(p.EnThrottl - prev.EnThrottl)
		thr, enThr = append(thr, xy{p.T, t}), append(enThr, xy{p.T, et})
		prevT = append(prevT, prev.T)
		peakRate = max(peakRate, r)
		peakConc = max(peakConc, float64(max(p.DVLimit, p.DVHint, p.EnLimit, p.DVInFlight, p.EnInFlight)))
		peakThr = max(peakThr, t, et)
		prev = p
	}
	tp := newChart("chart-throughput", "Throughput", "records/s", a, 220)
	tp.scale(peakRate)
	tp.addLine("l1", "records finished per second (all instances)", a, rate, false)

	cc := newChart("chart-concurrency", "Concurrency", "requests in flight", a, 220)
	cc.scale(peakConc)
	cc.addLine("l1", "Dataverse in flight", a, dvIn, false)
	cc.addLine("l2", "Dataverse limit (adaptive, sum)", a, dvLim, true)
	cc.addLine("l3", "x-ms-dop-hint", a, hint, true)
	cc.addLine("l4", "enrichment in flight", a, enIn, false)
	cc.addLine("l5", "enrichment ceiling (sum)", a, enLim, true)

	tc := newChart("chart-throttling", "429s", "per sample interval", a, 160)
	tc.scale(peakThr)
	tc.addBars("Dataverse 429s", a, thr, prevT)
	tc.addLine("l4", "enrichment 429/503", a, enThr, false)
	return []*chart{tp, cc, tc}
}

// slowest merges the instances' slowest chunks (a chunk that ran on several instances counts the
// time of each) and returns the n slowest.
func slowest(docs []*telemetry.Doc, n int) []slowChunk {
	bySeq := map[int]*slowChunk{}
	for _, d := range docs {
		for _, ct := range d.Slowest {
			sc := bySeq[ct.Seq]
			if sc == nil {
				sc = &slowChunk{Seq: ct.Seq, Instance: d.Instance}
				bySeq[ct.Seq] = sc
			} else if sc.Instance != d.Instance {
				sc.Instance += ", " + d.Instance
			}
			sc.Milli += ct.Milli
			sc.Records = max(sc.Records, ct.Records)
		}
	}
	out := make([]slowChunk, 0, len(bySeq))
	for _, sc := range bySeq {
		out = append(out, *sc)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Milli != out[j].Milli {
			return out[i].Milli > out[j].Milli
		}
		return out[i].Seq < out[j].Seq
	})
	return out[:min(n, len(out))]
}

// settings lists the instances' settings, noting where instances differed.
func settings(docs []*telemetry.Doc) ([]settingRow, []string) {
	vals := map[string]map[string][]string{} // name -> value -> instances
	var instances []string
	for _, d := range docs {
		instances = append(instances, d.Instance)
		for k, v := range d.Settings {
			if vals[k] == nil {
				vals[k] = map[string][]string{}
			}
			vals[k][v] = append(vals[k][v], d.Instance)
		}
	}
	var rows []settingRow
	for _, name := range sortedKeys(vals) {
		byVal := vals[name]
		row := settingRow{Name: name}
		for i, v := range sortedKeys(byVal) {
			if i > 0 {
				row.Values += "; "
			}
			row.Values += v
			if len(byVal) > 1 {
				row.Values += fmt.Sprintf(" (%d instances)", len(byVal[v]))
			}
		}
		rows = append(rows, row)
	}
	return rows, instances
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// limitName names a service protection limit by its 429 error code.
func limitName(code string) string {
	switch code {
	case "0x80072322":
		return "number of requests (0x80072322)"
	case "0x80072321":
		return "execution time (0x80072321)"
	case "0x80072326":
		return "concurrent requests (0x80072326)"
	}
	return code
}
