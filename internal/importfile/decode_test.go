package importfile

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

type row struct {
	num, line int64
	fields    []string
	err       string // substring of Err, "" for none
}

func decodeAll(t testing.TB, data string, o Options) ([]*Record, Decoder, error) {
	t.Helper()
	d, err := NewDecoder(strings.NewReader(data), o)
	if err != nil {
		return nil, nil, err
	}
	var out []*Record
	for {
		r, err := d.Next()
		if err == io.EOF {
			return out, d, nil
		}
		if err != nil {
			return out, d, err
		}
		out = append(out, r)
	}
}

func texts(r *Record) []string {
	var s []string
	for _, f := range r.Fields {
		s = append(s, f.Value.Text)
	}
	return s
}

func TestCSV(t *testing.T) {
	tests := []struct {
		name string
		data string
		want []row
	}{
		{"plain LF", "a,b\n1,2\n3,4\n", []row{{1, 2, []string{"1", "2"}, ""}, {2, 3, []string{"3", "4"}, ""}}},
		{"CRLF and no final newline", "a,b\r\n1,2\r\n3,4", []row{{1, 2, []string{"1", "2"}, ""}, {2, 3, []string{"3", "4"}, ""}}},
		{"BOM", "\uFEFFa,b\n1,2\n", []row{{1, 2, []string{"1", "2"}, ""}}},
		{"quoted comma, quote and newline", "a,b\n\"x,y\",\"say \"\"hi\"\"\"\n\"line1\nline2\",z\n5,6\n",
			[]row{{1, 2, []string{"x,y", `say "hi"`}, ""}, {2, 3, []string{"line1\nline2", "z"}, ""}, {3, 5, []string{"5", "6"}, ""}}},
		{"CRLF inside quotes is data", "a,b\r\n\"l1\r\nl2\",z\r\n", []row{{1, 2, []string{"l1\r\nl2", "z"}, ""}}},
		{"empty fields", "a,b,c\n,,\n\"\",x,\n", []row{{1, 2, []string{"", "", ""}, ""}, {2, 3, []string{"", "x", ""}, ""}}},
		{"blank lines skipped", "a,b\n\n1,2\n\r\n3,4\n\n", []row{{1, 3, []string{"1", "2"}, ""}, {2, 5, []string{"3", "4"}, ""}}},
		{"too few fields fail alone", "a,b\n1\n3,4\n", []row{{1, 2, []string{"1"}, "has 1 fields, the header has 2"}, {2, 3, []string{"3", "4"}, ""}}},
		{"too many fields fail alone", "a,b\n1,2,3\n3,4\n", []row{{1, 2, []string{"1", "2"}, "has 3 fields"}, {2, 3, []string{"3", "4"}, ""}}},
		{"bare quote fails alone", "a,b\nab\"c,2\n3,4\n", []row{{1, 2, []string{"ab\"c", "2"}, "quote inside an unquoted field"}, {2, 3, []string{"3", "4"}, ""}}},
		{"text after closing quote fails alone", "a,b\n\"x\"y,2\n3,4\n", []row{{1, 2, []string{"xy", "2"}, "after a closing quote"}, {2, 3, []string{"3", "4"}, ""}}},
		{"lone CR inside a field is data", "a,b\nx\ry,2\n", []row{{1, 2, []string{"x\ry", "2"}, ""}}},
		{"header only", "a,b\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, _, err := decodeAll(t, tt.data, Options{Format: CSV})
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != len(tt.want) {
				t.Fatalf("got %d records, want %d", len(recs), len(tt.want))
			}
			for i, w := range tt.want {
				r := recs[i]
				if r.Number != w.num || r.Line != w.line {
					t.Errorf("record %d: number %d line %d, want %d %d", i, r.Number, r.Line, w.num, w.line)
				}
				if got := texts(r); !reflect.DeepEqual(got, w.fields) {
					t.Errorf("record %d: fields %q, want %q", i, got, w.fields)
				}
				switch {
				case w.err == "" && r.Err != nil:
					t.Errorf("record %d: unexpected error %v", i, r.Err)
				case w.err != "" && (r.Err == nil || !strings.Contains(r.Err.Error(), w.err)):
					t.Errorf("record %d: error %v, want one containing %q", i, r.Err, w.err)
				}
				if w.err != "" {
					var re *RowError
					if !errors.As(r.Err, &re) || re.Record != w.num || re.Line != w.line {
						t.Errorf("record %d: error %#v does not name record %d line %d", i, r.Err, w.num, w.line)
					}
				}
			}
		})
	}
}

