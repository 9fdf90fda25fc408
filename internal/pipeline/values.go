package pipeline

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"dvbulk/internal/dataverse"
)

// Column types, as declared by a job spec.
const (
	TypeString  = "string"
	TypeInt     = "int"
	TypeDecimal = "decimal"
	TypeBool    = "bool"
	TypeGUID    = "guid"
)

// Normalize converts a JSON-decoded or computed value to the canonical Go value of a column type
// (int64, float64, string, bool, lowercase GUID string), so values from Dataverse, the enrichment
// service and expressions compare equal when they mean the same thing. nil stays nil.
func Normalize(typ string, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch typ {
	case TypeString:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case TypeGUID:
		if s, ok := v.(string); ok {
			if id, err := dataverse.ParseID(s); err == nil {
				return id, nil
			}
		}
	case TypeBool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case TypeInt:
		switch n := v.(type) {
		case json.Number:
			if i, err := n.Int64(); err == nil {
				return i, nil
			}
			if f, err := n.Float64(); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
				return int64(f), nil
			}
		case int:
			return int64(n), nil
		case int64:
			return n, nil
		case float64:
			if n == math.Trunc(n) && math.Abs(n) < 1<<53 {
				return int64(n), nil
			}
		}
	case TypeDecimal:
		switch n := v.(type) {
		case json.Number:
			if f, err := strconv.ParseFloat(string(n), 64); err == nil && !math.IsInf(f, 0) {
				return f, nil
			}
		case int:
			return float64(n), nil
		case int64:
			return float64(n), nil
		case float64:
			if !math.IsNaN(n) && !math.IsInf(n, 0) {
				return n, nil
			}
		}
	default:
		return nil, fmt.Errorf("unknown column type %q", typ)
	}
	return nil, fmt.Errorf("want %s, got %s", typ, describe(v))
}

func describe(v any) string {
	s := fmt.Sprintf("%v", v)
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	switch v.(type) {
	case string:
		return fmt.Sprintf("string %q", s)
	case json.Number, int, int64, float64:
		return "number " + s
	case bool:
		return "bool " + s
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

// Equal reports whether two normalized values of one column are the same.
func Equal(a, b any) bool { return a == b }
