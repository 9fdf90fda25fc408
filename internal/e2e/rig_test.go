// Package e2e runs the built handler binary under the host emulator with real Azurite (checkpoints)
// and the Dataverse and enrichment simulators, and checks the properties the product promises.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"dvbulk/internal/azurite"
	"dvbulk/internal/azurite/azuritetest"
	"dvbulk/internal/checkpoint"
	"dvbulk/internal/dvsim"
	"dvbulk/internal/enrich/enrichsim"
	"dvbulk/internal/funcemu"
	"dvbulk/internal/job"
	"dvbulk/internal/testutil"
)

var (
	binary  string // the handler, built once
	appRoot string // the repository root: host.json and the function folders
)

func TestMain(m *testing.M) {
	wd, _ := os.Getwd()
	appRoot = filepath.Clean(filepath.Join(wd, "..", ".."))
	dir, err := os.MkdirTemp("", "dvbulk-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "dvbulk")
	build := exec.Command("go", "build", "-o", binary, "./handler")
	build.Dir = appRoot
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build handler:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type rigOptions struct {
	accounts, inactive int
	instances          int
	job                string
	env                []string
	lease              time.Duration // queue lease in the emulator (the host's 10 minutes, shortened)
	dv                 func(*dvsim.Config)
	queues             map[string]any // host.json extensions.queues overrides (e.g. a short visibilityTimeout)
	functionTimeout    string         // host.json functionTimeout override ("hh:mm:ss")
	en                 func(*enrichsim.Config)
	defaults           bool // leave the enrichment and Dataverse concurrency settings at their shipped defaults
	onLine             func(instance int, line string)
}

type rig struct {
	t     *testing.T
	opts  rigOptions
	dv    *dvsim.Sim
	en    *enrichsim.Sim
	az    *azurite.Server
	host  *funcemu.Host
	store checkpoint.Store
	logs  *testutil.SyncBuffer
	conn  string
}

const container = "dvbulk-checkpoints"

// preEnriched says which accounts already hold the enrichment (every fifth), so the enrichment
// changes 80% of them and the rest must not be written.
func preEnriched(i int) bool { return i%5 == 0 }

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	if o.instances == 0 {
		o.instances = 2
	}
	if o.job == "" {
		o.job = "nightly-enrichment"
	}
	if o.lease == 0 {
		o.lease = 4 * time.Second
	}
	cfg := dvsim.Config{Accounts: o.accounts, InactiveAccounts: o.inactive, Seed: 7, Servers: 2, DOPHint: 16,
		Init: func(i int, id string, rec map[string]any) {
			if i < o.accounts && preEnriched(i) {
				enrichsim.Apply(rec, id)
			}
		}}
	if o.dv != nil {
		o.dv(&cfg)
	}
	ecfg := enrichsim.Config{TimeScale: 20}
	if o.en != nil {
		o.en(&ecfg)
	}
	r := &rig{t: t, opts: o, dv: dvsim.New(cfg), en: enrichsim.New(ecfg), logs: &testutil.SyncBuffer{}}
	dvURL, stopDV := r.dv.Start()
	t.Cleanup(stopDV)
	enURL, stopEN := r.en.Start()
	t.Cleanup(stopEN)
	r.az = azuritetest.Start(t, azurite.Options{Persist: t.TempDir()})
	r.conn = r.az.ConnectionString()
	st, err := checkpoint.NewBlob(context.Background(), checkpoint.BlobConfig{ConnectionString: r.conn, Container: container})
	if err != nil {
		t.Fatal(err)
	}
	r.store = st
	env := []string{
		"DATAVERSE_URL=" + dvURL, "DATAVERSE_AUTH=none", "ENRICHMENT_URL=" + enURL,
		"AzureWebJobsStorage=" + r.conn, "DVBULK_CHECKPOINT_STORE=blob", "DVBULK_CHECKPOINT_CONTAINER=" + container,
		"DVBULK_JOB=" + o.job, "DVBULK_SCHEDULE=0 0 2 * * *",
		"DVBULK_LEASE=4s", "DVBULK_FLUSH_INTERVAL=200ms", "DVBULK_LOG_LEVEL=debug", "DVBULK_CHUNK_SIZE=200",
	}
	if !o.defaults {
		env = append(env, "ENRICHMENT_BATCH_SIZE=25", "ENRICHMENT_CONCURRENCY=8", "DVBULK_DATAVERSE_CONCURRENCY=8")
	}
	root := appRoot
	if o.queues != nil || o.functionTimeout != "" {
		root = customAppRoot(t, o.queues, o.functionTimeout)
	}
	host, err := funcemu.New(funcemu.Options{AppRoot: root, Binary: binary, Instances: o.instances,
		Env: append(env, o.env...), Output: r.logs, Lease: o.lease, OnLine: o.onLine})
	if err != nil {
		t.Fatal(err)
	}
	r.host = host
	t.Cleanup(host.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := host.Start(ctx); err != nil {
		t.Fatalf("start instances: %v\n%s", err, r.logs.String())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("instance logs (tail):\n%s", tail(r.logs.String(), 60))
			if p := os.Getenv("E2E_LOG_DUMP"); p != "" {
				_ = os.WriteFile(p, []byte(r.logs.String()), 0o600)
			}
		}
	})
	return r
}

