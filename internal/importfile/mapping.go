package importfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"dvbulk/internal/dataverse"
)

// Type is the declared Dataverse type of a mapped column.
type Type string

// The column types a mapping declares.
const (
	String    Type = "string"    // single or multiple lines of text
	Int       Type = "int"       // whole number (32-bit)
	BigInt    Type = "bigint"    // big integer (64-bit)
	Decimal   Type = "decimal"   // decimal, currency or float: written as a JSON number, digits kept
	Bool      Type = "bool"      // yes/no: true/false, yes/no, 1/0
	Date      Type = "date"      // date only: YYYY-MM-DD (or the column's format)
	DateTime  Type = "datetime"  // date and time: RFC 3339, or without a zone in the mapping's time zone
	OptionSet Type = "optionset" // choice: its value, or a label from the column's options
	Lookup    Type = "lookup"    // <nav>@odata.bind to another table, by id or alternate key
	GUID      Type = "guid"      // unique identifier (a client-supplied primary key)
)

var types = []Type{String, Int, BigInt, Decimal, Bool, Date, DateTime, OptionSet, Lookup, GUID}

// Column maps one file column onto one Dataverse column.
type Column struct {
	// Source is the file column (CSV header name or NDJSON key).
	Source string `json:"source"`
	// Target is the Dataverse column's logical name; for a lookup, the single-valued navigation
	// property (parentcustomerid_account), to which "@odata.bind" is added.
	Target string `json:"target"`
	Type   Type   `json:"type"`
	// Required refuses a record whose cell is missing or empty.
	Required bool `json:"required,omitempty"`
	// MaxLength bounds a string in characters (Dataverse refuses longer ones).
	MaxLength int `json:"maxLength,omitempty"`
	// Format is a Go time layout for a date or datetime column in another shape than ISO 8601.
	Format string `json:"format,omitempty"`
	// Options maps choice labels (matched case-insensitively) to values.
	Options map[string]int `json:"options,omitempty"`
	// Table is a lookup's target entity set (accounts).
	Table string `json:"table,omitempty"`
	// Key is a lookup's alternate-key column on Table (accountnumber); empty means the cell
	// holds the target's id.
	Key string `json:"key,omitempty"`
}

// Mapping is an import's column mapping.
type Mapping struct {
	Columns []Column `json:"columns"`
	// TimeZone is the IANA zone of datetimes written without an offset; empty is UTC.
	TimeZone string `json:"timeZone,omitempty"`

	loc *time.Location
}

var logicalName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
var entitySet = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate checks the mapping and prepares it for Map. Errors name the column.
func (m *Mapping) Validate() error {
	if len(m.Columns) == 0 {
		return errors.New("mapping: no columns")
	}
	m.loc = time.UTC
	if m.TimeZone != "" {
		loc, err := time.LoadLocation(m.TimeZone)
		if err != nil {
			return fmt.Errorf("mapping: timeZone %q: %v", m.TimeZone, err)
		}
		m.loc = loc
	}
	targets := map[string]bool{}
	for i := range m.Columns {
		c := &m.Columns[i]
		where := fmt.Sprintf("mapping: column %d (%q)", i+1, c.Source)
		if c.Source == "" {
			return fmt.Errorf("mapping: column %d: source is empty", i+1)
		}
		if !logicalName.MatchString(c.Target) && !(c.Type == Lookup && entitySet.MatchString(c.Target)) {
			return fmt.Errorf("%s: target %q is not a logical name", where, c.Target)
		}
		if targets[c.Target] {
			return fmt.Errorf("%s: target %q is mapped twice", where, c.Target)
		}
		targets[c.Target] = true
		if !slices.Contains(types, c.Type) {
			return fmt.Errorf("%s: type %q is unknown (want one of %s)", where, c.Type, typeList())
		}
		if c.Type == Lookup {
			if !entitySet.MatchString(c.Table) {
				return fmt.Errorf("%s: a lookup needs \"table\", the target's entity set (for example accounts)", where)
			}
			if c.Key != "" && !logicalName.MatchString(c.Key) {
				return fmt.Errorf("%s: key %q is not a logical name", where, c.Key)
			}
		} else if c.Table != "" || c.Key != "" {
			return fmt.Errorf("%s: \"table\" and \"key\" belong to lookups only", where)
		}
		if c.Type == OptionSet && len(c.Options) == 0 && c.Options != nil {
			return fmt.Errorf("%s: options is empty", where)
		}
		if c.Type != OptionSet && c.Options != nil {
			return fmt.Errorf("%s: \"options\" belongs to optionset columns only", where)
		}
		if c.Format != "" && c.Type != Date && c.Type != DateTime {
			return fmt.Errorf("%s: \"format\" belongs to date and datetime columns only", where)
		}
		if c.MaxLength < 0 {
			return fmt.Errorf("%s: maxLength is negative", where)
		}
	}
	return nil
}

