package job

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/ctxutil"
	"dvbulk/internal/pipeline"
)

// StartOptions describe a new run.
type StartOptions struct {
	Run     string    // explicit run id; default derived from the job and At
	At      time.Time // scheduled time (timer) or now
	DryRun  bool
	Full    bool   // every record eligible, whatever the job's ledger says
	RerunOf string // re-run only the failed records of that run
	Source  string // an import's source blob
	Trigger string // timer, queue, cli

	version string   // the import source's version, found by Start
	header  []string // its CSV header
}

// Start begins a run of spec unless one is already active: a second timer tick while a run is in
// progress changes nothing, and a run that has made no progress for StaleAfter is taken over (its
// planning is continued and its unfinished chunks re-enqueued). The first planning step runs inline.
func (e *Engine) Start(ctx context.Context, spec *Spec, o StartOptions) (Result, error) {
	var res Result
	if o.Run == "" {
		o.Run = RunID(spec.Name, o.At)
	}
	if !runRE.MatchString(o.Run) {
		return res, &BadMessageError{Reason: fmt.Sprintf("run id %q is not valid", o.Run)}
	}
	switch {
	case spec.Import != nil && o.Source == "":
		return res, &BadMessageError{Reason: fmt.Sprintf("job %s is an import: the start message must name its source", spec.Name)}
	case spec.Import == nil && o.Source != "":
		return res, &BadMessageError{Reason: fmt.Sprintf("job %s is not an import: it takes no source", spec.Name)}
	case spec.Import != nil && o.RerunOf != "":
		return res, &BadMessageError{Reason: "an import is not re-run by id: fix the failed rows and import them as a new file"}
	}
	active := activeName(spec.Name)
	if spec.Import != nil {
		// One active run per file version: two drops of different files import side by side, a
		// duplicate notification of the same drop finds its run active, and a file replaced while
		// its first version imports still gets its own run.
		var err error
		if o.version, o.header, err = e.probeImport(ctx, spec, o.Source); err != nil {
			return res, err
		}
		active = importActiveName(spec.Name, o.Source, o.version)
	}
	for attempt := 0; attempt < 10; attempt++ {
		act, etag, err := load[Active](ctx, e.Store, active)
		if errors.Is(err, checkpoint.ErrStoreMissing) {
			// Storage was wiped: every earlier run's checkpoints are gone (their leftover messages fail
			// closed on the missing manifest). Creating this run's documents recreates the store.
			zerolog.Ctx(ctx).Warn().Str("job", spec.Name).Msg("checkpoint store missing (container deleted?); starting afresh")
			err = checkpoint.ErrNotFound
		}
		switch {
		case errors.Is(err, checkpoint.ErrNotFound):
			_, err = create(ctx, e.Store, active, Active{Run: o.Run, Since: e.now().UTC(), Writer: nonce()})
		case err != nil:
			return res, fmt.Errorf("%w: read active run: %w", ErrTransient, err)
		case act.Run == o.Run:
			err = nil // this very run (a duplicate firing): fall through to the manifest, which decides
		default:
			busy, res2, ferr := e.checkActive(ctx, act.Run)
			if ferr != nil {
				return res, ferr
			}
			if busy {
				return res2, nil
			}
			_, err = save(ctx, e.Store, active, Active{Run: o.Run, Since: e.now().UTC(), Writer: nonce()}, etag)
		}
		if errors.Is(err, checkpoint.ErrConflict) {
			continue // another starter moved first: look again
		}
		if err != nil {
			return res, fmt.Errorf("%w: claim active run: %w", ErrTransient, err)
		}
		return e.createRun(ctx, spec, o)
	}
	return res, fmt.Errorf("%w: active-run marker for %s keeps changing", ErrTransient, spec.Name)
}

// checkActive decides whether the run marked active still blocks a new one. A finished or missing run
// does not; a live one does; a stale one is resumed (and still blocks).
func (e *Engine) checkActive(ctx context.Context, run string) (bool, Result, error) {
	var res Result
	man, _, err := load[Manifest](ctx, e.Store, manifestName(run))
	if errors.Is(err, checkpoint.ErrNotFound) {
		return false, res, nil
	}
	if err != nil {
		return false, res, fmt.Errorf("%w: read manifest of %s: %w", ErrTransient, run, err)
	}
	if man.State == RunDone {
		return false, res, nil
	}
	last := man.Updated
	if prog, _, perr := load[Progress](ctx, e.Store, progressName(run)); perr == nil && prog.Updated.After(last) {
		last = prog.Updated
	}
	if e.now().Sub(last) < e.Opt.StaleAfter {
		res.logf("run %s is still active (last progress %s ago); not starting another", run, e.now().Sub(last).Round(time.Second))
		return true, res, nil
	}
	res, err = e.resume(ctx, man)
	return true, res, err
}