func TestCSVFileErrors(t *testing.T) {
	tests := []struct{ name, data, want string }{
		{"empty", "", "empty"},
		{"duplicate header", "a,a\n1,2\n", `"a" appears twice`},
		{"unnamed header column", "a,,c\n", "column 2 has no name"},
		{"unterminated quote", "a,b\n1,2\n\"open,3\n4,5\n", "record 2 (line 3): quoted field opened on line 3 is never closed"},
		{"UTF-16", "\xff\xfea\x00", "UTF-16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := decodeAll(t, tt.data, Options{Format: CSV})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestInvalidUTF8NamesOffset(t *testing.T) {
	for _, f := range []Format{CSV, NDJSON} {
		data := "a,b\nok,1\nbad\xe9,2\n"
		if f == NDJSON {
			data = `{"a":"ok"}` + "\n" + `{"a":"bad` + "\xe9" + `"}` + "\n"
		}
		_, _, err := decodeAll(t, data, Options{Format: f})
		var ee *EncodingError
		if !errors.As(err, &ee) || !errors.Is(err, ErrEncoding) {
			t.Fatalf("%s: error %v, want an EncodingError", f, err)
		}
		want := int64(strings.IndexByte(data, 0xe9))
		if ee.Offset != want || ee.Line != 3-boolInt(f == NDJSON) {
			t.Errorf("%s: offset %d line %d, want %d line %d", f, ee.Offset, ee.Line, want, 3-boolInt(f == NDJSON))
		}
		if !strings.Contains(err.Error(), "byte offset") {
			t.Errorf("%s: message %q does not say byte offset", f, err)
		}
	}
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func TestDeclaredEncoding(t *testing.T) {
	enc, err := LookupEncoding("windows-1252")
	if err != nil {
		t.Fatal(err)
	}
	// "Müller" and "€5" in Windows-1252: ü = 0xFC, € = 0x80.
	data := "name,price\nM\xfcller,\x805\n"
	recs, _, err := decodeAll(t, data, Options{Format: CSV, Encoding: enc})
	if err != nil {
		t.Fatal(err)
	}
	if got := texts(recs[0]); !reflect.DeepEqual(got, []string{"Müller", "€5"}) {
		t.Fatalf("fields %q", got)
	}
	// Offsets are in the file's bytes, not the transcoded ones.
	if recs[0].Offset != 11 || recs[0].End != int64(len(data)) {
		t.Errorf("offsets %d..%d, want 11..%d", recs[0].Offset, recs[0].End, len(data))
	}
	if _, _, err := decodeAll(t, "\xef\xbb\xbfa\n1\n", Options{Format: CSV, Encoding: enc}); err == nil || !strings.Contains(err.Error(), "byte order mark") {
		t.Errorf("UTF-8 BOM with a declared windows-1252: %v", err)
	}
	for _, name := range []string{"latin1", "ISO-8859-15", "cp1252", "utf8", ""} {
		if _, err := LookupEncoding(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	for _, name := range []string{"shift_jis", "utf-16", "klingon"} {
		if _, err := LookupEncoding(name); err == nil {
			t.Errorf("%q accepted", name)
		}
	}
}

// TestResume checks that decoding from any record boundary (as a chunk does) gives exactly the
// records a full pass gives from there, with the same numbers, lines and offsets.
func TestResume(t *testing.T) {
	files := map[Format]string{
		CSV:    "id,note\n1,plain\n2,\"multi\nline\"\n\n3,\"q \"\"x\"\"\"\r\n4,bad\"q\n5,end",
		NDJSON: "{\"id\":1}\n\n{\"id\":2,\"note\":\"a\\nb\"}\r\nnot json\n{\"id\":4}",
	}
	for f, data := range files {
		all, d, err := decodeAll(t, data, Options{Format: f})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[Format]int{CSV: 5, NDJSON: 4}[f]; len(all) != want {
			t.Fatalf("%s: %d records, want %d", f, len(all), want)
		}
		header := d.Header()
		// Re-derive the positions by walking again and recording Position() before each record.
		d2, _ := NewDecoder(strings.NewReader(data), Options{Format: f})
		for i := range all {
			pos := d2.Position()
			rest, _, err := decodeAll(t, data[pos.Offset:], Options{Format: f, Start: pos, Header: header})
			if err != nil {
				t.Fatalf("%s from %+v: %v", f, pos, err)
			}
			if !reflect.DeepEqual(rest, all[i:]) {
				t.Fatalf("%s from %+v:\n got %+v\nwant %+v", f, pos, rest, all[i:])
			}
			if _, err := d2.Next(); err != nil {
				t.Fatal(err)
			}
		}
		// Each record's bytes decode to that record alone.
		for _, r := range all {
			one, _, err := decodeAll(t, data[r.Offset:r.End], Options{Format: f, Start: Position{Offset: r.Offset, Record: r.Number - 1, Line: r.Line}, Header: header})
			if err != nil || len(one) != 1 || !reflect.DeepEqual(one[0], r) {
				t.Errorf("%s: record %d re-read from bytes %d..%d: %+v %v", f, r.Number, r.Offset, r.End, one, err)
			}
		}
	}
}

func TestResumeCSVNeedsHeader(t *testing.T) {
	if _, err := NewDecoder(strings.NewReader("1,2\n"), Options{Format: CSV, Start: Position{Offset: 4, Record: 1, Line: 2}}); err == nil {
		t.Fatal("resumed without a header")
	}
}

func TestNDJSON(t *testing.T) {
	data := `{"name":"A","n":12.50,"ok":true,"x":null,"o":{"k":1}}` + "\n" +
		"   \n" +
		`[1,2]` + "\n" +
		`{"a":1,"a":2}` + "\n" +
		`{"a":1} {"b":2}` + "\n" +
		`{"a":` + "\n" +
		`{"b":"é"}`
	recs, _, err := decodeAll(t, data, Options{Format: NDJSON})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		line int64
		err  string
	}{{1, ""}, {3, "not a JSON object"}, {4, `"a" appears twice`}, {5, "data after the JSON object"}, {6, "not valid JSON"}, {7, ""}}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for i, w := range want {
		r := recs[i]
		if r.Number != int64(i+1) || r.Line != w.line {
			t.Errorf("record %d: number %d line %d, want line %d", i, r.Number, r.Line, w.line)
		}
		if (w.err == "") != (r.Err == nil) || r.Err != nil && !strings.Contains(r.Err.Error(), w.err) {
			t.Errorf("record %d: err %v, want %q", i, r.Err, w.err)
		}
	}
	first := recs[0]
	wantFields := []Field{{"name", Value{"A", KindString}}, {"n", Value{"12.50", KindNumber}}, {"ok", Value{"true", KindBool}}, {"x", Value{"", KindNull}}, {"o", Value{`{"k":1}`, KindComplex}}}
	if !reflect.DeepEqual(first.Fields, wantFields) {
		t.Errorf("fields %+v", first.Fields)
	}
}

func TestMaxRecordBytes(t *testing.T) {
	big := strings.Repeat("x", 100)
	for _, f := range []Format{CSV, NDJSON} {
		data := "a\n\"" + big + "\"\nok\n"
		if f == NDJSON {
			data = `{"a":"` + big + `"}` + "\n" + `{"a":"ok"}` + "\n"
		}
		recs, _, err := decodeAll(t, data, Options{Format: f, MaxRecordBytes: 50})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 2 || recs[0].Err == nil || !strings.Contains(recs[0].Err.Error(), "longer than 50 bytes") || recs[1].Err != nil {
			t.Fatalf("%s: %+v", f, recs)
		}
	}
}

// TestLargeFileBoundedMemory streams a million-row file without holding it.
func TestLargeFileStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("large file")
	}
	const n = 200_000
	r := io.MultiReader(strings.NewReader("id,name\n"), &rowGen{n: n})
	d, err := NewDecoder(r, Options{Format: CSV})
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for {
		rec, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil || rec.Err != nil {
			t.Fatal(err, rec.Err)
		}
		count++
	}
	if count != n {
		t.Fatalf("%d records", count)
	}
}

type rowGen struct {
	n, i int
	buf  bytes.Buffer
}

func (g *rowGen) Read(p []byte) (int, error) {
	for g.buf.Len() < len(p) && g.i < g.n {
		g.i++
		g.buf.WriteString("id")
		g.buf.WriteString(strings.Repeat("7", g.i%7))
		g.buf.WriteString(",\"name, with comma\"\n")
	}
	if g.buf.Len() == 0 {
		return 0, io.EOF
	}
	return g.buf.Read(p)
}
