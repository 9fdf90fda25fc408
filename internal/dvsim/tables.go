package dvsim

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// ColType is the type of a declared column, as the Web API checks it on write.
type ColType string

// Column types of declared tables.
const (
	ColString   ColType = "string"   // Edm.String, bounded by MaxLength
	ColInt      ColType = "int"      // Edm.Int32
	ColDecimal  ColType = "decimal"  // Edm.Decimal (decimal, money)
	ColBool     ColType = "bool"     // Edm.Boolean
	ColDate     ColType = "date"     // Edm.Date: YYYY-MM-DD
	ColDateTime ColType = "datetime" // Edm.DateTimeOffset
	ColChoice   ColType = "choice"   // Edm.Int32 restricted to Options
	ColGUID     ColType = "guid"     // Edm.Guid
)

// ColumnDef is a declared column.
type ColumnDef struct {
	Name      string
	Type      ColType
	MaxLength int   // strings; 0 means 100
	Options   []int // choices
}

// LookupDef is a single-valued navigation property: writing Nav@odata.bind sets Column (the
// _<nav>_value lookup property) to the id of a record in Target (an entity set).
type LookupDef struct {
	Nav, Column, Target string
}

// KeyDef is an alternate key: its columns' values are unique among the records that have them all.
type KeyDef struct {
	Name    string
	Columns []string
}

// TableDef declares a table the simulator serves besides the compact accounts table.
type TableDef struct {
	EntitySet, LogicalName, PrimaryKey string
	Columns                            []ColumnDef
	Lookups                            []LookupDef
	Keys                               []KeyDef
}

// Contacts is the declared contacts table: the columns a CRM migration fills, a lookup to the
// parent account, and two alternate keys (a custom legacy id, and the e-mail address).
var Contacts = TableDef{
	EntitySet: "contacts", LogicalName: "contact", PrimaryKey: "contactid",
	Columns: []ColumnDef{
		{Name: "firstname", Type: ColString, MaxLength: 50},
		{Name: "lastname", Type: ColString, MaxLength: 50},
		{Name: "emailaddress1", Type: ColString, MaxLength: 100},
		{Name: "telephone1", Type: ColString, MaxLength: 50},
		{Name: "jobtitle", Type: ColString, MaxLength: 100},
		{Name: "address1_line1", Type: ColString, MaxLength: 250},
		{Name: "address1_city", Type: ColString, MaxLength: 80},
		{Name: "description", Type: ColString, MaxLength: 2000},
		{Name: "birthdate", Type: ColDate},
		{Name: "numberofchildren", Type: ColInt},
		{Name: "creditlimit", Type: ColDecimal},
		{Name: "donotemail", Type: ColBool},
		{Name: "accountrolecode", Type: ColChoice, Options: []int{1, 2, 3}},
		{Name: "lastusedincampaign", Type: ColDateTime},
		{Name: "dvb_legacyid", Type: ColString, MaxLength: 100},
	},
	Lookups: []LookupDef{{Nav: "parentcustomerid_account", Column: "_parentcustomerid_value", Target: "accounts"}},
	Keys: []KeyDef{
		{Name: "dvb_legacyid_key", Columns: []string{"dvb_legacyid"}},
		{Name: "contact_email_key", Columns: []string{"emailaddress1"}},
	},
}

// drow is one record of a declared table: values by column index (lookups after columns).
type drow struct {
	created, modified, version int64
	vals                       []any
}

// dtable stores a declared table: rows by key, and one index per alternate key.
type dtable struct {
	def   *TableDef
	col   map[string]int // column or lookup-column name -> index in vals
	types []ColumnDef    // by index; lookups have Type ColGUID
	rows  map[key]*drow
	alt   []map[string]key // per Keys entry: composite value -> row
}

