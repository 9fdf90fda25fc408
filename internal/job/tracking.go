package job

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/dataverse"
	"dvbulk/internal/ledger"
)

// Tracker is what change-tracking runs need from the Dataverse client. It is optional: an engine
// whose client lacks it pages the table with the job's filter.
type Tracker interface {
	ChangeTrackingEnabled(ctx context.Context, t dataverse.Table) (bool, error)
	QueryDelta(ctx context.Context, q dataverse.Query, link string) (dataverse.DeltaPage, error)
}

// Tracking modes of a run (Manifest.Tracking; "" until the first planning step has chosen).
const (
	TrackingOff   = "off"
	TrackingFull  = "full"
	TrackingDelta = "delta"
)

// DeltaState is the job's change-tracking token, kept by the last completed run.
type DeltaState struct {
	Link    string    `json:"link"`
	Version string    `json:"version"` // the job version the token was read for
	Run     string    `json:"run"`
	Updated time.Time `json:"updated"`
	Writer  string    `json:"w"`
}

func deltaName(job string) string { return "jobs/" + job + "/delta.json" }

// dueCursor marks planning steps that scan the ledger for due records ("due:<first shard>").
const dueCursor = "due:"

// dueShardsPerStep bounds one planning step's share of the ledger scan.
const dueShardsPerStep = 64

// chooseTracking decides how a new incremental run reads the table: with change tracking when the
// client and the table support it and the job filter can be applied by the app; from the job's
// delta link when one exists for this job version (and the run is not full), else with a full
// tracked read that yields one. Any failure to find out means normal paging.
func (e *Engine) chooseTracking(ctx context.Context, spec *Spec, full bool) (mode, from string) {
	tr, ok := e.DV.(Tracker)
	if !ok || e.Opt.NoChangeTracking {
		return TrackingOff, ""
	}
	log := zerolog.Ctx(ctx)
	if _, err := parseLocalFilter(spec.Filter); err != nil {
		log.Info().Str("job", spec.Name).Str("reason", err.Error()).Msg("job filter cannot be applied to change-tracking reads; paging the table")
		return TrackingOff, ""
	}
	on, err := tr.ChangeTrackingEnabled(ctx, dvTable(spec))
	if err != nil || !on {
		log.Info().Str("table", spec.Table.LogicalName).AnErr("err", err).Msg("table does not track changes; paging it")
		return TrackingOff, ""
	}
	st, _, err := load[DeltaState](ctx, e.Store, deltaName(spec.Name))
	if err != nil || full || st.Version != spec.Version() || st.Link == "" {
		return TrackingFull, ""
	}
	return TrackingDelta, st.Link
}

// planPage is one step's read: records to chunk, the fresh count and where the next read starts.
type plannedPage struct {
	recs      []Record
	fresh     int
	next      string // "" when planning is done
	deltaLink string // the token for the next run, once a tracked read reaches it
}

// planPage reads the page at cursor according to the run's tracking mode.
func (e *Engine) planPage(ctx context.Context, man *Manifest, cursor string) (plannedPage, error) {
	spec := man.Spec
	pageSize := spec.PlanPageSize()
	if cursor == "" && man.Tracking == "" && man.Incremental && man.RerunOf == "" {
		// Chosen by the first planning step, after the manifest exists (a timer killed while asking
		// leaves a run to take over, not nothing), and kept in it so redeliveries agree.
		mode, from := e.chooseTracking(ctx, spec, man.Full)
		m, err := modify(ctx, e.Store, manifestName(man.Run), func(m *Manifest) (*Manifest, error) {
			if m.Tracking != "" {
				return nil, errNoChange // another delivery chose first
			}
			m.Tracking, m.DeltaFrom, m.Writer = mode, from, nonce()
			return m, nil
		})
		if err != nil {
			return plannedPage{}, fmt.Errorf("%w: %w", ErrTransient, err)
		}
		man.Tracking, man.DeltaFrom = m.Tracking, m.DeltaFrom
	}
	if man.Tracking == TrackingOff || man.Tracking == "" {
		q := dataverse.Query{Table: dvTable(spec), Select: spec.SelectColumns(), Filter: spec.Filter,
			OrderBy: spec.Table.Key + " asc", PageSize: pageSize}
		page, err := e.DV.QueryPage(ctx, q, cursor)
		if err != nil {
			return plannedPage{}, fmt.Errorf("%w: read page of %s: %w", ErrTransient, spec.Table.EntitySet, err)
		}
		recs, err := toRecords(spec, page.Records)
		if err != nil {
			return plannedPage{}, err
		}
		recs, fresh, err := e.sift(ctx, man, recs)
		return plannedPage{recs: recs, fresh: fresh, next: page.NextLink}, err
	}
	if man.Tracking == TrackingDelta && (cursor == "" || strings.HasPrefix(cursor, dueCursor)) {
		return e.planDue(ctx, man, cursor)
	}
	tr := e.DV.(Tracker)
	filter, err := parseLocalFilter(spec.Filter)
	if err != nil {
		return plannedPage{}, err
	}
	q := dataverse.Query{Table: dvTable(spec), Select: mergeColumns(spec.SelectColumns(), filter.columns()), PageSize: pageSize}
	link := cursor
	if cursor == deltaStart {
		link = man.DeltaFrom
	}
	page, err := tr.QueryDelta(ctx, q, link)
	if err != nil && cursor == deltaStart {
		// The error for an expired token is not documented: any failure of the stored link falls
		// back to a tracked read of the whole table, which rebuilds the token. The due records are
		// planned already and this read leaves them out, as the delta would have.
		zerolog.Ctx(ctx).Warn().Err(err).Str("run", man.Run).Msg("delta link failed; reading the whole table to rebuild it")
		man.DeltaFailed = true
		page, err = tr.QueryDelta(ctx, q, "")
	}
	if err != nil {
		return plannedPage{}, fmt.Errorf("%w: read changes of %s: %w", ErrTransient, spec.Table.EntitySet, err)
	}
	var rows []dataverse.Record
	for _, row := range page.Records {
		if filter.match(row) {
			rows = append(rows, row)
		} else if id, err := dataverse.ParseID(fmt.Sprint(row[spec.Table.Key])); err == nil {
			page.Deleted = append(page.Deleted, id) // deactivated: out of the job, never enriched
		}
	}
	recs, err := toRecords(spec, rows)
	if err != nil {
		return plannedPage{}, err
	}
	out := plannedPage{next: page.NextLink, deltaLink: page.DeltaLink}
	mode := siftNormal
	if man.Tracking == TrackingDelta {
		mode = siftDelta
		if out.fresh, err = e.dropGone(ctx, man, page.Deleted); err != nil {
			return plannedPage{}, err
		}
	}
	recs, fresh, err := e.siftAs(ctx, man, recs, mode)
	out.recs, out.fresh = recs, out.fresh+fresh
	return out, err
}

