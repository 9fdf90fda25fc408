package importfile

import (
	"encoding/csv"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkDecoder decodes data and checks what every planner relies on: records are numbered 1..n,
// their byte ranges are in order, inside the file and never empty, lines never go backwards, and
// decoding resumed at any record boundary gives the same records.
func checkDecoder(t *testing.T, data string, f Format) {
	recs, d, err := decodeAll(t, data, Options{Format: f, MaxRecordBytes: 256})
	if d == nil {
		return // a bad header or an empty file
	}
	prevEnd, prevLine := int64(-1), int64(0)
	for i, r := range recs {
		if r.Number != int64(i+1) {
			t.Fatalf("record %d numbered %d", i+1, r.Number)
		}
		if r.Offset < prevEnd || r.End <= r.Offset || r.End > int64(len(data)) {
			t.Fatalf("record %d: bytes %d..%d after %d in a file of %d", r.Number, r.Offset, r.End, prevEnd, len(data))
		}
		if r.Line < prevLine {
			t.Fatalf("record %d: line %d before line %d", r.Number, r.Line, prevLine)
		}
		prevEnd, prevLine = r.End, r.Line
	}
	if len(recs) == 0 {
		return
	}
	// Resume at the middle record.
	mid := recs[len(recs)/2]
	start := Position{Offset: mid.Offset, Record: mid.Number - 1, Line: mid.Line}
	rest, _, err2 := decodeAll(t, data[mid.Offset:], Options{Format: f, MaxRecordBytes: 256, Start: start, Header: d.Header()})
	if (err == nil) != (err2 == nil) {
		t.Fatalf("full pass error %v, resumed pass error %v", err, err2)
	}
	if !reflect.DeepEqual(rest, recs[len(recs)/2:]) {
		t.Fatalf("resumed at %+v:\n got %+v\nwant %+v", start, rest, recs[len(recs)/2:])
	}
}

func FuzzCSV(f *testing.F) {
	for _, s := range []string{"a,b\n1,2\n", "a,b\r\n\"x\ny\",\"\"\"\"\r\n", "a\n\"open", "a,b\nx\"y,2\n\n\n3", "\uFEFFa\n\xff\n", "a\n\r\r\n1\r"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) { checkDecoder(t, data, CSV) })
}

func FuzzNDJSON(f *testing.F) {
	for _, s := range []string{"{\"a\":1}\n", "{\"a\":\"x\\ny\"}\r\n\n[1]\n{", "{\"a\":1,\"a\":2}", "\uFEFF{}\n{\"\\ud800\":1}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) { checkDecoder(t, data, NDJSON) })
}

// FuzzCSVRoundTrip writes fields with encoding/csv and checks they decode to exactly what was
// written, including quotes, commas and line breaks inside fields.
func FuzzCSVRoundTrip(f *testing.F) {
	f.Add("plain|with,comma|with \"quote\"|multi\nline|\r\n|", true)
	f.Add("|||", false)
	f.Fuzz(func(t *testing.T, cells string, crlf bool) {
		if !utf8.ValidString(cells) || strings.ContainsRune(cells, '\uFEFF') {
			t.Skip()
		}
		fields := strings.Split(cells, "|")
		header := make([]string, len(fields))
		for i := range header {
			header[i] = "c" + strings.Repeat("x", i)
		}
		if len(header) < 2 {
			header = append(header, "extra")
			fields = append(fields, "")
		}
		var b strings.Builder
		w := csv.NewWriter(&b)
		w.UseCRLF = crlf
		_ = w.Write(header)
		_ = w.Write(fields)
		_ = w.Write(fields)
		w.Flush()
		if crlf {
			// In this mode encoding/csv drops CR and writes LF as CRLF inside quoted fields
			// (and only quoted fields can hold either).
			for i, s := range fields {
				fields[i] = strings.ReplaceAll(strings.ReplaceAll(s, "\r", ""), "\n", "\r\n")
			}
		}
		recs, _, err := decodeAll(t, b.String(), Options{Format: CSV})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 2 {
			t.Fatalf("%d records from %q", len(recs), b.String())
		}
		for _, r := range recs {
			if r.Err != nil {
				t.Fatalf("%q: %v", b.String(), r.Err)
			}
			if got := texts(r); !reflect.DeepEqual(got, fields) {
				t.Fatalf("decoded %q, wrote %q (file %q)", got, fields, b.String())
			}
		}
	})
}
