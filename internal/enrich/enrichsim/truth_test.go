package enrichsim

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestTruthGolden pins Truth's output: tests, the demo and other processes predict answers from
// it, so it must not change by accident (nor depend on a per-process seed).
func TestTruthGolden(t *testing.T) {
	for _, tt := range []struct {
		id   string
		want map[string]any
	}{
		{"00000000-0000-4000-8000-000000000001", map[string]any{
			"numberofemployees": 33, "revenue": 7286400.77, "industrycode": 3,
			"description": "regional broadcasting and publishing company with 33 employees (profile 1c97abbe)"}},
		{"7f3c2a10-5b6e-4d2a-9c1b-0e8f7a6d5c4b", map[string]any{
			"numberofemployees": 72, "revenue": 8818560.06, "industrycode": 4,
			"description": "international brokerage company with 72 employees (profile bef24f0a)"}},
	} {
		if got := Truth(tt.id); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Truth(%s) = %#v\nwant %#v", tt.id, got, tt.want)
		}
		if got := Truth(" " + strings.ToUpper(tt.id)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Truth depends on the id's case or spacing: %#v", got)
		}
	}
}

func TestTruthShape(t *testing.T) {
	codes := IndustryCodes()
	descriptions := map[string]bool{}
	for i := range 2000 {
		id := AccountIDForTest(i)
		m := Truth(id)
		emp, ok1 := m["numberofemployees"].(int)
		rev, ok2 := m["revenue"].(float64)
		code, ok3 := m["industrycode"].(int)
		desc, ok4 := m["description"].(string)
		if !ok1 || !ok2 || !ok3 || !ok4 || len(m) != 4 {
			t.Fatalf("Truth(%s) = %#v: wrong types or fields", id, m)
		}
		if emp < 1 || emp > math.MaxInt32 || rev <= 0 || math.Round(rev*100)/100 != rev || !slices.Contains(codes, code) {
			t.Fatalf("Truth(%s) = %#v: out of range", id, m)
		}
		descriptions[desc] = true
		m["description"] = "changed" // each call returns a fresh map
		if Truth(id)["description"] != desc {
			t.Fatal("Truth returned a shared map")
		}
	}
	if len(descriptions) < 1990 {
		t.Errorf("only %d distinct answers for 2000 ids", len(descriptions))
	}
}

// AccountIDForTest builds GUID-shaped ids the way the Dataverse simulator does.
func AccountIDForTest(i int) string {
	const hex = "0123456789abcdef"
	b := []byte("00000000-0000-4000-8000-000000000000")
	for p, n := len(b)-1, i; n > 0 && p >= 0; p-- {
		if b[p] == '-' {
			continue
		}
		b[p] = hex[n%16]
		n /= 16
	}
	return string(b)
}

func TestApplyAndHolds(t *testing.T) {
	const id = "00000001-0000-4000-8000-000000000001"
	rec := map[string]any{"name": "Contoso"}
	if col, ok := Holds(rec, id); ok || col != "description" {
		t.Errorf("Holds on a bare record = %q, %v; want the first column by name, description", col, ok)
	}
	Apply(rec, id)
	if _, ok := Holds(rec, id); !ok || rec["name"] != "Contoso" {
		t.Errorf("after Apply: %v; want the enrichment held and other columns kept", rec)
	}
	rec["revenue"] = fmt.Sprint(rec["revenue"]) // a JSON round trip may turn numbers into text
	if _, ok := Holds(rec, id); !ok {
		t.Error("the same value as text does not count as held")
	}
	rec["industrycode"] = -1
	if col, ok := Holds(rec, id); ok || col != "industrycode" {
		t.Errorf("Holds with a wrong industrycode = %q, %v", col, ok)
	}
}