// deltaStart is the cursor of a delta run's first read of its stored delta link.
const deltaStart = "delta:"

// dropGone takes rows that left the job (deleted, or no longer matching its filter) out of the
// ledger, so later runs neither count nor ask about them, and returns the (negative) correction to
// the fresh count for those the due scan counted. A dry run leaves the ledger alone.
func (e *Engine) dropGone(ctx context.Context, man *Manifest, ids []string) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	known, err := ledger.New(e.Store, man.Job).Lookup(ctx, ids)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrTransient, err)
	}
	correction := 0
	var ups []ledger.Update
	for id, ent := range known {
		if !e.due(man.Spec, id, ent, man.Created) {
			correction--
		}
		ups = append(ups, ledger.Update{ID: id, Remove: true})
	}
	if len(ups) > 0 && !man.DryRun {
		if err := ledger.New(e.Store, man.Job).Apply(ctx, ups); err != nil {
			return 0, fmt.Errorf("%w: %w", ErrTransient, err)
		}
	}
	return correction, nil
}

// planDue scans a share of the ledger for records due whatever their inputs (refresh, no-match
// retry, failed last time): a delta names only rows that changed. Their current values are read by
// id; deleted or filtered-out ones are dropped. Every entry not due counts as fresh (the delta that
// follows corrects the count for those it plans or finds gone). Each shard is scanned by exactly
// one step, before any chunk of the run can touch it, so the count does not depend on timing.
func (e *Engine) planDue(ctx context.Context, man *Manifest, cursor string) (plannedPage, error) {
	spec := man.Spec
	if cursor == "" {
		cursor = dueCursor + "0"
	}
	first, err := strconv.Atoi(strings.TrimPrefix(cursor, dueCursor))
	if err != nil || first < 0 || first >= ledger.Shards {
		return plannedPage{}, &BadMessageError{Reason: fmt.Sprintf("plan cursor %q is not valid", cursor)}
	}
	last := min(first+dueShardsPerStep, ledger.Shards)
	var ids []string
	fresh := 0
	err = ledger.New(e.Store, man.Job).ScanShards(ctx, first, last, func(id string, ent ledger.Entry) error {
		if e.due(spec, id, ent, man.Created) {
			ids = append(ids, id)
		} else {
			fresh++
		}
		return nil
	})
	if err != nil {
		return plannedPage{}, fmt.Errorf("%w: %w", ErrTransient, err)
	}
	filter, err := parseLocalFilter(spec.Filter)
	if err != nil {
		return plannedPage{}, err
	}
	out := plannedPage{fresh: fresh, next: deltaStart}
	if last < ledger.Shards {
		out.next = dueCursor + strconv.Itoa(last)
	}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := e.DV.GetByIDs(ctx, dvTable(spec), ids, mergeColumns(spec.SelectColumns(), filter.columns()))
	if err != nil {
		return plannedPage{}, fmt.Errorf("%w: read due records: %w", ErrTransient, err)
	}
	var keep []dataverse.Record
	for _, row := range rows {
		if filter.match(row) {
			keep = append(keep, row)
		}
	}
	recs, err := toRecords(spec, keep)
	if err != nil {
		return plannedPage{}, err
	}
	out.recs, _, err = e.siftAs(ctx, man, recs, siftAll)
	return out, err
}

// commitDelta keeps a completed run's delta link for the job's next run (never for a dry run).
func (e *Engine) commitDelta(ctx context.Context, man *Manifest) error {
	if man.DeltaNext == "" || man.DryRun {
		return nil
	}
	_, err := modify(ctx, e.Store, deltaName(man.Job), func(d *DeltaState) (*DeltaState, error) {
		if d != nil && d.Run == man.Run {
			return nil, errNoChange
		}
		return &DeltaState{Link: man.DeltaNext, Version: man.Spec.Version(), Run: man.Run, Updated: e.now().UTC(), Writer: nonce()}, nil
	})
	if err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
		return fmt.Errorf("%w: keep the delta link: %w", ErrTransient, err)
	}
	return nil
}

func mergeColumns(a, b []string) []string {
	out := append([]string(nil), a...)
	for _, c := range b {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}
