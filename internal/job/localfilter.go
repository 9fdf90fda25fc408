package job

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// localFilter is a job filter the app can apply itself to rows a change-tracking read returns
// (Dataverse refuses $filter there): a conjunction of "column eq literal" terms, where a literal is
// a whole number, a quoted string, true, false or null. Other filters make the job page the table
// normally instead of tracking changes.
type localFilter []filterTerm

type filterTerm struct {
	col string
	val any // int64, string, bool or nil
}

var termRE = regexp.MustCompile(`^([a-z_][a-z0-9_]*) eq (-?[0-9]+|'(?:[^']|'')*'|true|false|null)$`)

// parseLocalFilter compiles f, or reports why it cannot be applied locally.
func parseLocalFilter(f string) (localFilter, error) {
	f = strings.TrimSpace(f)
	if f == "" {
		return nil, nil
	}
	var out localFilter
	for _, part := range strings.Split(f, " and ") {
		m := termRE.FindStringSubmatch(strings.TrimSpace(part))
		if m == nil {
			return nil, fmt.Errorf("filter term %q is not of the form column eq literal", strings.TrimSpace(part))
		}
		t := filterTerm{col: m[1]}
		switch lit := m[2]; {
		case lit == "true" || lit == "false":
			t.val = lit == "true"
		case lit == "null":
		case strings.HasPrefix(lit, "'"):
			t.val = strings.ReplaceAll(lit[1:len(lit)-1], "''", "'")
		default:
			n, err := strconv.ParseInt(lit, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("filter term %q: %v", part, err)
			}
			t.val = n
		}
		out = append(out, t)
	}
	return out, nil
}

// columns are the columns the filter reads (selected in addition to the job's).
func (f localFilter) columns() []string {
	cols := make([]string, len(f))
	for i, t := range f {
		cols[i] = t.col
	}
	return cols
}

// match applies the filter to a decoded row.
func (f localFilter) match(row map[string]any) bool {
	for _, t := range f {
		v := row[t.col]
		switch want := t.val.(type) {
		case nil:
			if v != nil {
				return false
			}
		case bool:
			if b, ok := v.(bool); !ok || b != want {
				return false
			}
		case string:
			if s, ok := v.(string); !ok || !strings.EqualFold(s, want) {
				return false // Dataverse compares strings case-insensitively
			}
		case int64:
			if n, ok := wholeNumber(v); !ok || n != want {
				return false
			}
		}
	}
	return true
}

func wholeNumber(v any) (int64, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	case float64:
		return int64(n), float64(int64(n)) == n
	case int:
		return int64(n), true
	case int64:
		return n, true
	}
	return 0, false
}
