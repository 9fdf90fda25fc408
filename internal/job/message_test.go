package job

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/pipeline"
	"dvbulk/internal/testutil"
)

// withProperty adds a top-level property to an encoded message, as a newer producer (or a tool that
// annotates messages) would.
func withProperty(t *testing.T, msg, name string, value any) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(msg), &m); err != nil {
		t.Fatal(err)
	}
	m[name] = value
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Chunk and plan messages with a property this build does not know are processed, not
// dead-lettered, and the property is logged once at debug level for the process.
func TestChunkAndPlanMessagesIgnoreUnknownProperties(t *testing.T) {
	dv := newFakeDV(483, 50) // 533 accounts, 483 active: the measured case
	st := checkpoint.NewMem()
	e := testEngine(t, dv, &fakeEnricher{}, st)
	var logs testutil.SyncBuffer
	e.Log = zerolog.New(&logs).Level(zerolog.DebugLevel)
	ctx := context.Background()
	res, err := e.Start(ctx, smallSpec(t), StartOptions{Run: "nightly-enrichment-tolerant", Trigger: "test"})
	if err != nil {
		t.Fatal(err)
	}
	queue, handled := res.Enqueue, 0
	for len(queue) > 0 {
		msg := withProperty(t, queue[0], "id", "b7c1e0d2")
		queue = queue[1:]
		out, err := e.Handle(ctx, []byte(msg), Delivery{DequeueCount: 1})
		if err != nil {
			t.Fatalf("message %s: %v", msg, err)
		}
		if len(out.DeadLetter) > 0 {
			t.Fatalf("message with an extra property dead-lettered: %s", out.DeadLetter[0])
		}
		queue = append(queue, out.Enqueue...)
		handled++
	}
	if handled < 3 {
		t.Fatalf("only %d messages handled; the test needs several chunks", handled)
	}
	s, err := ReadStatus(ctx, st, "nightly-enrichment-tolerant")
	if err != nil || s.Summary == nil || s.Summary.Outcomes[pipeline.Updated] != 483 {
		t.Fatalf("status %+v %v; want all 483 active accounts updated", s, err)
	}
	if n := strings.Count(logs.String(), `"property":"id"`); n != 1 {
		t.Errorf("the ignored property was logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `"level":"debug","run":"nightly-enrichment-tolerant"`) {
		t.Errorf("the ignored property was not logged at debug level with the run:\n%s", logs.String())
	}
}

func TestDecodeMessageVersionsAndStrictStarts(t *testing.T) {
	const id = "0000000a-0000-4000-8000-00000000000a"
	cases := []struct {
		name, body string
		reason     string   // "" = accepted
		ignored    []string // accepted: what was skipped
	}{
		{"chunk with unknown properties", `{"v":1,"kind":"chunk","job":"nightly-enrichment","run":"r1","seq":2,"ids":["` + id + `"],"id":"x","trace":{"a":1}}`, "", []string{"id", "trace"}},
		{"plan with unknown property", `{"v":1,"kind":"plan","job":"nightly-enrichment","run":"r1","seq":2,"priority":3}`, "", []string{"priority"}},
		{"start, known properties", `{"v":1,"kind":"start","job":"nightly-enrichment","dryRun":true,"rerunOf":"r0"}`, "", nil},
		{"start, misspelled dryRun", `{"v":1,"kind":"start","job":"nightly-enrichment","dryRn":true}`, `unknown property "dryRn"`, nil},
		{"start, dryRun in the wrong case", `{"v":1,"kind":"start","job":"nightly-enrichment","dryrun":true}`, `"dryrun" (did you mean "dryRun"?)`, nil},
		{"newer chunk", `{"v":2,"kind":"chunk","job":"nightly-enrichment","run":"r1","ids":["` + id + `"],"shard":4}`, "schema version 2 is newer than this build reads (version 1)", nil},
		{"newer start", `{"v":2,"kind":"start","job":"nightly-enrichment","full":true}`, "schema version 2 is newer", nil},
		{"no version", `{"kind":"chunk","job":"nightly-enrichment","run":"r1","ids":["` + id + `"]}`, "schema version 0", nil},
		{"version not a number", `{"v":"1","kind":"chunk","job":"nightly-enrichment","run":"r1","ids":["` + id + `"]}`, "v is not a schema version number", nil},
		{"known property of the wrong type", `{"v":1,"kind":"chunk","job":"nightly-enrichment","run":"r1","seq":"2","ids":["` + id + `"],"x":1}`, "not valid JSON for a dvbulk message", nil},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeMessage([]byte(tt.body))
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if strings.Join(m.Ignored, ",") != strings.Join(tt.ignored, ",") {
					t.Errorf("ignored %v, want %v", m.Ignored, tt.ignored)
				}
				enc, err := m.Encode()
				if err != nil || strings.Contains(enc, "ignored") || strings.Contains(enc, `"id":"x"`) {
					t.Errorf("re-encoded as %s, %v; want only known properties", enc, err)
				}
				return
			}
			if !IsBadMessage(err) || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("got %v, want a bad message saying %q", err, tt.reason)
			}
		})
	}
}

// A start message with a misspelled property never writes: it is dead-lettered with a reason
// naming the property.
func TestMisspelledStartPropertyIsDeadLetteredByName(t *testing.T) {
	dv := newFakeDV(20, 0)
	e := testEngine(t, dv, &fakeEnricher{}, checkpoint.NewMem())
	res, err := e.Handle(context.Background(), []byte(`{"v":1,"kind":"start","job":"nightly-enrichment","dryrun":true}`), Delivery{DequeueCount: 1})
	if err != nil || len(res.DeadLetter) != 1 || len(res.Enqueue) != 0 {
		t.Fatalf("got %+v %v, want one dead letter and nothing queued", res, err)
	}
	var dl DeadLetter
	if err := json.Unmarshal([]byte(res.DeadLetter[0]), &dl); err != nil || !strings.Contains(dl.Reason, `"dryrun"`) {
		t.Fatalf("dead letter %s (%v) does not name the property", res.DeadLetter[0], err)
	}
	if dv.totalWrites() != 0 {
		t.Fatalf("%d writes after a refused start", dv.totalWrites())
	}
}
