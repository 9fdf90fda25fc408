package job

import (
	"context"
	"errors"
	"fmt"

	"dvbulk/internal/ctxutil"
	"dvbulk/internal/dataverse"
	"dvbulk/internal/pipeline"
)

// Importer is what an import chunk needs from the Dataverse client.
type Importer interface {
	Create(ctx context.Context, t dataverse.Table, ws []dataverse.Write, o dataverse.WriteOptions) ([]dataverse.WriteResult, error)
	Upsert(ctx context.Context, t dataverse.Table, ws []dataverse.Write, o dataverse.WriteOptions) ([]dataverse.WriteResult, error)
}

// importRecords writes a chunk's pending imported records, a few requests' worth at a time so a
// stop or a lost lease is honoured between groups (what is on the wire finishes). Creates carry
// the record's derived id, so a record an interrupted attempt created is found (Existed) rather
// than created twice; upserts address the record by its alternate key, which is idempotent.
func (r *chunkRun) importRecords(ctx context.Context, items []*pipeline.Item, index map[string]*Record, emit func(pipeline.Event)) error {
	spec := r.man.Spec
	im := spec.Import
	imp, ok := r.e.DV.(Importer)
	if !ok && !r.man.DryRun {
		return fmt.Errorf("job %s: the Dataverse client cannot create or upsert records", spec.Name)
	}
	o := dataverse.WriteOptions{Mode: dataverse.WriteMode(spec.Write.Mode), BatchSize: spec.Write.BatchSize,
		BypassBusinessLogic: spec.Write.BypassBusinessLogic, BypassCustomPlugins: spec.Write.BypassCustomPlugins,
		SuppressDuplicateDetection: spec.Write.SuppressDuplicateDetection}
	group := spec.Write.BatchSize * max(1, r.e.Opt.WriteWorkers, 4)
	for start := 0; start < len(items); start += group {
		if ctxutil.Stopped(ctx) || ctx.Err() != nil {
			return nil // the rest stays pending: the chunk yields
		}
		if err := r.lease.Guard(); err != nil {
			return err
		}
		part := items[start:min(start+group, len(items))]
		if r.man.DryRun {
			for _, it := range part {
				emit(pipeline.Event{ID: it.ID, Kind: pipeline.EventDone, Outcome: pipeline.WouldUpdate, Changed: it.Fields})
			}
			continue
		}
		ws := make([]dataverse.Write, len(part))
		for i, it := range part {
			ws[i].Fields = it.Fields
			if im.Mode == ImportUpsert {
				ws[i].Key.Alt = keyValues(it.Fields, im.Key)
			} else {
				ws[i].Key.ID = it.ID
			}
		}
		write := imp.Create
		if im.Mode == ImportUpsert {
			write = imp.Upsert
		}
		results, _ := write(ctx, dvTable(spec), ws, o) // each record has its own result
		for i, res := range results {
			it := part[i]
			rec := index[it.ID]
			switch res.Status {
			case dataverse.Created:
				emit(pipeline.Event{ID: it.ID, Kind: pipeline.EventDone, Outcome: OutcomeCreated})
			case dataverse.Existed:
				emit(pipeline.Event{ID: it.ID, Kind: pipeline.EventDone, Outcome: OutcomeCreated, Reason: "created by an earlier attempt"})
			case dataverse.Upserted:
				emit(pipeline.Event{ID: it.ID, Kind: pipeline.EventDone, Outcome: OutcomeUpserted})
			default:
				if errors.Is(res.Err, dataverse.ErrUnavailable) || ctx.Err() != nil {
					emit(pipeline.Event{ID: it.ID, Kind: pipeline.EventRetry, Reason: fmt.Sprint(res.Err)})
					continue
				}
				emit(pipeline.Event{ID: it.ID, Kind: pipeline.EventDone, Outcome: pipeline.Failed, Reason: importFailure(rec, im.Mode, res.Err)})
			}
		}
	}
	return nil
}

// importFailure says why a record was refused, naming its record number and line.
func importFailure(rec *Record, mode string, err error) string {
	why := fmt.Sprint(err)
	var ae *dataverse.APIError
	if errors.As(err, &ae) {
		why = ae.Message
		switch {
		case dataverse.IsCode(err, dataverse.CodeDuplicateAltKey) && mode == ImportCreate:
			why = "a record with this alternate key already exists (create mode does not update): " + ae.Message
		case dataverse.IsCode(err, "0x80060891") || dataverse.IsCode(err, "0x80040217"):
			why = "lookup target not found: " + ae.Message
		}
		if ae.Code != "" {
			why += " (" + ae.Code + ")"
		}
	}
	return fmt.Sprintf("record %d (line %d): %s", rec.Row, rec.Line, why)
}
