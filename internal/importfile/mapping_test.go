package importfile

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func contactMapping() *Mapping {
	return &Mapping{TimeZone: "Europe/Paris", Columns: []Column{
		{Source: "email", Target: "emailaddress1", Type: String, Required: true, MaxLength: 20},
		{Source: "employees", Target: "numberofchildren", Type: Int},
		{Source: "credit", Target: "creditlimit", Type: Decimal},
		{Source: "optin", Target: "donotemail", Type: Bool},
		{Source: "born", Target: "birthdate", Type: Date},
		{Source: "seen", Target: "lastusedincampaign", Type: DateTime},
		{Source: "role", Target: "accountrolecode", Type: OptionSet, Options: map[string]int{"Decision Maker": 1, "Employee": 2}},
		{Source: "account", Target: "parentcustomerid_account", Type: Lookup, Table: "accounts", Key: "accountnumber"},
		{Source: "owner", Target: "ownerid", Type: Lookup, Table: "systemusers"},
		{Source: "id", Target: "contactid", Type: GUID},
	}}
}

func csvRecord(t *testing.T, header, line string) *Record {
	t.Helper()
	recs, _, err := decodeAll(t, header+"\n"+line+"\n", Options{Format: CSV})
	if err != nil || len(recs) != 1 {
		t.Fatalf("decode: %v %v", recs, err)
	}
	return recs[0]
}

const header = "email,employees,credit,optin,born,seen,role,account,owner,id"