func (e *Engine) createRun(ctx context.Context, spec *Spec, o StartOptions) (Result, error) {
	if e.Opt.ChunkSize > 0 {
		s := *spec
		s.ChunkSize = e.Opt.ChunkSize
		spec = &s
	}
	now := e.now().UTC()
	man := Manifest{Run: o.Run, Job: spec.Name, Spec: spec, DryRun: o.DryRun || e.Opt.DryRun, RerunOf: o.RerunOf,
		Trigger: o.Trigger, State: RunPlanning, Created: now, Updated: now, Writer: nonce(),
		Incremental: spec.IsIncremental(), Full: o.Full}
	if spec.Import != nil {
		man.Source, man.SourceVersion, man.Header = o.Source, o.version, o.header
	}
	if _, err := create(ctx, e.Store, manifestName(o.Run), man); err != nil {
		if errors.Is(err, checkpoint.ErrConflict) {
			// A second firing of the same occurrence. If the first one died before handing planning on
			// (killed mid-page), the run is stale by now and is taken over; otherwise nothing to do.
			busy, res, err := e.checkActive(ctx, o.Run)
			if err != nil || busy {
				return res, err
			}
			return Result{Logs: []string{fmt.Sprintf("run %s already exists; nothing to start", o.Run)}}, nil
		}
		return Result{}, fmt.Errorf("%w: create manifest: %w", ErrTransient, err)
	}
	zerolog.Ctx(ctx).Info().Str("run", o.Run).Bool("dry_run", man.DryRun).Bool("full", man.Full).Str("trigger", o.Trigger).Msg("run started")
	// The first step plans one page only, so chunks start flowing as soon as it returns (the host binds
	// its output messages only then); the plan message it hands on plans PlanPages pages per step.
	res, err := e.planStep(ctx, o.Run, "", 0, 1)
	res.Logs = append([]string{fmt.Sprintf("started run %s of %s", o.Run, spec.Name)}, res.Logs...)
	return res, err
}

// planStep reads up to maxPages pages from cursor, writes a checkpoint per chunk and returns the
// chunk messages plus, when more pages remain, a plan message to continue. Chunk sequence numbers
// follow the cursor deterministically, so a redelivered step recreates the same chunks (their
// checkpoints already exist and are reused) instead of new copies.
func (e *Engine) planStep(ctx context.Context, run, cursor string, seq, maxPages int) (Result, error) {
	var res Result
	man, _, err := load[Manifest](ctx, e.Store, manifestName(run))
	if err != nil {
		return res, fmt.Errorf("%w: read manifest of %s: %w", ErrTransient, run, err)
	}
	if man.RerunOf != "" {
		return e.planRerun(ctx, man)
	}
	if man.Spec.Import != nil {
		return e.planImport(ctx, man, cursor, seq, maxPages)
	}
	spec := man.Spec
	e.observer().Touch(run)
	startCursor := cursor
	records, fresh, done, deltaNext := 0, 0, false, ""
	deadline, hasDeadline := ctx.Deadline()
	margin := e.yieldMargin(ctx)
	for pages := 0; ; pages++ {
		page, err := e.planPage(ctx, man, cursor)
		if err != nil {
			return Result{}, err
		}
		recs := page.recs
		fresh += page.fresh
		if page.deltaLink != "" {
			deltaNext = page.deltaLink
		}
		for start := 0; start < len(recs); start += spec.ChunkSize {
			part := recs[start:min(start+spec.ChunkSize, len(recs))]
			msg, err := e.planChunk(ctx, man, seq, part)
			if err != nil {
				return Result{}, err
			}
			res.Enqueue = append(res.Enqueue, msg)
			records += len(part)
			seq++
		}
		cursor = page.next
		if cursor == "" {
			done = true
			break
		}
		if pages+1 >= maxPages || (hasDeadline && time.Until(deadline) < margin) || ctxutil.Stopped(ctx) {
			break
		}
	}
	return e.recordPlanned(ctx, man, &res, planned{start: startCursor, cursor: cursor, seq: seq, records: records, fresh: fresh, deltaNext: deltaNext, done: done})
}

// planned is what one planning step did: from cursor start to cursor, chunks up to seq.
type planned struct {
	start, cursor string
	seq, records  int
	fresh         int
	deltaNext     string
	done          bool
	note          string // ends the log line
}

