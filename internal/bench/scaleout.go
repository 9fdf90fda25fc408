package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/app"
	"dvbulk/internal/budget"
	"dvbulk/internal/checkpoint"
)

// BudgetBound is issue 14's profile: two web servers, a dop hint of 4, 8 concurrent requests per
// user per server, and an execution-time budget the job must exceed (2 s of server time per user
// per server per 60 s against about 5 s of writes per server), so 429s must happen and the
// execution-time window is the bound. Its figures are a scaled-down budget-bound night: what counts
// is the ratio of work to budget, not the absolute numbers.
func BudgetBound() Profile {
	p := Prod()
	p.Name, p.Servers, p.DOPHint = "budget-bound", 2, 4
	p.Concurrency, p.ExecTime, p.Window = 8, 2*time.Second, 60*time.Second
	p.Active, p.Inactive = 3000, 300
	return p
}

// ScaleResult is one row of the scale-out table, in real-time equivalents.
type ScaleResult struct {
	Instances   int
	Shared      bool
	Wall        time.Duration
	Throttled   int64
	IntoPenalty int64 // requests arriving inside a running penalty, per user per web server
	PeakCluster int64 // most requests executing at once on all servers together
	OpsPerSec   float64
	Lost        int
	Touched     int
	Checked     int
}

// ScaleOut runs the nightly job on p with n instances that all authenticate as the same application
// user, the shared budget on or off, each with the cap left at its default (52) so that only the
// hint and the shared share limit them, as a new user would deploy it. Budget timings are the
// defaults divided by the time scale, so they keep their real-time meaning.
func ScaleOut(ctx context.Context, p Profile, scale float64, n int, shared bool, dir string) (ScaleResult, error) {
	e := newEnv(p, scale)
	defer e.stop()
	st, err := checkpoint.NewDir(dir)
	if err != nil {
		return ScaleResult{}, fmt.Errorf("bench: checkpoint dir: %w", err)
	}
	k := DefaultKnobs(p).Override(Knobs{Instances: n, ChunkSize: 200, WriteBatch: 100, WriteWorkers: 2, Messages: 2})
	k.DVConcurrency = 52
	settings := k.Settings(e.dvURL, e.enURL)
	scaled := func(d time.Duration) string { return time.Duration(float64(d) / scale).String() }
	settings["DVBULK_SHARED_BUDGET"] = fmt.Sprint(shared)
	settings["DVBULK_BUDGET_REFRESH"] = scaled(time.Second)
	settings["DVBULK_BUDGET_HEARTBEAT"] = scaled(5 * time.Second)
	settings["DVBULK_BUDGET_SKEW"] = scaled(2 * time.Second)
	cfg, err := app.Load(func(name string) string { return settings[name] }, true)
	if err != nil {
		return ScaleResult{}, fmt.Errorf("bench: settings: %w", err)
	}
	spec := cfg.Job
	spec.Write.BatchSize = k.WriteBatch
	ops := &countingStore{Store: st}
	var budgets []*budget.Shared
	f, err := newFleet(cfg, st, k, func(_ int, name string) []app.EngineOption {
		b, err := app.NewBudget(cfg, ops, name, zerolog.Nop())
		if err != nil || b == nil {
			return nil
		}
		budgets = append(budgets, b)
		return []app.EngineOption{app.WithBudget(b)}
	})
	if err != nil {
		return ScaleResult{}, err
	}
	if shared && len(budgets) != n {
		return ScaleResult{}, fmt.Errorf("bench: %d budgets for %d instances", len(budgets), n)
	}
	bctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, b := range budgets {
		wg.Add(1)
		go func() { defer wg.Done(); _ = b.Run(bctx) }()
	}
	wall, err := f.run(ctx, spec, k, st)
	stop()
	wg.Wait()
	if err != nil {
		return ScaleResult{}, err
	}
	var r Result
	e.finish(&r, wall, e.dv.IDs(true))
	c := e.dv.Counters()
	return ScaleResult{Instances: n, Shared: shared, Wall: r.Wall, Throttled: r.Throttled, IntoPenalty: c.RequestsIntoPenalty,
		PeakCluster: c.PeakAdmitted, OpsPerSec: float64(ops.n.Load()) / float64(n) / r.Wall.Seconds(),
		Lost: r.Lost, Touched: r.Touched, Checked: r.Checked}, nil
}