// occurrence is the scheduled time the tests fire the timer for; the run id derives from it.
var occurrence = time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)

// serve delivers queued messages (host.Run) until the returned stop is called or ctx ends. stop
// returns once Run has (its deliveries included), so a later serve never runs beside it.
func (r *rig) serve(ctx context.Context) (stop func()) {
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.host.Run(runCtx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// planOnly fires the timer for occurrence, which plans the run and queues its first messages, and
// returns the run id. Without serve running, faults can be set up between planning and processing.
func (r *rig) planOnly(ctx context.Context) string {
	r.t.Helper()
	inv, err := r.host.FireTimer(ctx, "EnrichTimer", funcemuTimer(occurrence))
	if err != nil || inv.Status != 200 {
		r.t.Fatalf("timer: %v %+v", err, inv)
	}
	return job.RunID(r.opts.job, occurrence)
}

// runTimer serves the queues, fires the timer and waits until the run's summary exists.
func (r *rig) runTimer(ctx context.Context) *job.Summary {
	r.t.Helper()
	defer r.serve(ctx)()
	return r.waitSummary(ctx, r.planOnly(ctx))
}

// process serves the queued messages until the run's summary exists.
func (r *rig) process(ctx context.Context, run string) *job.Summary {
	r.t.Helper()
	defer r.serve(ctx)()
	return r.waitSummary(ctx, run)
}

// reEnriched counts the records of saved that the enrichment service was asked about more than once.
func (r *rig) reEnriched(saved map[string]bool) int {
	n := 0
	for id := range saved {
		if r.en.CallsByID(id) > 1 {
			n++
		}
	}
	return n
}

func (r *rig) waitSummary(ctx context.Context, run string) *job.Summary {
	r.t.Helper()
	var last *job.Status
	for {
		s, err := job.ReadStatus(ctx, r.store, run)
		if err == nil && s.Summary != nil {
			return s.Summary
		}
		if err == nil {
			last = s
		}
		select {
		case <-ctx.Done():
			st := "no status"
			if last != nil && last.Progress != nil {
				st = fmt.Sprintf("%d chunks done of %d, planning done %v, outcomes %v", last.Progress.Chunks, last.Manifest.NextSeq, last.Manifest.PlanningDone, last.Progress.Outcomes)
			}
			r.t.Fatalf("run %s did not finish: %v (%s); unfinished chunks: %s", run, ctx.Err(), st, r.unfinished(run))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// unfinished describes the run's chunks that are not done, for a failure message.
func (r *rig) unfinished(run string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []string
	if err := r.eachChunk(ctx, run, func(ch *job.Chunk) {
		if ch.State != job.ChunkDone {
			out = append(out, fmt.Sprintf("%d (%s, owner %q, lease %s, attempts %d)", ch.Seq, ch.State, ch.Owner, ch.Lease.Format(time.RFC3339Nano), ch.Attempts))
		}
	}); err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d: %s", len(out), strings.Join(out, "; "))
}

// checkEnriched verifies every account: active ones hold exactly the simulator's enrichment, inactive
// ones are untouched, nothing was created, and pre-enriched accounts were never written.
func (r *rig) checkEnriched() {
	r.t.Helper()
	c := r.dv.Counters()
	if c.Creates != 0 {
		r.t.Errorf("%d records created", c.Creates)
	}
	wrong := 0
	for i := 0; i < r.opts.accounts; i++ {
		id := dvsim.AccountID(i)
		row, _ := r.dv.Get(id)
		if k, ok := enrichsim.Holds(row, id); !ok {
			if wrong < 5 {
				r.t.Errorf("account %d %s: %s = %v, want %v", i, id, k, row[k], enrichsim.Truth(id)[k])
			}
			wrong++
		}
		if preEnriched(i) && c.WritesByID(id) != 0 {
			r.t.Errorf("account %d already held the enrichment but was written %d times", i, c.WritesByID(id))
		}
	}
	for _, id := range r.dv.IDs(false) {
		if c.WritesByID(id) != 0 {
			r.t.Errorf("inactive account %s written", id)
		}
	}
	if wrong > 0 {
		r.t.Errorf("%d of %d active accounts wrong", wrong, r.opts.accounts)
	}
}

func checkCounts(t *testing.T, sum *job.Summary, planned int) {
	t.Helper()
	total := 0
	for _, n := range sum.Outcomes {
		total += n
	}
	if sum.Planned != planned || sum.Records != planned || total != planned {
		t.Errorf("summary planned %d records %d outcomes add to %d (%v), want %d", sum.Planned, sum.Records, total, sum.Outcomes, planned)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func funcemuTimer(at time.Time) funcemu.TimerOptions { return funcemu.TimerOptions{Next: at} }

// customAppRoot copies the function app into a temporary folder with host.json queue settings (and
// functionTimeout, if set) changed.
func customAppRoot(t *testing.T, queues map[string]any, functionTimeout string) string {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(appRoot, "host.json"))
	if err != nil {
		t.Fatal(err)
	}
	var host map[string]any
	if err := json.Unmarshal(data, &host); err != nil {
		t.Fatal(err)
	}
	q := host["extensions"].(map[string]any)["queues"].(map[string]any)
	for k, v := range queues {
		q[k] = v
	}
	if functionTimeout != "" {
		host["functionTimeout"] = functionTimeout
	}
	data, _ = json.MarshalIndent(host, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "host.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, fn := range []string{"EnrichTimer", "ChunkQueue"} {
		b, err := os.ReadFile(filepath.Join(appRoot, fn, "function.json"))
		if err != nil {
			t.Fatal(err)
		}
		_ = os.MkdirAll(filepath.Join(dir, fn), 0o755)
		if err := os.WriteFile(filepath.Join(dir, fn, "function.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// waitEnded waits until every invocation in invs has ended (answered, failed or been cut off by the
// host), so a test reads their final logs.
func (r *rig) waitEnded(ctx context.Context, invs []funcemu.Invocation) {
	r.t.Helper()
	want := map[string]bool{}
	for _, inv := range invs {
		want[inv.ID] = true
	}
	for {
		open := 0
		for _, inv := range r.host.Invocations() {
			if want[inv.ID] && inv.End.IsZero() {
				open++
			}
		}
		if open == 0 {
			return
		}
		select {
		case <-ctx.Done():
			r.t.Fatalf("%d invocations never ended: %v", open, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
