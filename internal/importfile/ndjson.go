package importfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// ndjson reads one JSON object per line. Blank lines are skipped.
type ndjson struct {
	src  *source
	max  int
	n    int64
	done bool
	line []byte
}

func (d *ndjson) Header() []string { return nil }

func (d *ndjson) Position() Position {
	return Position{Offset: d.src.pos(), Record: d.n, Line: d.src.line}
}

func (d *ndjson) Next() (*Record, error) {
	for !d.done {
		line, start, lineNo, long, err := d.readLine()
		if err == io.EOF {
			d.done = true
			if len(line) == 0 && !long {
				return nil, io.EOF
			}
		} else if err != nil {
			d.done = true
			return nil, err
		}
		if !long && len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		d.n++
		rec := &Record{Number: d.n, Line: lineNo, Offset: start, End: d.src.pos()}
		if long {
			rec.Err = &RowError{Record: d.n, Line: lineNo, Reason: fmt.Sprintf("longer than %d bytes", d.max)}
			return rec, nil
		}
		fields, err := decodeObject(line)
		rec.Fields = fields
		if err != nil {
			rec.Err = &RowError{Record: d.n, Line: lineNo, Reason: err.Error()}
		}
		return rec, nil
	}
	return nil, io.EOF
}

// readLine reads up to and including the next LF; the returned bytes are UTF-8 without the line
// terminator. long reports a line over the size bound (its bytes are dropped, not kept).
func (d *ndjson) readLine() (line []byte, start, lineNo int64, long bool, err error) {
	d.line = d.line[:0]
	start = d.src.pos()
	lineNo = d.src.line
	var buf [utf8.UTFMax]byte
	for {
		r, _, err := d.src.next()
		if err != nil {
			return d.line, start, lineNo, long, err
		}
		if r == '\n' {
			break
		}
		if len(d.line) >= d.max {
			long = true
			continue
		}
		n := utf8.EncodeRune(buf[:], r)
		d.line = append(d.line, buf[:n]...)
	}
	return bytes.TrimSuffix(d.line, []byte{'\r'}), start, lineNo, long, nil
}

// decodeObject reads one JSON object, keeping its keys in order and refusing repeated keys,
// trailing data and anything that is not an object.
func decodeObject(line []byte) ([]Field, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("not valid JSON: %v", jsonReason(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object (each line must be one {...} object)")
	}
	var fields []Field
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fields, fmt.Errorf("not valid JSON: %v", jsonReason(err))
		}
		name, _ := tok.(string)
		for _, f := range fields {
			if f.Name == name {
				return fields, fmt.Errorf("key %q appears twice", name)
			}
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fields, fmt.Errorf("not valid JSON: %v", jsonReason(err))
		}
		v, err := valueOf(raw)
		if err != nil {
			return fields, fmt.Errorf("key %q: %v", name, err)
		}
		fields = append(fields, Field{Name: name, Value: v})
	}
	if _, err := dec.Token(); err != nil {
		return fields, fmt.Errorf("not valid JSON: %v", jsonReason(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return fields, errors.New("data after the JSON object (one object per line)")
	}
	return fields, nil
}

func valueOf(raw json.RawMessage) (Value, error) {
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return Value{}, err
		}
		return Value{Text: s, Kind: KindString}, nil
	case 't', 'f':
		return Value{Text: string(raw), Kind: KindBool}, nil
	case 'n':
		return Value{Kind: KindNull}, nil
	case '{', '[':
		return Value{Text: string(raw), Kind: KindComplex}, nil
	}
	return Value{Text: string(raw), Kind: KindNumber}, nil
}

func jsonReason(err error) string {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return "unexpected end of line"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}