// countingStore counts the operations the shared budget makes.
type countingStore struct {
	checkpoint.Store
	n atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, name string) ([]byte, checkpoint.ETag, error) {
	s.n.Add(1)
	return s.Store.Get(ctx, name)
}

func (s *countingStore) Create(ctx context.Context, name string, data []byte) (checkpoint.ETag, error) {
	s.n.Add(1)
	return s.Store.Create(ctx, name, data)
}

func (s *countingStore) Update(ctx context.Context, name string, data []byte, match checkpoint.ETag) (checkpoint.ETag, error) {
	s.n.Add(1)
	return s.Store.Update(ctx, name, data, match)
}

// ScaleOutOptions choose the scale-out table's rows.
type ScaleOutOptions struct {
	Profile   Profile
	TimeScale float64
	Instances []int
	Unshared  bool // also run each count with the shared budget off
	Dir       string
}

// RunScaleOut prints the scale-out table: the same budget-bound night with 1, 3 and 8 instances.
func RunScaleOut(ctx context.Context, o ScaleOutOptions, w io.Writer) error {
	p := o.Profile
	bound := ComputeBound(p, min(p.DOPHint, p.Concurrency*p.Servers))
	fmt.Fprintf(w, "\n== scale-out: profile %s (%d web servers, x-ms-dop-hint %d, %s of server time per user per server per %s), %d accounts, one application user, time scale ×%g\n",
		p.Name, p.Servers, p.DOPHint, p.ExecTime, p.Window, p.Active, o.TimeScale)
	fmt.Fprintf(w, "bound: %s (%s binds)\n", bound.Total.Round(100*time.Millisecond), bound.Binding)
	var rows []ScaleResult
	for _, n := range o.Instances {
		modes := []bool{true}
		if o.Unshared {
			modes = append(modes, false)
		}
		for _, shared := range modes {
			dir := filepath.Join(o.Dir, fmt.Sprintf("scale-%d-%v-%d", n, shared, time.Now().UnixNano()))
			r, err := ScaleOut(ctx, p, o.TimeScale, n, shared, dir)
			_ = os.RemoveAll(dir)
			if err != nil {
				return fmt.Errorf("%d instances, shared %v: %w", n, shared, err)
			}
			rows = append(rows, r)
		}
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "instances\tshared budget\twall\t% of bound\tDV 429s\tinto a penalty\tpeak cluster concurrency (hint)\tbudget storage ops/instance/s\tlost\tinactive touched\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%v\t%s\t%.0f%%\t%d\t%d\t%d (%d)\t%.2f\t%d/%d\t%d\t\n", r.Instances, r.Shared, r.Wall.Round(100*time.Millisecond),
			100*bound.Total.Seconds()/r.Wall.Seconds(), r.Throttled, r.IntoPenalty, r.PeakCluster, p.DOPHint, r.OpsPerSec, r.Lost, r.Checked, r.Touched)
	}
	tw.Flush()
	var one *ScaleResult
	for i := range rows {
		if rows[i].Shared && rows[i].Instances == 1 {
			one = &rows[i]
		}
	}
	var notes []string
	for _, r := range rows {
		if !r.Shared || one == nil || r.Instances == 1 {
			continue
		}
		notes = append(notes, fmt.Sprintf("%d instances: wall %.2f× of 1 instance's (target ≤ 1×, 10%% noise allowed) %s, 429s %.1f× (target ≤ 1.5×) %s, into a penalty %d (target ≤ 2) %s, %.0f%% of the bound (target ≥ 85%%) %s, %.2f storage ops/s (target ≤ 2) %s",
			r.Instances, r.Wall.Seconds()/one.Wall.Seconds(), mark(r.Wall <= one.Wall*11/10), float64(r.Throttled)/float64(max(1, one.Throttled)),
			mark(float64(r.Throttled) <= 1.5*float64(max(1, one.Throttled))), r.IntoPenalty, mark(r.IntoPenalty <= 2),
			100*bound.Total.Seconds()/r.Wall.Seconds(), mark(bound.Total.Seconds()/r.Wall.Seconds() >= 0.85), r.OpsPerSec, mark(r.OpsPerSec <= 2)))
	}
	for _, n := range notes {
		fmt.Fprintln(w, "  "+strings.TrimSpace(n))
	}
	return nil
}
