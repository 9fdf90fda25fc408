package job

import (
	"errors"
	"strings"
	"testing"
)

func TestBuiltinsValidate(t *testing.T) {
	for _, name := range BuiltinNames() {
		if _, err := Lookup(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestSpecErrorsNameTheField(t *testing.T) {
	base := `{"name":"j","table":{"entitySet":"accounts","logicalName":"account","key":"accountid"},
	  "columns":{"accountid":"guid","name":"string","revenue":"decimal","description":"string"},
	  "input":["name"],"writable":["description"],"transform":{"kind":"enrich"}}`
	tests := []struct{ name, from, to, field string }{
		{"bad name", `"name":"j"`, `"name":"J J"`, "name"},
		{"entity set", `"entitySet":"accounts"`, `"entitySet":"acc ounts"`, "table.entitySet"},
		{"type", `"name":"string"`, `"name":"text"`, "columns.name"},
		{"untyped input", `"input":["name"]`, `"input":["city"]`, "input"},
		{"key writable", `"writable":["description"]`, `"writable":["accountid"]`, "writable"},
		{"kind", `"kind":"enrich"`, `"kind":"magic"`, "transform.kind"},
		{"mode", `"transform"`, `"write":{"mode":"turbo"},"transform"`, "write.mode"},
		{"batch", `"transform"`, `"write":{"batchSize":5000},"transform"`, "write.batchSize"},
		{"chunk", `"transform"`, `"chunkSize":1001,"transform"`, "chunkSize"},
		{"hostile filter", `"transform"`, `"filter":"statecode eq 0\r\nAuthorization: x","transform"`, "filter"},
		{"filter NUL", `"transform"`, `"filter":"name eq 'a\u0000'","transform"`, "filter"},
		{"bypass", `"transform"`, `"write":{"bypassBusinessLogic":"All"},"transform"`, "write.bypassBusinessLogic"},
		{"expr type", `"transform":{"kind":"enrich"}`, `"transform":{"kind":"recalculate","set":{"description":"revenue * 2"}}`, "transform.set.description"},
		{"expr off list", `"transform":{"kind":"enrich"}`, `"transform":{"kind":"recalculate","set":{"revenue":"1"}}`, "transform.set.revenue"},
		{"expr syntax", `"transform":{"kind":"enrich"}`, `"transform":{"kind":"recalculate","set":{"description":"name +"}}`, "transform.set.description"},
	}
	if _, err := Parse([]byte(base)); err != nil {
		t.Fatalf("base spec: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(base, tt.from, tt.to, 1)
			_, err := Parse([]byte(src))
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("err = %v, want a FieldError naming %s", err, tt.field)
			}
		})
	}
	if _, err := Parse([]byte(strings.Replace(base, `"name":"j"`, `"name":"j","nmae":"x"`, 1))); err == nil {
		t.Error("unknown field accepted")
	}
	if _, err := Lookup("nope"); !errors.Is(err, ErrUnknownJob) {
		t.Errorf("Lookup(nope) = %v", err)
	}
}

func TestRecalculateEvaluates(t *testing.T) {
	s, err := Lookup("recalculate-tier")
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Compile()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		emp  any
		rev  any
		want string
	}{{5, 2000000.0, "Tier A"}, {500, 10.0, "Tier B"}, {nil, nil, "Tier C"}} {
		got, err := p.Eval(map[string]any{"numberofemployees": tt.emp, "revenue": tt.rev})
		if err != nil || got["description"] != tt.want {
			t.Errorf("Eval(%v,%v) = %v, %v; want %s", tt.emp, tt.rev, got, err, tt.want)
		}
	}
}
