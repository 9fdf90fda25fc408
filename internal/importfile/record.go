package importfile

import (
	"fmt"
	"io"
	"strings"
)

// Format is a file format.
type Format string

// The formats an import reads.
const (
	CSV    Format = "csv"
	NDJSON Format = "ndjson"
)

// ParseFormat accepts "csv" and "ndjson" (also "jsonl"), case-insensitively.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "csv":
		return CSV, nil
	case "ndjson", "jsonl":
		return NDJSON, nil
	}
	return "", fmt.Errorf("importfile: unknown format %q (want csv or ndjson)", s)
}

// FormatOf guesses a format from a file name's extension; ok is false when it cannot tell.
func FormatOf(name string) (Format, bool) {
	n := strings.ToLower(name)
	switch {
	case strings.HasSuffix(n, ".csv"):
		return CSV, true
	case strings.HasSuffix(n, ".ndjson"), strings.HasSuffix(n, ".jsonl"):
		return NDJSON, true
	}
	return "", false
}

// Kind is the JSON kind of a value. CSV values are always strings.
type Kind uint8

// The kinds of Value.
const (
	KindString Kind = iota
	KindNumber
	KindBool
	KindNull
	KindComplex // a JSON object or array
)

// Value is one cell: its text (a JSON number or literal as written) and its kind.
type Value struct {
	Text string
	Kind Kind
}

// Empty reports a cell that holds nothing: an empty CSV field or a JSON null.
func (v Value) Empty() bool { return v.Kind == KindNull || v.Kind == KindString && v.Text == "" }

// Field is a named cell.
type Field struct {
	Name  string
	Value Value
}

// Position is where decoding starts: a byte offset in the file as stored and the record number
// and line of the record that starts there. The zero Position is the start of the file.
type Position struct {
	Offset int64 `json:"offset"`
	Record int64 `json:"record"` // records before this position
	Line   int64 `json:"line"`   // line the next record starts on, 1-based
}

// Record is one decoded record.
type Record struct {
	Number int64 // 1-based, counting data records only (not the CSV header or blank lines)
	Line   int64 // 1-based line the record starts on
	Offset int64 // byte offset of the record's first byte
	End    int64 // byte offset just past the record (and its line terminator)
	Fields []Field
	// Err is a *RowError when the record could not be decoded; Fields may then be partial.
	Err error
}

// Get returns the named cell; ok is false when the record has no such column.
func (r *Record) Get(name string) (Value, bool) {
	for _, f := range r.Fields {
		if f.Name == name {
			return f.Value, true
		}
	}
	return Value{}, false
}

// RowError is a problem with one record. It names the record number, the line the record starts
// on and, where there is one, the column.
type RowError struct {
	Record int64
	Line   int64
	Column string
	Reason string
}

func (e *RowError) Error() string {
	if e.Column == "" {
		return fmt.Sprintf("record %d (line %d): %s", e.Record, e.Line, e.Reason)
	}
	return fmt.Sprintf("record %d (line %d), column %q: %s", e.Record, e.Line, e.Column, e.Reason)
}

// DefaultMaxRecordBytes bounds one record's size so a file with a runaway quote or a line without
// an end cannot exhaust memory.
const DefaultMaxRecordBytes = 1 << 20

// Options configure a Decoder.
type Options struct {
	Format   Format
	Encoding Encoding // the zero value is UTF-8
	// Start resumes decoding at a record boundary; the reader must then begin at Start.Offset.
	Start Position
	// Header is the CSV header, required when Start is not the start of the file (it is read
	// from the first line otherwise).
	Header []string
	// MaxRecordBytes bounds a record's decoded size; 0 means DefaultMaxRecordBytes.
	MaxRecordBytes int
}

// Decoder reads records one at a time.
type Decoder interface {
	// Next returns the next record, io.EOF after the last, or an error that ends the file.
	Next() (*Record, error)
	// Position is where the record after the last one returned starts.
	Position() Position
	// Header is the CSV header (nil for NDJSON).
	Header() []string
}

// NewDecoder returns a decoder of r. For a CSV file read from its start it reads the header.
func NewDecoder(r io.Reader, o Options) (Decoder, error) {
	if o.MaxRecordBytes <= 0 {
		o.MaxRecordBytes = DefaultMaxRecordBytes
	}
	atStart := o.Start == (Position{})
	src := newSource(r, o.Encoding, o.Start.Offset, o.Start.Line)
	if atStart {
		if err := src.bom(); err != nil {
			return nil, err
		}
	}
	switch o.Format {
	case CSV:
		return newCSV(src, o, atStart)
	case NDJSON:
		return &ndjson{src: src, max: o.MaxRecordBytes, n: o.Start.Record}, nil
	}
	return nil, fmt.Errorf("importfile: unknown format %q (want csv or ndjson)", o.Format)
}
