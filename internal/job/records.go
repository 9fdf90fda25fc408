package job

import (
	"fmt"

	"dvbulk/internal/dataverse"
	"dvbulk/internal/pipeline"
)

// The records of a chunk checkpoint are the job's columns of each Dataverse row, normalized so values
// from Dataverse, the enrichment service and expressions compare equal when they mean the same thing.

// toRecords turns rows into chunk records.
func toRecords(spec *Spec, rows []dataverse.Record) ([]Record, error) {
	recs := make([]Record, 0, len(rows))
	for _, row := range rows {
		rec, err := toRecord(spec, row)
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

// toRecord turns a row into a chunk record with normalized current values.
func toRecord(spec *Spec, row dataverse.Record) (Record, error) {
	rawID, _ := row[spec.Table.Key].(string)
	id, err := dataverse.ParseID(rawID)
	if err != nil {
		return Record{}, fmt.Errorf("%w: row without a valid %s: %w", ErrTransient, spec.Table.Key, err)
	}
	rec := Record{ID: id, Current: map[string]any{}}
	if etag, ok := row["@odata.etag"].(string); ok {
		rec.ETag = etag
	}
	for _, col := range spec.SelectColumns() {
		if col == spec.Table.Key {
			continue
		}
		v := row[col]
		if n, err := pipeline.Normalize(spec.Columns[col], v); err == nil {
			v = n
		}
		rec.Current[col] = v
	}
	return rec, nil
}

func normalizeAll(spec *Spec, vals map[string]any) map[string]any {
	if vals == nil {
		return nil
	}
	out := make(map[string]any, len(vals))
	for k, v := range vals {
		if n, err := pipeline.Normalize(spec.Columns[k], v); err == nil {
			v = n
		}
		out[k] = v
	}
	return out
}

func dvTable(s *Spec) dataverse.Table {
	return dataverse.Table{EntitySet: s.Table.EntitySet, LogicalName: s.Table.LogicalName, Key: s.Table.Key}
}
