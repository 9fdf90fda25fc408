package report

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/job"
	"dvbulk/internal/pipeline"
)

// WriteFailed writes the run's failed and skipped records as CSV: the record key, the job's input
// columns (the values read at planning), outcome, reason, the Dataverse error code when the reason
// carries one, and the chunk. It reads one chunk checkpoint at a time, so memory stays bounded by a
// chunk (at most 1,000 records) whatever the run's size. Every cell is neutralised against
// spreadsheet formula injection (Neutralise). It returns the number of records written.
func WriteFailed(ctx context.Context, st checkpoint.Store, run string, out io.Writer) (int, error) {
	s, err := job.ReadStatus(ctx, st, run)
	if err != nil {
		return 0, err
	}
	spec := s.Manifest.Spec
	w := csv.NewWriter(out)
	header := append([]string{spec.Table.Key}, spec.Input...)
	header = append(header, "outcome", "reason", "error_code", "chunk")
	if err := w.Write(header); err != nil {
		return 0, err
	}
	n := 0
	prefix := "runs/" + run + "/chunks/"
	err = st.List(ctx, prefix, func(name string) error {
		data, _, err := st.Get(ctx, name)
		if errors.Is(err, checkpoint.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("report: read %s: %w", name, err)
		}
		ch, err := job.DecodeChunk(data)
		if err != nil {
			return fmt.Errorf("report: %s: %w", name, err)
		}
		for _, rec := range ch.Records {
			if rec.Outcome != pipeline.Failed && rec.Outcome != pipeline.Skipped {
				continue
			}
			row := make([]string, 0, len(header))
			row = append(row, rec.ID)
			for _, col := range spec.Input {
				row = append(row, cell(rec.Current[col]))
			}
			row = append(row, string(rec.Outcome), rec.Reason, ErrorCode(rec.Reason), fmt.Sprint(ch.Seq))
			for i := range row {
				row[i] = Neutralise(row[i])
			}
			if err := w.Write(row); err != nil {
				return err
			}
			n++
		}
		w.Flush() // one chunk at a time reaches the output
		return w.Error()
	})
	if err != nil {
		return n, err
	}
	w.Flush()
	return n, w.Error()
}

// cell formats a column value as read from the checkpoint: strings as they are, numbers in their
// JSON form, null as empty.
func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	case bool, float64, int, int64:
		return fmt.Sprint(x)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// Neutralise makes a cell safe to open in a spreadsheet: one that begins with =, +, -, @ (or a tab or
// carriage return, which some spreadsheets skip before such a character) is prefixed with a single
// quote, so it is shown as text and never evaluated as a formula (OWASP: CSV injection).
func Neutralise(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

var codeRE = regexp.MustCompile(`\((0x[0-9A-Fa-f]{8})\)`)

// ErrorCode extracts the Dataverse error code (such as 0x80040265) from a failure reason; the
// client's errors carry it in parentheses after the HTTP status.
func ErrorCode(reason string) string {
	if !strings.Contains(reason, "0x") {
		return ""
	}
	if m := codeRE.FindStringSubmatch(reason); m != nil {
		return m[1]
	}
	return ""
}