// recordPlanned records a planning step in the manifest and hands planning on: a plan message
// from its cursor when it is not done; the run may complete when it is.
func (e *Engine) recordPlanned(ctx context.Context, man *Manifest, res *Result, p planned) (Result, error) {
	run := man.Run
	cursor, seq, records, fresh, deltaNext, done, startCursor := p.cursor, p.seq, p.records, p.fresh, p.deltaNext, p.done, p.start
	if _, err := modify(ctx, e.Store, manifestName(run), func(m *Manifest) (*Manifest, error) {
		// A step is recorded once: by the delivery that finds the manifest still at its start cursor.
		// (Fresh records make chunk-less steps, so the sequence number alone cannot tell.)
		if m == nil || m.PlanningDone || m.Cursor != startCursor {
			return nil, errNoChange // a redelivered step: already recorded
		}
		m.PlannedRecords += records + fresh
		m.Fresh += fresh
		m.NextSeq = max(m.NextSeq, seq)
		if deltaNext != "" {
			m.DeltaNext = deltaNext
		}
		if man.DeltaFailed {
			m.DeltaFailed = true // the delta link failed: this step fell back to a full read
		}
		m.Cursor = cursor
		m.PlanningDone = done
		if man.PlanError != "" {
			m.PlanError = man.PlanError
		}
		if done {
			m.State = RunProcessing
			m.Cursor = ""
		}
		m.Updated = e.now().UTC()
		m.Writer = nonce()
		return m, nil
	}); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrTransient, err)
	}
	if !done {
		next := Message{Kind: KindPlan, Job: man.Job, Run: run, Cursor: cursor, Seq: seq}
		s, err := next.Encode()
		if err != nil {
			return Result{}, err
		}
		res.Enqueue = append(res.Enqueue, s)
	}
	res.logf("planned %d records in %d chunks (through chunk %d), %d fresh; planning %s%s", p.records, len(res.Enqueue)-boolInt(!p.done), p.seq, p.fresh, map[bool]string{true: "complete", false: "continues"}[p.done], p.note)
	if done {
		if err := e.tryComplete(ctx, run); err != nil {
			return *res, err
		}
	}
	return *res, nil
}

// planChunk writes one chunk's checkpoint (if it does not exist yet) and returns its message.
func (e *Engine) planChunk(ctx context.Context, man *Manifest, seq int, recs []Record) (string, error) {
	ch := Chunk{Run: man.Run, Seq: seq, State: ChunkPending, Updated: e.now().UTC(), Writer: nonce(), Records: recs}
	ids := chunkIDs(&ch)
	if _, err := create(ctx, e.Store, chunkName(man.Run, seq), ch); err != nil {
		if !errors.Is(err, checkpoint.ErrConflict) {
			return "", fmt.Errorf("%w: write chunk %d: %w", ErrTransient, seq, err)
		}
		// Planned before (a redelivered step): the existing checkpoint is authoritative.
		old, _, lerr := load[Chunk](ctx, e.Store, chunkName(man.Run, seq))
		if lerr != nil {
			return "", fmt.Errorf("%w: read chunk %d: %w", ErrTransient, seq, lerr)
		}
		ids = chunkIDs(old)
	}
	m := Message{Kind: KindChunk, Job: man.Job, Run: man.Run, Seq: seq, IDs: ids}
	return m.Encode()
}

func chunkIDs(ch *Chunk) []string {
	ids := make([]string, len(ch.Records))
	for i, r := range ch.Records {
		ids[i] = r.ID
	}
	return ids
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// planRerun plans a run over the records that failed (or never finished) in an earlier run.
func (e *Engine) planRerun(ctx context.Context, man *Manifest) (Result, error) {
	var res Result
	if man.PlanningDone {
		return res, nil
	}
	var ids []string
	err := e.Store.List(ctx, chunkPrefix(man.RerunOf), func(name string) error {
		ch, _, err := load[Chunk](ctx, e.Store, name)
		if err != nil {
			return err
		}
		for _, r := range ch.Records {
			if r.Outcome == "" || r.Outcome == pipeline.Failed {
				ids = append(ids, r.ID)
			}
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("%w: read chunks of %s: %w", ErrTransient, man.RerunOf, err)
	}
	seq, planned := 0, 0
	for start := 0; start < len(ids); start += man.Spec.ChunkSize {
		part := ids[start:min(start+man.Spec.ChunkSize, len(ids))]
		rows, err := e.DV.GetByIDs(ctx, dvTable(man.Spec), part, man.Spec.SelectColumns())
		if err != nil {
			return Result{}, fmt.Errorf("%w: read records to re-run: %w", ErrTransient, err)
		}
		if len(rows) == 0 {
			continue // all deleted since
		}
		recs, err := toRecords(man.Spec, rows)
		if err != nil {
			return Result{}, err
		}
		// A re-run asks about every record it names.
		if recs, _, err = e.siftAs(ctx, man, recs, siftAll); err != nil {
			return Result{}, err
		}
		msg, err := e.planChunk(ctx, man, seq, recs)
		if err != nil {
			return Result{}, err
		}
		res.Enqueue = append(res.Enqueue, msg)
		planned += len(rows)
		seq++
	}
	if _, err := modify(ctx, e.Store, manifestName(man.Run), func(m *Manifest) (*Manifest, error) {
		m.NextSeq, m.PlannedRecords, m.PlanningDone, m.State = seq, planned, true, RunProcessing
		m.Updated, m.Writer = e.now().UTC(), nonce()
		return m, nil
	}); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrTransient, err)
	}
	res.logf("re-run of %s: %d of %d unfinished records still exist, in %d chunks", man.RerunOf, planned, len(ids), seq)
	return res, e.tryComplete(ctx, man.Run)
}
