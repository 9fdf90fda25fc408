package job

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"dvbulk/internal/ledger"
	"dvbulk/internal/pipeline"
)

// ReasonNoMatch is the failure reason of a record the enrichment service answered "no match" for.
const ReasonNoMatch = "enrichment: no match"

// IsIncremental reports whether runs of the job consult and keep its fingerprint ledger: enrich
// jobs always, recalculate jobs that opt in.
func (s *Spec) IsIncremental() bool {
	return s.Transform.Kind == KindEnrich || s.Transform.Kind == KindRecalculate && s.Incremental
}

// Version fingerprints what makes an answer depend on the job rather than on the record: the table,
// the input columns and their types, the writable allow-list and the transform. Changing any of them
// changes every record's fingerprint, so the whole table is asked again.
func (s *Spec) Version() string {
	types := make([]string, len(s.Input))
	for i, c := range s.Input {
		types[i] = s.Columns[c]
	}
	data, _ := json.Marshal(struct {
		Table     Table     `json:"table"`
		Input     []string  `json:"input"`
		Types     []string  `json:"types"`
		Writable  []string  `json:"writable"`
		Transform Transform `json:"transform"`
	}{s.Table, s.Input, types, s.Writable, s.Transform})
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// fingerprint hashes the job version and a record's input values (normalized, in input order).
func fingerprint(spec *Spec, version string, cur map[string]any) uint64 {
	vals := make([][]byte, len(spec.Input))
	for i, col := range spec.Input {
		v := cur[col]
		if n, err := pipeline.Normalize(spec.Columns[col], v); err == nil {
			v = n
		}
		vals[i], _ = json.Marshal(v)
	}
	return ledger.Fingerprint(version, vals)
}

// sift splits planned records into those to send and the number that are fresh. Every returned
// record carries its fingerprint so the ledger can be updated once its outcome is durable.
func (e *Engine) sift(ctx context.Context, man *Manifest, recs []Record) ([]Record, int, error) {
	return e.siftAs(ctx, man, recs, siftNormal)
}

type siftMode int

const (
	siftNormal siftMode = iota // the rules decide; fresh ones are counted
	siftAll                    // every record is sent (a full run, a re-run, the due records)
	// siftDelta is the change-tracking delta: records whose ledger entry is due at the run's start
	// are left to the due scan that follows (so none is planned twice), fresh ones are not counted
	// (that scan counts every entry that is not due), and a planned record that had such an entry
	// takes one off that count.
	siftDelta
)

func (e *Engine) siftAs(ctx context.Context, man *Manifest, recs []Record, mode siftMode) ([]Record, int, error) {
	if !man.Incremental {
		return recs, 0, nil
	}
	spec := man.Spec
	version := spec.Version()
	ids := make([]string, len(recs))
	for i := range recs {
		fp := fingerprint(spec, version, recs[i].Current)
		recs[i].FP = strconv.FormatUint(fp, 16)
		ids[i] = recs[i].ID
	}
	if man.Full || mode == siftAll {
		return recs, 0, nil
	}
	known, err := ledger.New(e.Store, man.Job).Lookup(ctx, ids)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrTransient, err)
	}
	now := e.now()
	if mode == siftDelta {
		now = man.Created
	}
	out, fresh := recs[:0], 0
	for _, rec := range recs {
		fp, _ := strconv.ParseUint(rec.FP, 16, 64)
		ent, ok := known[rec.ID]
		if mode == siftDelta && ok && e.due(spec, rec.ID, ent, now) {
			continue
		}
		reason := e.Opt.Rules.Decide(rec.ID, fp, ent, ok, now)
		if spec.Transform.Kind == KindRecalculate && (reason == ledger.Refresh || reason == ledger.NoMatchRetry) {
			reason = ledger.Fresh // a recalculation depends on its inputs only
		}
		switch {
		case reason == ledger.Fresh && mode == siftNormal:
			fresh++
			continue
		case reason == ledger.Fresh:
			continue
		case mode == siftDelta && ok:
			fresh--
		}
		out = append(out, rec)
	}
	return out, fresh, nil
}

// due reports whether a ledger entry makes its record eligible at now whatever its inputs are; a
// recalculation depends on its inputs only, so only a failed attempt is due.
func (e *Engine) due(spec *Spec, id string, ent ledger.Entry, now time.Time) bool {
	if spec.Transform.Kind == KindRecalculate {
		return ent.Failed
	}
	return e.Opt.Rules.Due(id, ent, now)
}

// recordLedger writes a finished chunk's durable outcomes into the ledger: a success (written, or
// already holding the answer) or a "no match" records the fingerprint and the time; a record gone
// from Dataverse is forgotten; any other failure or a skip is flagged, so the record is asked again. A dry run writes nothing. Applying the same chunk twice is harmless.
func (e *Engine) recordLedger(ctx context.Context, man *Manifest, ch *Chunk) error {
	if !man.Incremental || man.DryRun {
		return nil
	}
	now := e.now()
	var ups []ledger.Update
	for _, r := range ch.Records {
		if r.FP == "" {
			continue
		}
		fp, err := strconv.ParseUint(r.FP, 16, 64)
		if err != nil {
			continue // not ours to trust: the record is simply asked again
		}
		switch {
		case r.Outcome == pipeline.Updated || r.Outcome == pipeline.Unchanged:
			ups = append(ups, ledger.Update{ID: r.ID, Entry: ledger.Entry{FP: fp, At: now}})
		case r.Outcome == pipeline.Failed && r.Reason == ReasonNoMatch:
			ups = append(ups, ledger.Update{ID: r.ID, Entry: ledger.Entry{FP: fp, At: now, NoMatch: true}})
		case r.Outcome == pipeline.Failed || r.Outcome == pipeline.Skipped:
			// Not a success: asked again next run (a change-tracking run finds it by this flag).
			ups = append(ups, ledger.Update{ID: r.ID, Entry: ledger.Entry{FP: fp, At: now, Failed: true}})
		case r.Outcome == pipeline.Gone:
			ups = append(ups, ledger.Update{ID: r.ID, Remove: true})
		}
	}
	if len(ups) == 0 {
		return nil
	}
	if err := ledger.New(e.Store, man.Job).Apply(ctx, ups); err != nil {
		return fmt.Errorf("%w: record chunk %d in the ledger: %w", ErrTransient, ch.Seq, err)
	}
	return nil
}