func newDTable(def *TableDef) *dtable {
	t := &dtable{def: def, col: map[string]int{}, rows: map[key]*drow{}, alt: make([]map[string]key, len(def.Keys))}
	for _, c := range def.Columns {
		t.col[c.Name] = len(t.types)
		t.types = append(t.types, c)
	}
	for _, l := range def.Lookups {
		t.col[l.Column] = len(t.types)
		t.types = append(t.types, ColumnDef{Name: l.Column, Type: ColGUID})
	}
	for i := range t.alt {
		t.alt[i] = map[string]key{}
	}
	return t
}

// altValue is the index entry of row vals under key k, or "" when a key column is empty (such
// rows are not indexed: a key constrains only records that have all of its values).
func (t *dtable) altValue(k int, vals []any) string {
	var b strings.Builder
	for i, c := range t.def.Keys[k].Columns {
		v := vals[t.col[c]]
		if v == nil {
			return ""
		}
		if i > 0 {
			b.WriteByte(0)
		}
		fmt.Fprint(&b, v)
	}
	return strings.ToLower(b.String())
}

// keyFor finds the alternate key whose columns are exactly names, or -1.
func (t *dtable) keyFor(names []string) int {
	for i, k := range t.def.Keys {
		if len(k.Columns) == len(names) && !slices.ContainsFunc(names, func(n string) bool { return !slices.Contains(k.Columns, n) }) {
			return i
		}
	}
	return -1
}

// toMap renders a row as the Web API returns it.
func (t *dtable) toMap(k key, r *drow) map[string]any {
	m := map[string]any{t.def.PrimaryKey: k.String(), "versionnumber": r.version,
		"createdon": time.Unix(0, r.created).UTC().Format(time.RFC3339), "modifiedon": time.Unix(0, r.modified).UTC().Format(time.RFC3339),
		"statecode": 0, "statuscode": 1}
	for i, c := range t.types {
		m[c.Name] = r.vals[i]
	}
	return m
}

// convert checks one value against its column the way the Web API does and returns the stored form.
func convert(table string, c ColumnDef, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch c.Type {
	case ColString:
		s, ok := v.(string)
		if !ok {
			return nil, typeErr(c.Name, "Edm.String", v)
		}
		max := c.MaxLength
		if max == 0 {
			max = 100
		}
		if n := len([]rune(s)); n > max {
			return nil, &badProperty{fmt.Sprintf("A validation error occurred. The length of the '%s' attribute of the '%s' entity exceeded the maximum allowed length of '%d'.", c.Name, table, max)}
		}
		return s, nil
	case ColInt, ColChoice:
		n, _, err := intOf(v)
		if err != nil || n != int64(int32(n)) {
			return nil, typeErr(c.Name, "Edm.Int32", v)
		}
		if c.Type == ColChoice && !slices.Contains(c.Options, int(n)) {
			return nil, &badProperty{fmt.Sprintf("A validation error occurred. The value %d of '%s' on record of type '%s' is outside the valid range. Accepted Values: %s", n, c.Name, table, joinInts(c.Options))}
		}
		return n, nil
	case ColDecimal:
		f, _, err := floatOf(v)
		if err != nil || math.IsInf(f, 0) {
			return nil, typeErr(c.Name, "Edm.Decimal", v)
		}
		return f, nil
	case ColBool:
		b, ok := v.(bool)
		if !ok {
			return nil, typeErr(c.Name, "Edm.Boolean", v)
		}
		return b, nil
	case ColDate:
		s, ok := v.(string)
		if _, err := time.Parse(time.DateOnly, s); !ok || err != nil {
			return nil, typeErr(c.Name, "Edm.Date", v)
		}
		return s, nil
	case ColDateTime:
		s, ok := v.(string)
		t, err := time.Parse(time.RFC3339Nano, s)
		if !ok || err != nil {
			return nil, typeErr(c.Name, "Edm.DateTimeOffset", v)
		}
		return t.UTC().Format(time.RFC3339), nil
	case ColGUID:
		s, ok := v.(string)
		k, valid := parseKey(s)
		if !ok || !valid {
			return nil, typeErr(c.Name, "Edm.Guid", v)
		}
		return k.String(), nil
	}
	return nil, fmt.Errorf("column %s: unknown type %s", c.Name, c.Type)
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ",")
}
