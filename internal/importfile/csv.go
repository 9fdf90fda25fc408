package importfile

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// csvDecoder reads RFC 4180 CSV: comma-separated fields, CRLF or LF line ends, fields in double
// quotes may hold commas, quotes (doubled) and line breaks. Blank lines between records are
// skipped. It is written by hand rather than on encoding/csv because that reader reports neither
// the byte offset of a record nor lets one bad record pass without losing its place.
type csvDecoder struct {
	src    *source
	header []string
	max    int
	n      int64 // records returned so far
	done   bool

	buf    strings.Builder
	fields []string
}

func newCSV(src *source, o Options, atStart bool) (*csvDecoder, error) {
	d := &csvDecoder{src: src, max: o.MaxRecordBytes, n: o.Start.Record}
	if !atStart {
		if len(o.Header) == 0 {
			return nil, errors.New("importfile: resuming a CSV file needs its header")
		}
		d.header = o.Header
		return d, nil
	}
	fields, line, _, _, reason, err := d.read()
	if err == io.EOF {
		return nil, errors.New("importfile: the CSV file is empty: want a header row")
	}
	if err != nil {
		return nil, err
	}
	if reason != "" {
		return nil, fmt.Errorf("importfile: header row (line %d): %s", line, reason)
	}
	seen := make(map[string]bool, len(fields))
	for i, f := range fields {
		name := strings.TrimSpace(f)
		if name == "" {
			return nil, fmt.Errorf("importfile: header row (line %d): column %d has no name", line, i+1)
		}
		if seen[name] {
			return nil, fmt.Errorf("importfile: header row (line %d): column %q appears twice", line, name)
		}
		seen[name] = true
		fields[i] = name
	}
	d.header = fields
	return d, nil
}

func (d *csvDecoder) Header() []string { return d.header }

func (d *csvDecoder) Position() Position {
	return Position{Offset: d.src.pos(), Record: d.n, Line: d.src.line}
}

func (d *csvDecoder) Next() (*Record, error) {
	if d.done {
		return nil, io.EOF
	}
	fields, line, start, end, reason, err := d.read()
	if err == io.EOF {
		d.done = true
		return nil, io.EOF
	}
	if err != nil {
		d.done = true
		return nil, err
	}
	d.n++
	rec := &Record{Number: d.n, Line: line, Offset: start, End: end}
	if reason == "" && len(fields) != len(d.header) {
		reason = fmt.Sprintf("has %d fields, the header has %d", len(fields), len(d.header))
	}
	if reason != "" {
		rec.Err = &RowError{Record: d.n, Line: line, Reason: reason}
	}
	n := min(len(fields), len(d.header))
	rec.Fields = make([]Field, n)
	for i := range n {
		rec.Fields[i] = Field{Name: d.header[i], Value: Value{Text: fields[i]}}
	}
	return rec, nil
}

// read parses one record. reason is set when the record is malformed but the file can go on;
// err when it cannot (io.EOF before any record).
func (d *csvDecoder) read() (fields []string, line, start, end int64, reason string, err error) {
	src := d.src
	// Skip blank lines (a bare line terminator; a lone CR at the start of a line counts as one).
	for {
		r, off, err := src.next()
		if err != nil {
			return nil, 0, 0, 0, "", err
		}
		if r == '\n' || r == '\r' {
			continue
		}
		src.unread()
		start = off
		break
	}
	line = src.line
	d.fields = d.fields[:0]
	size := 0
	add := func(r rune) {
		if size < d.max {
			d.buf.WriteRune(r)
		}
		size += runeLen(r)
		if size >= d.max && reason == "" {
			reason = fmt.Sprintf("longer than %d bytes", d.max)
		}
	}
	endField := func() {
		d.fields = append(d.fields, d.buf.String())
		d.buf.Reset()
	}
	finish := func() ([]string, int64, int64, int64, string, error) {
		endField()
		out := make([]string, len(d.fields))
		copy(out, d.fields)
		return out, line, start, src.pos(), reason, nil
	}
	bad := func(s string) {
		if reason == "" {
			reason = s
		}
	}

	for {
		// At the start of a field.
		r, _, err := src.next()
		if err == io.EOF {
			return finish()
		}
		if err != nil {
			return nil, 0, 0, 0, "", err
		}
		if r == '"' {
			qline := src.line
		quoted:
			for {
				r, _, err := src.next()
				if err == io.EOF {
					return nil, 0, 0, 0, "", fmt.Errorf("importfile: record %d (line %d): quoted field opened on line %d is never closed", d.n+1, line, qline)
				}
				if err != nil {
					return nil, 0, 0, 0, "", err
				}
				if r != '"' {
					add(r)
					continue
				}
				r, _, err = src.next()
				switch {
				case err == io.EOF:
					return finish()
				case err != nil:
					return nil, 0, 0, 0, "", err
				case r == '"':
					add('"')
				case r == ',':
					endField()
					break quoted
				case r == '\n':
					return finish()
				case r == '\r' && d.crlf():
					return finish()
				default:
					bad(fmt.Sprintf("field %d: unexpected %q after a closing quote (a quote inside a quoted field is written \"\")", len(d.fields)+1, r))
					add(r)
					if done, err := d.unquoted(add, bad, endField); err != nil || done {
						if err != nil && err != io.EOF {
							return nil, 0, 0, 0, "", err
						}
						return finish()
					}
					break quoted
				}
			}
			continue
		}
		src.unread()
		done, err := d.unquoted(add, bad, endField)
		if err != nil && err != io.EOF {
			return nil, 0, 0, 0, "", err
		}
		if done || err == io.EOF {
			return finish()
		}
	}
}

// unquoted reads the rest of an unquoted field. done reports the end of the record; otherwise
// a comma ended the field (and endField has run).
func (d *csvDecoder) unquoted(add func(rune), bad func(string), endField func()) (done bool, err error) {
	for {
		r, _, err := d.src.next()
		if err != nil {
			return true, err
		}
		switch {
		case r == ',':
			endField()
			return false, nil
		case r == '\n':
			return true, nil
		case r == '\r' && d.crlf():
			return true, nil
		case r == '"':
			bad(fmt.Sprintf("field %d: a quote inside an unquoted field (quote the whole field and double the quote)", len(d.fields)+1))
		}
		add(r)
	}
}

// crlf consumes the LF of a CRLF just after a CR; a CR without one is data.
func (d *csvDecoder) crlf() bool {
	r, _, err := d.src.next()
	if err != nil {
		return false
	}
	if r == '\n' {
		return true
	}
	d.src.unread()
	return false
}

func runeLen(r rune) int {
	switch {
	case r < 0x80:
		return 1
	case r < 0x800:
		return 2
	case r < 0x10000:
		return 3
	}
	return 4
}
