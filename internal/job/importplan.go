package job

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/ctxutil"
	"dvbulk/internal/importfile"
	"dvbulk/internal/pipeline"
)

// An import plans by file offset: each planning step streams the source from the cursor (a byte
// offset at a record boundary with the record and line numbers there), maps the records and writes
// a chunk checkpoint per ChunkSize records, holding the mapped values, so a chunk never reads the
// file again. A record that cannot be decoded or mapped is failed in its chunk at planning, with
// its record number, line and column. A redelivered step recreates the same chunks (record ids
// derive from the run and the record number) and finds their checkpoints already there.

func keysPrefix(run string) string        { return "runs/" + run + "/keys/" }
func keysName(run string, seq int) string { return fmt.Sprintf("%s%06d.bin", keysPrefix(run), seq) }

func encodeCursor(p importfile.Position) string {
	if p == (importfile.Position{}) {
		return ""
	}
	return fmt.Sprintf("%d:%d:%d", p.Offset, p.Record, p.Line)
}

func decodeCursor(s string) (importfile.Position, error) {
	if s == "" {
		return importfile.Position{}, nil
	}
	parts := strings.Split(s, ":")
	var v [3]int64
	if len(parts) != 3 {
		return importfile.Position{}, &BadMessageError{Reason: fmt.Sprintf("import cursor %q is not offset:record:line", truncate(s, 60))}
	}
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 {
			return importfile.Position{}, &BadMessageError{Reason: fmt.Sprintf("import cursor %q is not offset:record:line", truncate(s, 60))}
		}
		v[i] = n
	}
	return importfile.Position{Offset: v[0], Record: v[1], Line: v[2]}, nil
}

// openImport opens man's source at pos and returns its decoder. The source's version must still
// be the one the run started on.
func (e *Engine) openImport(ctx context.Context, man *Manifest, pos importfile.Position) (importfile.Decoder, io.Closer, string, error) {
	if e.Imports == nil {
		return nil, nil, "", &BadMessageError{Reason: "import jobs are not configured: no import source (AzureWebJobsStorage, DVBULK_IMPORT_CONTAINER)"}
	}
	im := man.Spec.Import
	f, err := im.format(man.Source)
	if err != nil {
		return nil, nil, "", &BadMessageError{Reason: err.Error()}
	}
	enc, err := importfile.LookupEncoding(im.Encoding)
	if err != nil {
		return nil, nil, "", &BadMessageError{Reason: err.Error()}
	}
	rc, version, err := e.Imports.Open(ctx, man.Source, pos.Offset)
	if errors.Is(err, ErrSourceMissing) {
		return nil, nil, "", &BadMessageError{Reason: err.Error()}
	}
	if err != nil {
		return nil, nil, "", fmt.Errorf("%w: open %s: %w", ErrTransient, man.Source, err)
	}
	if man.SourceVersion != "" && version != man.SourceVersion {
		rc.Close()
		return nil, nil, "", &BadMessageError{Reason: fmt.Sprintf("source %s changed since run %s started (version %s, now %s); start a new run", man.Source, man.Run, man.SourceVersion, version)}
	}
	dec, err := importfile.NewDecoder(rc, importfile.Options{Format: f, Encoding: enc, Start: pos, Header: man.Header})
	if err != nil {
		rc.Close()
		return nil, nil, "", &BadMessageError{Reason: fmt.Sprintf("source %s: %v", man.Source, err)}
	}
	return dec, rc, version, nil
}

// probeImport checks a new import run's source before the run is created: it exists, its header
// (CSV) has every mapped column. It returns the source's version and header.
func (e *Engine) probeImport(ctx context.Context, spec *Spec, source string) (string, []string, error) {
	if err := CheckSource(source, e.Opt.ImportPrefix); err != nil {
		return "", nil, &BadMessageError{Reason: err.Error()}
	}
	man := &Manifest{Spec: spec, Source: source}
	dec, c, version, err := e.openImport(ctx, man, importfile.Position{})
	if err != nil {
		return "", nil, err
	}
	defer c.Close()
	if h := dec.Header(); h != nil {
		if err := spec.Import.Mapping.CheckHeader(h); err != nil {
			return "", nil, &BadMessageError{Reason: fmt.Sprintf("source %s: %v", source, err)}
		}
	}
	return version, dec.Header(), nil
}

// importKeys is the first record number of every alternate-key value seen so far in a run's file.
type importKeys map[uint64]int64

func (e *Engine) loadKeys(ctx context.Context, run string) (importKeys, error) {
	keys := importKeys{}
	err := e.Store.List(ctx, keysPrefix(run), func(name string) error {
		data, _, err := e.Store.Get(ctx, name)
		if err != nil {
			return err
		}
		for i := 0; i+12 <= len(data); i += 12 {
			h, n := binary.LittleEndian.Uint64(data[i:]), int64(binary.LittleEndian.Uint32(data[i+8:]))
			if first, ok := keys[h]; !ok || n < first {
				keys[h] = n
			}
		}
		return nil
	})
	return keys, err
}

