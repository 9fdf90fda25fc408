package job

import (
	"encoding/json"
	"testing"
)

func TestLocalFilter(t *testing.T) {
	row := map[string]any{"statecode": json.Number("0"), "name": "O'Neil Ltd", "donotemail": false, "parentaccountid": nil}
	cases := []struct {
		filter string
		match  bool
	}{
		{"statecode eq 0", true},
		{"statecode eq 1", false},
		{"statecode eq 0 and name eq 'o''neil ltd'", true},
		{"donotemail eq false and parentaccountid eq null", true},
		{"donotemail eq true", false},
		{"name eq null", false},
	}
	for _, c := range cases {
		f, err := parseLocalFilter(c.filter)
		if err != nil {
			t.Fatalf("%q: %v", c.filter, err)
		}
		if got := f.match(row); got != c.match {
			t.Errorf("%q on %v = %v, want %v", c.filter, row, got, c.match)
		}
	}
	for _, bad := range []string{"statecode ne 0", "statecode eq 0 or statecode eq 1", "contains(name,'x')", "revenue gt 5", "statecode eq 0.5"} {
		if _, err := parseLocalFilter(bad); err == nil {
			t.Errorf("%q was taken as a local filter", bad)
		}
	}
}
