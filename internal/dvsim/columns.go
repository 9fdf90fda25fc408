package dvsim

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// columns are the account columns the simulator knows, with their JSON types.
var columns = map[string]string{
	"accountid": "guid", "accountnumber": "string", "name": "string", "websiteurl": "string", "description": "string",
	"numberofemployees": "int", "revenue": "decimal", "industrycode": "int",
	"statecode": "int", "statuscode": "int", "_ownerid_value": "guid", "versionnumber": "int", "modifiedon": "datetime",
}

// writable are the columns a PATCH may set (the rest are system columns).
var writable = map[string]bool{"name": true, "websiteurl": true, "description": true, "numberofemployees": true, "revenue": true, "industrycode": true, "statecode": true}

// badProperty is the Web API's answer for an unknown or ill-typed property.
type badProperty struct{ msg string }

func (e *badProperty) Error() string { return e.msg }

// unknownProperty is the Web API's answer for a name the account type does not have.
func unknownProperty(name string) error {
	return &badProperty{fmt.Sprintf("Could not find a property named '%s' on type 'Microsoft.Dynamics.CRM.account'.", name)}
}

// apply sets column values, checking names and JSON types like the Web API does. On error the
// record may be partly changed: callers apply to a copy.
func (r *record) apply(fields map[string]any) error {
	for k, v := range fields {
		if k == "accountid" || strings.HasPrefix(k, "@odata.") {
			continue
		}
		if _, known := columns[k]; !known {
			return unknownProperty(k)
		}
		if !writable[k] {
			continue // system columns are ignored on write, as the platform does for most of them
		}
		switch k {
		case "name", "websiteurl", "description":
			s, ok := v.(string)
			if v != nil && !ok {
				return typeErr(k, "Edm.String", v)
			}
			r.setString(k, s)
		case "numberofemployees", "industrycode":
			n, isNull, err := intOf(v)
			if err != nil || n != int64(int32(n)) {
				return typeErr(k, "Edm.Int32", v)
			}
			if k == "numberofemployees" {
				r.employees = int32(n)
				r.set(hasEmployees, !isNull)
			} else {
				r.industry = int32(n)
				r.set(hasIndustry, !isNull)
			}
		case "statecode":
			n, isNull, err := intOf(v)
			if err != nil || isNull || n < 0 || n > 1 {
				return typeErr(k, "Edm.Int32", v)
			}
			r.state = int8(n)
		case "revenue":
			f, isNull, err := floatOf(v)
			if err != nil {
				return typeErr(k, "Edm.Decimal", v)
			}
			r.revenue = f
			r.set(hasRevenue, !isNull)
		}
	}
	return nil
}

func typeErr(col, edm string, v any) error {
	return &badProperty{fmt.Sprintf("Cannot convert the literal '%v' to the expected type '%s' for property '%s'.", v, edm, col)}
}

func intOf(v any) (int64, bool, error) {
	switch n := v.(type) {
	case nil:
		return 0, true, nil
	case int:
		return int64(n), false, nil
	case int64:
		return n, false, nil
	case float64:
		if n == math.Trunc(n) {
			return int64(n), false, nil
		}
	case json.Number:
		if i, err := n.Int64(); err == nil {
			return i, false, nil
		}
	}
	return 0, false, fmt.Errorf("not an integer")
}

func floatOf(v any) (float64, bool, error) {
	switch n := v.(type) {
	case nil:
		return 0, true, nil
	case int:
		return float64(n), false, nil
	case int64:
		return float64(n), false, nil
	case float64:
		return n, false, nil
	case json.Number:
		if f, err := n.Float64(); err == nil {
			return f, false, nil
		}
	}
	return 0, false, fmt.Errorf("not a number")
}