// planImport is planStep for an import: up to maxPages × PageSize records from the cursor.
func (e *Engine) planImport(ctx context.Context, man *Manifest, cursor string, seq, maxPages int) (Result, error) {
	var res Result
	spec, im := man.Spec, man.Spec.Import
	pos, err := decodeCursor(cursor)
	if err != nil {
		return res, err
	}
	var keys importKeys
	if len(im.Key) > 0 {
		if keys, err = e.loadKeys(ctx, man.Run); err != nil {
			return res, fmt.Errorf("%w: read import keys of %s: %w", ErrTransient, man.Run, err)
		}
	}
	dec, closer, _, err := e.openImport(ctx, man, pos)
	if err != nil {
		return res, err
	}
	defer closer.Close()
	var (
		stepKeys []byte
		chunk    []Record
		records  int
		done     bool
		failed   int
	)
	budget := maxPages * spec.PageSize
	deadline, hasDeadline := ctx.Deadline()
	margin := e.yieldMargin(ctx)
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		msg, err := e.planImportChunk(ctx, man, seq, chunk)
		if err != nil {
			return err
		}
		res.Enqueue = append(res.Enqueue, msg)
		records += len(chunk)
		seq++
		chunk = nil
		pos = dec.Position()
		return nil
	}
	startSeq := seq
	for {
		rec, err := dec.Next()
		if err == io.EOF {
			if err := flush(); err != nil {
				return Result{}, err
			}
			done = true
			break
		}
		if err != nil {
			// The rest of the file cannot be read (invalid UTF-8, an unclosed quote): what was
			// planned stands; the run records why planning stopped.
			if ferr := flush(); ferr != nil {
				return Result{}, ferr
			}
			var ee *importfile.EncodingError
			if !errors.As(err, &ee) && !strings.HasPrefix(err.Error(), "importfile:") {
				return Result{}, fmt.Errorf("%w: read %s: %w", ErrTransient, man.Source, err)
			}
			res.logf("source %s: planning stopped: %v", man.Source, err)
			man.PlanError = err.Error()
			done = true
			break
		}
		r := Record{ID: recordID(man.Run, rec.Number), Row: rec.Number, Line: rec.Line}
		fields, merr := im.Mapping.Map(rec)
		switch {
		case merr != nil:
			r.Outcome, r.Reason = pipeline.Failed, merr.Error()
		default:
			r.Fields = fields
			if h, ok := keyHash(fields, im.Key); ok && keys != nil {
				if first, seen := keys[h]; seen && first < rec.Number {
					r.Outcome, r.Reason, r.Fields = pipeline.Failed, fmt.Sprintf("record %d (line %d), column %q: key repeated in the file (first in record %d)", rec.Number, rec.Line, sourceOf(im, im.Key[0]), first), nil
				} else {
					keys[h] = rec.Number
					stepKeys = binary.LittleEndian.AppendUint64(stepKeys, h)
					stepKeys = binary.LittleEndian.AppendUint32(stepKeys, uint32(rec.Number))
				}
			}
		}
		if r.Outcome == pipeline.Failed {
			failed++
		}
		chunk = append(chunk, r)
		if len(chunk) == spec.ChunkSize {
			if err := flush(); err != nil {
				return Result{}, err
			}
			if records >= budget || (hasDeadline && time.Until(deadline) < margin) || ctxutil.Stopped(ctx) {
				break
			}
		}
	}
	if len(stepKeys) > 0 {
		if _, err := e.Store.Create(ctx, keysName(man.Run, startSeq), stepKeys); err != nil && !errors.Is(err, checkpoint.ErrConflict) {
			return Result{}, fmt.Errorf("%w: write import keys: %w", ErrTransient, err)
		}
	}
	next := encodeCursor(pos)
	if done {
		next = ""
	}
	return e.recordPlanned(ctx, man, &res, planned{start: cursor, cursor: next, seq: seq, records: records, done: done,
		note: fmt.Sprintf("; %d records failed decoding or mapping", failed)})
}

func sourceOf(im *ImportSpec, target string) string {
	for _, c := range im.Mapping.Columns {
		if c.Target == target {
			return c.Source
		}
	}
	return target
}

// planImportChunk writes one chunk checkpoint of mapped records (if it does not exist yet) and
// returns its message.
func (e *Engine) planImportChunk(ctx context.Context, man *Manifest, seq int, recs []Record) (string, error) {
	ch := Chunk{Run: man.Run, Seq: seq, State: ChunkPending, Records: recs, Updated: e.now().UTC(), Writer: nonce()}
	if _, err := create(ctx, e.Store, chunkName(man.Run, seq), ch); err != nil && !errors.Is(err, checkpoint.ErrConflict) {
		return "", fmt.Errorf("%w: write chunk %d: %w", ErrTransient, seq, err)
	}
	m := Message{Kind: KindChunk, Job: man.Job, Run: man.Run, Seq: seq, IDs: chunkIDs(&ch)}
	return m.Encode()
}