func typeList() string {
	s := make([]string, len(types))
	for i, t := range types {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// CheckHeader reports mapped source columns the CSV header lacks.
func (m *Mapping) CheckHeader(header []string) error {
	var missing []string
	for _, c := range m.Columns {
		if !slices.Contains(header, c.Source) {
			missing = append(missing, strconv.Quote(c.Source))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("mapping: the file has no column %s (its header: %s)", strings.Join(missing, ", "), strings.Join(header, ","))
	}
	return nil
}

// Map turns a decoded record into the body of a Dataverse create or upsert. An empty cell of a
// column that is not required is left out (the column keeps its default or current value). The
// error is a *RowError naming the record, its line and the column.
func (m *Mapping) Map(r *Record) (map[string]any, error) {
	if r.Err != nil {
		return nil, r.Err
	}
	if m.loc == nil {
		if err := m.Validate(); err != nil {
			return nil, err
		}
	}
	out := make(map[string]any, len(m.Columns))
	for i := range m.Columns {
		c := &m.Columns[i]
		v, ok := r.Get(c.Source)
		if !ok || v.Empty() {
			if c.Required {
				return nil, &RowError{Record: r.Number, Line: r.Line, Column: c.Source, Reason: "required but empty"}
			}
			continue
		}
		val, err := m.convert(c, v)
		if err != nil {
			return nil, &RowError{Record: r.Number, Line: r.Line, Column: c.Source, Reason: err.Error()}
		}
		if c.Type == Lookup {
			out[c.Target+"@odata.bind"] = val
		} else {
			out[c.Target] = val
		}
	}
	return out, nil
}

var decimalText = regexp.MustCompile(`^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$`)

func (m *Mapping) convert(c *Column, v Value) (any, error) {
	if v.Kind == KindComplex {
		return nil, fmt.Errorf("a JSON object or array is not a %s", c.Type)
	}
	s := v.Text
	if c.Type != String {
		s = strings.TrimSpace(s)
	}
	switch c.Type {
	case String:
		if n := utf8.RuneCountInString(s); c.MaxLength > 0 && n > c.MaxLength {
			return nil, fmt.Errorf("%d characters, longer than the column's %d", n, c.MaxLength)
		}
		return s, nil
	case Int, BigInt:
		bits := 32
		if c.Type == BigInt {
			bits = 64
		}
		n, err := strconv.ParseInt(s, 10, bits)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return nil, fmt.Errorf("%s is out of range for a %d-bit whole number", quote(s), bits)
			}
			return nil, fmt.Errorf("%s is not a whole number", quote(s))
		}
		return n, nil
	case Decimal:
		if !decimalText.MatchString(s) {
			return nil, fmt.Errorf("%s is not a number (write it with a dot and no thousands separator)", quote(s))
		}
		if f, err := strconv.ParseFloat(s, 64); err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%s is out of range", quote(s))
		}
		return json.Number(strings.TrimPrefix(s, "+")), nil
	case Bool:
		switch strings.ToLower(s) {
		case "true", "yes", "1", "y":
			return true, nil
		case "false", "no", "0", "n":
			return false, nil
		}
		return nil, fmt.Errorf("%s is not a yes/no value (want true/false, yes/no or 1/0)", quote(s))
	case Date:
		layout := c.Format
		if layout == "" {
			layout = time.DateOnly
		}
		t, err := time.Parse(layout, s)
		if err != nil {
			return nil, fmt.Errorf("%s is not a date in the form %s", quote(s), layout)
		}
		return t.Format(time.DateOnly), nil
	case DateTime:
		t, err := m.parseDateTime(c, s)
		if err != nil {
			return nil, err
		}
		return t.UTC().Format(time.RFC3339), nil
	case OptionSet:
		if n, err := strconv.ParseInt(s, 10, 32); err == nil {
			if c.Options != nil && !slices.Contains(optionValues(c.Options), int(n)) {
				return nil, fmt.Errorf("%d is not one of the column's option values %v", n, optionValues(c.Options))
			}
			return n, nil
		}
		for label, n := range c.Options {
			if strings.EqualFold(label, s) {
				return int64(n), nil
			}
		}
		if c.Options == nil {
			return nil, fmt.Errorf("%s is not an option value (the mapping declares no labels)", quote(s))
		}
		return nil, fmt.Errorf("%s is not one of the options %s", quote(s), optionLabels(c.Options))
	case Lookup:
		if c.Key == "" {
			id, err := parseGUID(s)
			if err != nil {
				return nil, err
			}
			return "/" + c.Table + "(" + id + ")", nil
		}
		return "/" + c.Table + "(" + c.Key + "=" + dataverse.KeyString(s) + ")", nil
	case GUID:
		return parseGUID(s)
	}
	return nil, fmt.Errorf("type %q is unknown", c.Type)
}

func (m *Mapping) parseDateTime(c *Column, s string) (time.Time, error) {
	if c.Format != "" {
		t, err := time.ParseInLocation(c.Format, s, m.loc)
		if err != nil {
			return time.Time{}, fmt.Errorf("%s is not a date and time in the form %s", quote(s), c.Format)
		}
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02 15:04"} {
		if t, err := time.ParseInLocation(layout, s, m.loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%s is not a date and time (want RFC 3339 such as 2024-05-01T13:45:00Z, or 2024-05-01 13:45:00 in the mapping's time zone)", quote(s))
}

func parseGUID(s string) (string, error) {
	id, err := dataverse.ParseID(s)
	if err != nil {
		return "", fmt.Errorf("%s is not a GUID (want 8-4-4-4-12 hexadecimal digits)", quote(s))
	}
	return id, nil
}

func optionValues(o map[string]int) []int {
	v := make([]int, 0, len(o))
	for _, n := range o {
		v = append(v, n)
	}
	slices.Sort(v)
	return slices.Compact(v)
}

func optionLabels(o map[string]int) string {
	l := make([]string, 0, len(o))
	for s := range o {
		l = append(l, strconv.Quote(s))
	}
	slices.Sort(l)
	return strings.Join(l, ", ")
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strconv.Quote(s)
}
