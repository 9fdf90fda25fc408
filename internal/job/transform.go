package job

import (
	"context"

	"dvbulk/internal/enrich"
	"dvbulk/internal/pipeline"
)

// enrichTransform asks the enrichment service about records, sending only the job's input columns.
type enrichTransform struct {
	client Enricher
	input  []string
}

func (t *enrichTransform) Transform(ctx context.Context, items []*pipeline.Item) []pipeline.TransformResult {
	recs := make([]enrich.Record, len(items))
	for i, it := range items {
		in := make(map[string]any, len(t.input))
		for _, c := range t.input {
			in[c] = it.Current[c]
		}
		recs[i] = enrich.Record{ID: it.ID, Input: in}
	}
	out := make([]pipeline.TransformResult, len(items))
	// Enrich's error only says that some records were not answered; each record has its own Result.
	results, _ := t.client.Enrich(ctx, recs)
	byID := make(map[string]enrich.Result, len(results))
	for _, r := range results {
		byID[r.ID] = r
	}
	for i, it := range items {
		r, ok := byID[it.ID]
		switch {
		case ok && r.Err == enrich.ReasonCanceled:
			// Not answered (stopped before sending, or cancelled): stays pending for a later attempt.
			out[i] = pipeline.TransformResult{Pending: true}
		case !ok:
			out[i] = pipeline.TransformResult{Err: "enrichment: no result for record", Retryable: true}
		case r.Err != "":
			out[i] = pipeline.TransformResult{Err: "enrichment: " + r.Err, Retryable: r.Retryable}
		default:
			out[i] = pipeline.TransformResult{Fields: r.Fields}
		}
	}
	return out
}

// sizedEnricher is an Enricher that says how much work keeps it busy (enrich.Client.Limits).
type sizedEnricher interface {
	Limits() (batch, concurrency int)
}

// enrichSizing fills in the transform batch and workers an operator left at zero from the
// enricher's limits: groups of the records per request it uses now, and as many groups at once
// as its concurrency ceiling. One chunk alone can then use the instance's whole enrichment
// allowance; with many chunks, the client's own limiter (shared by all of them) keeps the
// instance inside it, so the workers only wait there.
func enrichSizing(en Enricher, batch, workers int) (int, int) {
	s, ok := en.(sizedEnricher)
	if !ok || (batch > 0 && workers > 0) {
		return batch, workers
	}
	b, c := s.Limits()
	if batch <= 0 {
		batch = b
	}
	if workers <= 0 {
		workers = c
	}
	return batch, workers
}

// recalcTransform computes new values with the job's compiled expressions.
type recalcTransform struct{ prog *Program }

func (t *recalcTransform) Transform(_ context.Context, items []*pipeline.Item) []pipeline.TransformResult {
	out := make([]pipeline.TransformResult, len(items))
	for i, it := range items {
		env := make(map[string]any, len(it.Current))
		for k, v := range it.Current {
			if n, ok := v.(int64); ok {
				env[k] = int(n) // expressions are type-checked against int
			} else {
				env[k] = v
			}
		}
		fields, err := t.prog.Eval(env)
		if err != nil {
			out[i] = pipeline.TransformResult{Err: err.Error()}
			continue
		}
		out[i] = pipeline.TransformResult{Fields: fields}
	}
	return out
}
