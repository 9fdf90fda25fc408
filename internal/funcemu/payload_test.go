package funcemu

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestQueuePayloadMatchesTheHost checks the reference's §7.2 example byte for byte where the host's
// encoding rules decide them: double-encoded Data, string DequeueCount, quoted Id and PopReceipt,
// message properties copied into Metadata as double-encoded strings.
func TestQueuePayloadMatchesTheHost(t *testing.T) {
	fn := function{name: "ProcessWork", trigger: binding{Name: "workItem", Type: "queueTrigger"}}
	m := &message{id: "b7e1c2a4-0d3f-4a51-9a7e-3c2f1d0e9b88", pop: "AgAAAAMAAAAAAAAA5h2c7v0l2wE=", dequeue: 1,
		inserted: time.Date(2024, 10, 24, 14, 30, 0, 0, time.UTC), visibleAt: time.Date(2024, 10, 24, 14, 40, 1, 0, time.UTC)}
	raw := queuePayload(fn, m, `{"jobId":"job-42","attempt":1}`)
	var got struct {
		Data     map[string]json.RawMessage
		Metadata map[string]json.RawMessage
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"Data.workItem":            `"\"{\\\"jobId\\\":\\\"job-42\\\",\\\"attempt\\\":1}\""`,
		"Metadata.DequeueCount":    `"1"`,
		"Metadata.Id":              `"\"b7e1c2a4-0d3f-4a51-9a7e-3c2f1d0e9b88\""`,
		"Metadata.PopReceipt":      `"\"AgAAAAMAAAAAAAAA5h2c7v0l2wE=\""`,
		"Metadata.InsertionTime":   `"2024-10-24T14:30:00+00:00"`,
		"Metadata.NextVisibleTime": `"2024-10-24T14:40:01+00:00"`,
		"Metadata.ExpirationTime":  `"2024-10-31T14:30:00+00:00"`,
		"Metadata.jobId":           `"\"job-42\""`,
		"Metadata.attempt":         `"\"1\""`,
	}
	for k, w := range want {
		part, key, _ := strings.Cut(k, ".")
		src := got.Data
		if part == "Metadata" {
			src = got.Metadata
		}
		if string(src[key]) != w {
			t.Errorf("%s = %s, want %s", k, src[key], w)
		}
	}
	if _, ok := got.Metadata["sys"]; !ok {
		t.Error("no sys")
	}

	// A message property "id" overwrites Metadata.Id (the dictionary is case-insensitive).
	raw = queuePayload(fn, m, `{"id":"not-the-message-id"}`)
	_ = json.Unmarshal(raw, &got)
	if string(got.Metadata["Id"]) != `"\"not-the-message-id\""` {
		t.Errorf("shadowed Id = %s", got.Metadata["Id"])
	}
	if strings.Contains(string(raw), `\u003c`) {
		t.Error("HTML characters escaped; Newtonsoft does not")
	}
}

func TestTimerPayload(t *testing.T) {
	fn := function{name: "EnrichTimer", trigger: binding{Name: "timer", Type: "timerTrigger"}}
	next := time.Date(2024, 10, 24, 14, 30, 0, 0, time.UTC)
	var p struct {
		Data map[string]struct {
			Schedule       map[string]bool
			ScheduleStatus *map[string]string
			IsPastDue      bool
		}
		Metadata map[string]json.RawMessage
	}
	_ = json.Unmarshal(timerPayload(fn, TimerOptions{Next: next}), &p)
	if st := p.Data["timer"].ScheduleStatus; st == nil || (*st)["Next"] != "2024-10-24T14:30:00+00:00" || !p.Data["timer"].Schedule["AdjustForDST"] {
		t.Fatalf("timer payload %+v", p)
	}
	if len(p.Metadata) != 1 || p.Metadata["sys"] == nil {
		t.Fatalf("timer metadata %v: want only sys", p.Metadata)
	}
	_ = json.Unmarshal(timerPayload(fn, TimerOptions{NullStatus: true, PastDue: true}), &p)
	if p.Data["timer"].ScheduleStatus != nil || !p.Data["timer"].IsPastDue {
		t.Fatalf("null-status payload %+v", p.Data["timer"])
	}
}

// TestOutputMessages follows the host's table in reference §2.2.
func TestOutputMessages(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{`["a b","{\"x\":1}"]`, []string{"a b", `{"x":1}`}},
		{`[{"id":1}]`, []string{"{\n  \"id\": 1\n}"}},
		{`"[\"a\",\"b\"]"`, []string{"a", "b"}},
		{`"hello world"`, []string{"hello world"}},
		{`"abcd1234"`, []string{"i\xb7\x1d\xd7m\xf8"}}, // valid base64: decoded (the trap)
		{`{"id":1}`, []string{"{\n  \"id\": 1\n}"}},
		{`true`, []string{"True"}},
		{`[]`, nil},
		{`null`, nil},
	}
	for _, tt := range tests {
		if got := outputMessages(json.RawMessage(tt.in), false); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("outputMessages(%s) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestTimeSpan(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"00:10:00", 10 * time.Minute, true},
		{"00:00:00.7", 700 * time.Millisecond, true},
		{"1.02:00:30", 26*time.Hour + 30*time.Second, true},
		{"10", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		if got, ok := timeSpan(tt.in); got != tt.want || ok != tt.ok {
			t.Errorf("timeSpan(%q) = %s, %v; want %s, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
