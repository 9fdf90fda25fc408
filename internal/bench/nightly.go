package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"dvbulk/internal/app"
	"dvbulk/internal/checkpoint"
	"dvbulk/internal/job"
)

// NightlyResult is one measured nightly run after a day's edits.
type NightlyResult struct {
	Mode            string // "full" or "incremental"
	Tracking        bool   // the table tracks changes
	Changed         int    // accounts edited since the previous night
	EnrichRecords   int64  // records sent to the enrichment service
	EnrichRequests  int64
	DVRequests      int64
	Writes          int64
	Fresh           int
	Wall            time.Duration
	TrackingApplied string // the run's Manifest.Tracking
}

// Nightly measures what incremental runs save: on a table enriched on earlier nights, a fraction of
// the active accounts is renamed, then the next night runs incrementally; the same edits again,
// and a --full night. With the simulator's change tracking off and on. Every figure is measured at
// the product's time scale (1 = real time).
func Nightly(ctx context.Context, p Profile, k Knobs, changeFraction float64, dir string) ([]NightlyResult, error) {
	var out []NightlyResult
	for _, tracking := range []bool{false, true} {
		e := newEnv(p, 1)
		e.dv.SetChangeTracking(tracking)
		sub := filepath.Join(dir, fmt.Sprintf("nightly-%v-%d", tracking, time.Now().UnixNano()))
		st, err := checkpoint.NewDir(sub)
		if err != nil {
			e.stop()
			return nil, fmt.Errorf("bench: checkpoint dir: %w", err)
		}
		settings := k.Settings(e.dvURL, e.enURL)
		cfg, err := app.Load(func(name string) string { return settings[name] }, true)
		if err != nil {
			e.stop()
			return nil, fmt.Errorf("bench: settings: %w", err)
		}
		spec := cfg.Job
		if k.WriteBatch > 0 {
			spec.Write.BatchSize = k.WriteBatch
		}
		f, err := newFleet(cfg, st, k, nil)
		if err != nil {
			e.stop()
			return nil, err
		}
		engines := f.engines
		night := 0
		run := func(full bool) (NightlyResult, error) {
			night++
			c0, en0 := e.dv.Counters(), e.en.Counters()
			start := time.Now()
			id := job.RunID(spec.Name, start)
			first, err := engines[0].Start(ctx, spec, job.StartOptions{Run: id, Trigger: "bench", At: start, Full: full})
			if err != nil {
				return NightlyResult{}, fmt.Errorf("bench: night %d: %w", night, err)
			}
			var dead atomic.Int64
			q := &job.LocalQueue{Engines: engines, Workers: k.Instances * k.Messages, DeadLetters: func(string) { dead.Add(1) }}
			if err := q.Run(ctx, first); err != nil {
				return NightlyResult{}, fmt.Errorf("bench: night %d: %w", night, err)
			}
			wall := time.Since(start)
			s, err := job.ReadStatus(context.WithoutCancel(ctx), engines[0].Store, id)
			if err != nil || s.Summary == nil {
				return NightlyResult{}, fmt.Errorf("bench: night %d did not complete (%v, %d dead letters)", night, err, dead.Load())
			}
			c1, en1 := e.dv.Counters(), e.en.Counters()
			mode := "incremental"
			if full {
				mode = "full (--full)"
			}
			return NightlyResult{Mode: mode, Tracking: tracking, EnrichRecords: en1.Records - en0.Records, EnrichRequests: en1.Requests - en0.Requests,
				DVRequests: c1.Requests - c0.Requests, Writes: c1.Writes - c0.Writes, Fresh: s.Summary.Outcomes["fresh"], Wall: wall,
				TrackingApplied: s.Manifest.Tracking}, nil
		}
		edit := func(round int) int {
			ids := e.dv.IDs(true)
			n := int(float64(len(ids)) * changeFraction)
			for i := 0; i < n; i++ {
				id := ids[(i*97+round*13)%len(ids)]
				e.dv.Edit(id, map[string]any{"name": fmt.Sprintf("Renamed %d %s", round, id[:8])})
			}
			return n
		}
		// Night 1: everything is new to the ledger. Night 2, with no edits, settles: its delta still
		// holds night 1's own writes. The measured nights are the steady state after that.
		for range 2 {
			if _, err := run(false); err != nil {
				e.stop()
				return nil, err
			}
		}
		for _, full := range []bool{false, true} {
			n := edit(night)
			r, err := run(full)
			if err != nil {
				e.stop()
				return nil, err
			}
			r.Changed = n
			out = append(out, r)
		}
		e.stop()
		_ = os.RemoveAll(sub)
	}
	return out, nil
}

// WriteNightly prints Nightly's figures.
func WriteNightly(w io.Writer, p Profile, rs []NightlyResult) {
	fmt.Fprintf(w, "\n== nightly: %d active accounts enriched on earlier nights, then %.0f%% renamed (profile %s)\n", p.Active, 100*float64(rs[0].Changed)/float64(p.Active), p.Name)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tchange tracking\tenrichment records\tenrichment requests\tDV requests\twrites\tfresh\twall\t")
	for _, r := range rs {
		ct := "off"
		if r.Tracking {
			ct = "on (" + r.TrackingApplied + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t\n", r.Mode, ct, r.EnrichRecords, r.EnrichRequests, r.DVRequests, r.Writes, r.Fresh, r.Wall.Round(10*time.Millisecond))
	}
	tw.Flush()
}
