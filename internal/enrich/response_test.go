package enrich

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMatchResponse(t *testing.T) {
	sent := []Record{{ID: "a"}, {ID: "B"}, {ID: "c"}}
	ok := func(id string, f map[string]any) Result { return Result{ID: id, Fields: f} }
	bad := func(id, reason string) Result { return Result{ID: id, Err: reason} }
	for _, tt := range []struct {
		name            string
		body            string
		want            []Result
		unknown, dups   int
		malformedReason string
	}{
		{name: "all answered",
			body: `{"results":[{"id":"c","fields":{"n":3}},{"id":"a","fields":{"n":1.50}},{"id":"b","fields":{"s":"x","z":null}}]}`,
			want: []Result{ok("a", map[string]any{"n": json.Number("1.50")}), ok("B", map[string]any{"s": "x", "z": nil}), ok("c", map[string]any{"n": json.Number("3")})}},
		{name: "errors and missing",
			body: `{"results":[{"id":"a","error":"no match","fields":{"n":1}},{"id":"B","error":{"code":7,"msg":"gone"}}]}`,
			want: []Result{bad("a", "no match"), bad("B", `{"code":7,"msg":"gone"}`), bad("c", ReasonMissing)}},
		{name: "empty or null error is success",
			body: `{"results":[{"id":"a","error":"","fields":{}},{"id":"B","error":null},{"id":"c"}]}`,
			want: []Result{ok("a", map[string]any{}), ok("B", map[string]any{}), ok("c", map[string]any{})}},
		{name: "unknown, id-less and duplicate results",
			body:    `{"results":[{"id":"zz","fields":{}},{"fields":{}},{"id":"a","fields":{"v":1}},{"id":"A","fields":{"v":2}},{"id":"a","error":"late"}],"extra":1}`,
			want:    []Result{ok("a", map[string]any{"v": json.Number("1")}), bad("B", ReasonMissing), bad("c", ReasonMissing)},
			unknown: 2, dups: 2},
		{name: "empty results", body: ` {"results":[]} `,
			want: []Result{bad("a", ReasonMissing), bad("B", ReasonMissing), bad("c", ReasonMissing)}},
		{name: "not JSON", body: `<html>busy</html>`, malformedReason: "decode"},
		{name: "truncated", body: `{"results":[{"id":"`, malformedReason: "decode"},
		{name: "no results", body: `{"data":[]}`, malformedReason: `no "results"`},
		{name: "null results", body: `{"results":null}`, malformedReason: `no "results"`},
		{name: "array", body: `[{"id":"a"}]`, malformedReason: "decode"},
		{name: "results not an array", body: `{"results":{"id":"a"}}`, malformedReason: "decode"},
		{name: "numeric id", body: `{"results":[{"id":1}]}`, malformedReason: "decode"},
		{name: "fields not an object", body: `{"results":[{"id":"a","fields":[1]}]}`, malformedReason: "decode"},
		{name: "trailing data", body: `{"results":[]}{"results":[]}`, malformedReason: "after the JSON"},
		{name: "empty body", body: ``, malformedReason: "decode"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := matchResponse([]byte(tt.body), sent)
			if tt.malformedReason != "" {
				if err == nil || !strings.Contains(err.Error(), tt.malformedReason) {
					t.Fatalf("error %v, want one mentioning %q", err, tt.malformedReason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(m.results, tt.want) || m.unknown != tt.unknown || m.duplicates != tt.dups {
				t.Errorf("got %+v unknown %d dups %d\nwant %+v unknown %d dups %d", m.results, m.unknown, m.duplicates, tt.want, tt.unknown, tt.dups)
			}
		})
	}
}

// TestMatchResponseSameIDTwice: a record sent twice gets the answer twice, in separate maps.
func TestMatchResponseSameIDTwice(t *testing.T) {
	m, err := matchResponse([]byte(`{"results":[{"id":"a","fields":{"n":1}}]}`), []Record{{ID: "a"}, {ID: "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if m.results[0].Fields["n"] != json.Number("1") || m.results[1].Fields["n"] != json.Number("1") {
		t.Fatalf("results %+v", m.results)
	}
	m.results[0].Fields["n"] = "changed"
	if m.results[1].Fields["n"] != json.Number("1") {
		t.Error("the two results share one map")
	}
}

func TestExcerpt(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{"  plain  ", "plain"},
		{"line one\r\n\tline two\x00\x1b[31m", "line one line two [31m"},
		{"bad \xff utf8", "bad ? utf8"},
		{strings.Repeat("é", 250), strings.Repeat("é", excerptRunes) + "…"},
	} {
		if got := excerpt(tt.in); got != tt.want {
			t.Errorf("excerpt(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzDecodeResponse feeds arbitrary bodies to the decoder: it must never panic and, when it
// accepts a body, must return exactly one result per sent record, each either enriched or
// failed with a bounded, single-line reason. Seeds: testdata/fuzz/FuzzDecodeResponse.
func FuzzDecodeResponse(f *testing.F) {
	f.Add([]byte(`{"results":[{"id":"a","fields":{"numberofemployees":120,"revenue":5000000.0}},{"id":"b","error":"no match"}]}`))
	sent := []Record{{ID: "a"}, {ID: "b"}, {ID: "A"}, {ID: "00000000-0000-4000-8000-000000000001"}}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := matchResponse(body, sent)
		if err != nil {
			if m.results != nil {
				t.Fatal("results returned with an error")
			}
			return
		}
		if len(m.results) != len(sent) || m.unknown < 0 || m.duplicates < 0 {
			t.Fatalf("%d results for %d records (unknown %d, dups %d)", len(m.results), len(sent), m.unknown, m.duplicates)
		}
		for i, r := range m.results {
			if r.ID != sent[i].ID || r.Retryable {
				t.Fatalf("result %d: %+v", i, r)
			}
			if (r.Err == "") == (r.Fields == nil) {
				t.Fatalf("result %d is neither clearly enriched nor failed: %+v", i, r)
			}
			if !utf8.ValidString(r.Err) || strings.ContainsAny(r.Err, "\n\r") || utf8.RuneCountInString(r.Err) > maxServiceErrorRunes+1 {
				t.Fatalf("result %d: reason %q", i, r.Err)
			}
		}
	})
}