func TestMapTypes(t *testing.T) {
	m := contactMapping()
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	r := csvRecord(t, header, `a@x.com, 12 ,+1234.50,Yes,1990-12-31,2024-05-01 10:00:00,decision maker,A-'1/2,0F1D2E3C-0000-4000-8000-000000000001,11111111-2222-4333-8444-555555555555`)
	got, err := m.Map(r)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	want := `{"accountrolecode":1,"birthdate":"1990-12-31","contactid":"11111111-2222-4333-8444-555555555555","creditlimit":1234.50,"donotemail":true,"emailaddress1":"a@x.com","lastusedincampaign":"2024-05-01T08:00:00Z","numberofchildren":12,"ownerid@odata.bind":"/systemusers(0f1d2e3c-0000-4000-8000-000000000001)","parentcustomerid_account@odata.bind":"/accounts(accountnumber='A-''1%2F2')"}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	// Empty optional cells are left out.
	got, err = m.Map(csvRecord(t, header, `b@x.com,,,,,,,,,`))
	if err != nil || len(got) != 1 {
		t.Fatalf("%v %v", got, err)
	}
}

func TestMapRowErrors(t *testing.T) {
	m := contactMapping()
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ line, column, reason string }{
		{`,1,,,,,,,,`, "email", "required but empty"},
		{`averyveryverylongaddress@example.com,,,,,,,,,`, "email", "longer than the column's 20"},
		{`a@x,twelve,,,,,,,,`, "employees", `"twelve" is not a whole number`},
		{`a@x,3000000000,,,,,,,,`, "employees", "out of range for a 32-bit"},
		{`a@x,,"1,5",,,,,,,`, "credit", "is not a number"},
		{`a@x,,,maybe,,,,,,`, "optin", "not a yes/no value"},
		{`a@x,,,,31/12/1990,,,,,`, "born", "not a date in the form 2006-01-02"},
		{`a@x,,,,,yesterday,,,,`, "seen", "not a date and time"},
		{`a@x,,,,,,Boss,,,`, "role", `not one of the options "Decision Maker", "Employee"`},
		{`a@x,,,,,,7,,,`, "role", "not one of the column's option values [1 2]"},
		{`a@x,,,,,,,,not-a-guid,`, "owner", "is not a GUID"},
		{`a@x,,,,,,,,,{1111}`, "id", "is not a GUID"},
	}
	for _, tt := range tests {
		t.Run(tt.column+" "+tt.reason, func(t *testing.T) {
			_, err := m.Map(csvRecord(t, header, tt.line))
			var re *RowError
			if !errors.As(err, &re) {
				t.Fatalf("error %v, want a RowError", err)
			}
			if re.Record != 1 || re.Line != 2 || re.Column != tt.column || !strings.Contains(re.Reason, tt.reason) {
				t.Fatalf("%+v, want record 1 line 2 column %q reason %q", re, tt.column, tt.reason)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, `record 1 (line 2), column "`+tt.column+`": `) {
				t.Errorf("message %q", msg)
			}
		})
	}
}

func TestMapNDJSONKinds(t *testing.T) {
	m := &Mapping{Columns: []Column{
		{Source: "n", Target: "numberofemployees", Type: Int},
		{Source: "name", Target: "name", Type: String},
		{Source: "ok", Target: "donotphone", Type: Bool},
		{Source: "obj", Target: "description", Type: String},
	}}
	recs, _, err := decodeAll(t, `{"n":42,"name":7,"ok":false,"obj":null}`+"\n"+`{"obj":{"a":1}}`, Options{Format: NDJSON})
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Map(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(got); string(b) != `{"donotphone":false,"name":"7","numberofemployees":42}` {
		t.Errorf("got %s", b)
	}
	if _, err := m.Map(recs[1]); err == nil || !strings.Contains(err.Error(), `column "obj": a JSON object or array is not a string`) {
		t.Errorf("object cell: %v", err)
	}
}

func TestMapPassesDecodeError(t *testing.T) {
	m := contactMapping()
	r := csvRecord(t, "a,b", "1")
	if _, err := m.Map(r); err != r.Err || err == nil {
		t.Fatalf("%v, want the record's own error %v", err, r.Err)
	}
}

func TestMappingValidate(t *testing.T) {
	tests := []struct {
		name string
		col  Column
		want string
	}{
		{"no source", Column{Target: "name", Type: String}, "source is empty"},
		{"bad target", Column{Source: "a", Target: "Name Here", Type: String}, "not a logical name"},
		{"unknown type", Column{Source: "a", Target: "name", Type: "money"}, `type "money" is unknown`},
		{"lookup without table", Column{Source: "a", Target: "parentcustomerid_account", Type: Lookup}, `needs "table"`},
		{"table on a string", Column{Source: "a", Target: "name", Type: String, Table: "accounts"}, "lookups only"},
		{"options on an int", Column{Source: "a", Target: "name", Type: Int, Options: map[string]int{"x": 1}}, "optionset columns only"},
		{"format on a string", Column{Source: "a", Target: "name", Type: String, Format: "02/01/2006"}, "date and datetime columns only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &Mapping{Columns: []Column{tt.col}}
			if err := m.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%v, want %q", err, tt.want)
			}
		})
	}
	dup := &Mapping{Columns: []Column{{Source: "a", Target: "name", Type: String}, {Source: "b", Target: "name", Type: String}}}
	if err := dup.Validate(); err == nil || !strings.Contains(err.Error(), "mapped twice") {
		t.Errorf("duplicate target: %v", err)
	}
	if err := (&Mapping{TimeZone: "Mars/Olympus", Columns: []Column{{Source: "a", Target: "name", Type: String}}}).Validate(); err == nil {
		t.Error("bad time zone accepted")
	}
	if err := contactMapping().CheckHeader([]string{"email", "employees"}); err == nil || !strings.Contains(err.Error(), `no column "credit"`) {
		t.Errorf("CheckHeader: %v", err)
	}
}

func TestFormatOf(t *testing.T) {
	for name, want := range map[string]Format{"a/b.CSV": CSV, "x.ndjson": NDJSON, "x.jsonl": NDJSON} {
		if f, ok := FormatOf(name); !ok || f != want {
			t.Errorf("%s: %v %v", name, f, ok)
		}
	}
	if _, ok := FormatOf("x.xlsx"); ok {
		t.Error("xlsx")
	}
}
