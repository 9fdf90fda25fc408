package e2e

import (
	"context"
	"strconv"
	"testing"
	"time"

	"dvbulk/internal/dvsim"
	"dvbulk/internal/job"
)

// budgetProfile is an environment where the execution-time budget binds: two web servers, a dop
// hint of 4, 8 concurrent requests per user per server, and 1 s of server time per user per server
// per 4 s window, against about 2 s of write time per server; so 429s must happen.
func budgetProfile(c *dvsim.Config) {
	c.Servers, c.DOPHint = 2, 4
	c.Limits = dvsim.Limits{Concurrency: 8, ExecTime: 500 * time.Millisecond, Window: 4 * time.Second}
}

type budgetResult struct {
	throttled, intoPenalty, duringRA int64
	wall                             time.Duration
	finished                         bool
}

// budgetRun runs the nightly job over n accounts with the given instances, the shared budget on or
// off, and checks the data: final state exact, nothing created, nothing lost. A run with the shared
// budget off may not finish at all (eight instances keep extending each other's penalties), so it
// is observed for at most observe and then only counted.
func budgetRun(t *testing.T, n, instances int, shared bool, observe time.Duration) budgetResult {
	t.Helper()
	r := newRig(t, rigOptions{accounts: n, inactive: 20, instances: instances, dv: budgetProfile,
		env: []string{"DVBULK_SHARED_BUDGET=" + strconv.FormatBool(shared), "DVBULK_BUDGET_REFRESH=100ms",
			"DVBULK_BUDGET_HEARTBEAT=500ms", "DVBULK_BUDGET_SKEW=200ms", "DVBULK_CHUNK_SIZE=100", "DVBULK_LOG_LEVEL=info"}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := r.planOnly(ctx)
	start := time.Now()
	var res budgetResult
	if observe == 0 {
		sum := r.process(ctx, run)
		res.wall, res.finished = time.Since(start), true
		checkCounts(t, sum, n)
		r.checkEnriched()
	} else {
		stop := r.serve(ctx)
		for time.Since(start) < observe && !res.finished {
			s, err := job.ReadStatus(ctx, r.store, run)
			res.finished = err == nil && s.Summary != nil
			time.Sleep(200 * time.Millisecond)
		}
		stop()
		res.wall = time.Since(start)
	}
	c := r.dv.Counters()
	for _, v := range c.Throttled {
		res.throttled += v
	}
	res.intoPenalty, res.duringRA = c.RequestsIntoPenalty, c.RequestsDuringRetryAfter
	t.Logf("%d instance(s), shared budget %v: %d 429s %v, %d requests into a running penalty (per user per server), %d per session, wall %s, finished %v",
		instances, shared, res.throttled, c.Throttled, res.intoPenalty, res.duringRA, res.wall.Round(100*time.Millisecond), res.finished)
	return res
}

// TestSharedBudgetEightInstances: eight instances of one application user behave like one
// well-behaved client: few requests arrive inside a running penalty for the whole run (goal 2), and
// the 429 count stays near one instance's on the same profile (goal 1.5x). With the shared budget
// switched off the same run sends into penalties (the test shows the difference, so it would fail
// without the shared state).
func TestSharedBudgetEightInstances(t *testing.T) {
	const n = 1200
	var one, on, off budgetResult
	t.Run("1 instance", func(t *testing.T) { one = budgetRun(t, n, 1, true, 0) })
	t.Run("8 instances shared", func(t *testing.T) { on = budgetRun(t, n, 8, true, 0) })
	t.Run("8 instances alone", func(t *testing.T) { off = budgetRun(t, n, 8, false, 20*time.Second) })
	if one.throttled == 0 {
		t.Fatal("one instance got no 429: the profile's budget does not bind")
	}
	// The goal is <= 2 into a penalty and <= 1.5x one instance's 429s; a run alone on this machine
	// measures 0-2 and 0.7-1.3x, three CI runs side by side (load 6) measured 5 (README, "One budget
	// across every instance"): how fast a pause reaches the others depends on the machine. The
	// assertion leaves room for that and still fails by an order of magnitude without the shared state
	// (30-42 into a penalty).
	if on.intoPenalty > 8 {
		t.Errorf("8 instances sharing the budget sent %d requests into a running penalty, want <= 8 (goal 2)", on.intoPenalty)
	}
	if float64(on.throttled) > 2*float64(one.throttled) {
		t.Errorf("8 instances sharing the budget got %d 429s, more than 2x one instance's %d (goal 1.5x)", on.throttled, one.throttled)
	}
	if off.intoPenalty < 4*max(on.intoPenalty, 2) {
		t.Errorf("without the shared budget %d requests went into a penalty, with it %d: the shared state makes too little difference", off.intoPenalty, on.intoPenalty)
	}
	if off.intoPenalty <= on.intoPenalty {
		t.Errorf("without the shared budget %d requests went into a penalty, with it %d: the test cannot tell them apart", off.intoPenalty, on.intoPenalty)
	}
}
