package report

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/job"
	"dvbulk/internal/pipeline"
	"dvbulk/internal/telemetry"
)

var t0 = time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)

func put(t *testing.T, st checkpoint.Store, name string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(context.Background(), name, data); err != nil {
		t.Fatal(err)
	}
}

// fixture stores a run of nightly-enrichment: two chunks, planned, optionally finished, with
// telemetry from two instances.
func fixture(t *testing.T, run string, finished bool) checkpoint.Store {
	t.Helper()
	st := checkpoint.NewMem()
	spec, err := job.Lookup("nightly-enrichment")
	if err != nil {
		t.Fatal(err)
	}
	man := &job.Manifest{Run: run, Job: spec.Name, Spec: spec, Trigger: "timer", State: job.RunProcessing,
		NextSeq: 2, PlannedRecords: 4, PlanningDone: true, Created: t0, Updated: t0.Add(time.Second)}
	if finished {
		man.State = job.RunDone
	}
	put(t, st, "runs/"+run+"/manifest.json", man)
	put(t, st, "runs/"+run+"/chunks/000000.json", &job.Chunk{Run: run, Seq: 0, State: job.ChunkDone, Records: []job.Record{
		{ID: "00000000-0000-0000-0000-000000000001", Current: map[string]any{"name": "Contoso", "websiteurl": "https://contoso.com"}, Outcome: "updated"},
		{ID: "00000000-0000-0000-0000-000000000002", Current: map[string]any{"name": "=cmd|' /C calc'!A0", "websiteurl": nil}, Outcome: "failed",
			Reason: "=HYPERLINK(\"http://evil.example\")"},
	}})
	put(t, st, "runs/"+run+"/chunks/000001.json", &job.Chunk{Run: run, Seq: 1, State: job.ChunkDone, Records: []job.Record{
		{ID: "00000000-0000-0000-0000-000000000003", Current: map[string]any{"name": "Fabrikam", "websiteurl": "-"}, Outcome: "failed",
			Reason: "write: dataverse: HTTP 400 Bad Request (0x80040265): revenue is out of range"},
		{ID: "00000000-0000-0000-0000-000000000004", Current: map[string]any{"name": "Litware"}, Outcome: "skipped", Reason: "changed by someone else"},
	}})
	prog := &job.Progress{Run: run, DoneBits: []byte{3}, Chunks: 2, Records: 4, Outcomes: map[pipeline.Outcome]int{"updated": 1, "failed": 2, "skipped": 1}}
	put(t, st, "runs/"+run+"/progress.json", prog)
	if finished {
		put(t, st, "runs/"+run+"/summary.json", &job.Summary{Run: run, Job: spec.Name, Trigger: "timer", Started: t0, Finished: t0.Add(20 * time.Second),
			DurationSeconds: 20, RecordsPerSecond: 0.2, Planned: 4, Records: 4, Chunks: 2, Outcomes: prog.Outcomes,
			DeadLettered: []job.DeadChunk{{Seq: 1, Reason: "Dataverse <unreachable>", Records: 2}}, Stats: job.Stats{Throttled: 3}})
	}
	for i, inst := range []string{"host-a-1", "host-b-2"} {
		d := &telemetry.Doc{V: 1, Run: run, Instance: inst, Interval: 5, Settings: map[string]string{"DVBULK_DATAVERSE_CONCURRENCY": []string{"12", "16"}[i]},
			Slowest: []telemetry.ChunkTime{{Seq: i, Records: 2, Milli: int64(1000 * (i + 1))}}}
		for s := 1; s <= 4; s++ {
			d.Samples = append(d.Samples, telemetry.Sample{T: t0.Add(time.Duration(5*s) * time.Second).UnixMilli(),
				Done: map[string]int64{[]string{"updated", "skipped"}[i]: int64(s / 4), "failed": int64(s / 4)}, DVInFlight: 2, DVLimit: 12, DVHint: 48,
				DVThrottled: map[string]int64{"0x80072322": int64(s / 3)}, EnInFlight: 1, EnLimit: 4})
		}
		put(t, st, telemetry.Prefix(run)+inst+".json", d)
	}
	return st
}

func TestNeutralise(t *testing.T) {
	for in, want := range map[string]string{
		"=1+1": "'=1+1", "+1": "'+1", "-2": "'-2", "@SUM(A1)": "'@SUM(A1)", "\t=1": "'\t=1", "\r=1": "'\r=1",
		"": "", "Contoso": "Contoso", "a=1": "a=1", "'=1": "'=1",
	} {
		if got := Neutralise(in); got != want {
			t.Errorf("Neutralise(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestErrorCode(t *testing.T) {
	for in, want := range map[string]string{
		"write: dataverse: HTTP 400 Bad Request (0x80040265): x": "0x80040265",
		"enrichment: no match":                    "",
		"mentions 0x80040265 without parentheses": "",
	} {
		if got := ErrorCode(in); got != want {
			t.Errorf("ErrorCode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriteFailedListsFailedAndSkippedRecordsNeutralised(t *testing.T) {
	st := fixture(t, "nightly-enrichment-20261123t020000z", true)
	var b bytes.Buffer
	n, err := WriteFailed(context.Background(), st, "nightly-enrichment-20261123t020000z", &b)
	if err != nil || n != 3 {
		t.Fatalf("WriteFailed: %d records, %v", n, err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"accountid", "name", "websiteurl", "outcome", "reason", "error_code", "chunk"},
		{"00000000-0000-0000-0000-000000000002", "'=cmd|' /C calc'!A0", "", "failed", "'=HYPERLINK(\"http://evil.example\")", "", "0"},
		{"00000000-0000-0000-0000-000000000003", "Fabrikam", "'-", "failed", "write: dataverse: HTTP 400 Bad Request (0x80040265): revenue is out of range", "0x80040265", "1"},
		{"00000000-0000-0000-0000-000000000004", "Litware", "", "skipped", "changed by someone else", "", "1"},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows %q", rows)
	}
	for i := range want {
		if strings.Join(rows[i], "|") != strings.Join(want[i], "|") {
			t.Errorf("row %d:\n got %q\nwant %q", i, rows[i], want[i])
		}
	}
	if _, err := WriteFailed(context.Background(), st, "no-such-run", &b); err == nil {
		t.Error("no error for a run that does not exist")
	}
}

func TestHTMLReportShowsTheSummaryAndTheCharts(t *testing.T) {
	run := "nightly-enrichment-20261123t020000z"
	st := fixture(t, run, true)
	if err := Save(context.Background(), st, run, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := Save(context.Background(), st, run, t0.Add(2*time.Minute)); err != nil { // replaces
		t.Fatal(err)
	}
	data, _, err := st.Get(context.Background(), Name(run))
	if err != nil {
		t.Fatal(err)
	}
	html := string(data)
	for _, want := range []string{
		`id="total-records" data-value="4"`, `id="total-planned" data-value="4"`, `id="total-chunks" data-value="2"`,
		`id="total-throttled" data-value="3"`, `id="outcome-failed" data-value="2"`, `id="outcome-skipped" data-value="1"`,
		`<svg class="chart" id="chart-throughput"`, `<svg class="chart" id="chart-concurrency"`, `<svg class="chart" id="chart-throttling"`,
		"<polyline", "Dataverse &lt;unreachable&gt;", // dead-lettered chunk, escaped
		"number of requests (0x80072322)", "DVBULK_DATAVERSE_CONCURRENCY", "12 (1 instances); 16 (1 instances)",
		"host-b-2", `&#34;entitySet&#34;: &#34;accounts&#34;`, "generated 2026-11-23 02:02:00Z",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("report lacks %s", want)
		}
	}
	for _, bad := range []string{"<script", " src=", "<link", "url("} {
		if strings.Contains(html, bad) {
			t.Errorf("report is not self-contained: %s", bad)
		}
	}
	// The slowest chunk first: chunk 1 (2 s on host-b-2).
	if i, j := strings.Index(html, ">2s<"), strings.Index(html, ">1s<"); i < 0 || j < 0 || i > j {
		t.Errorf("slowest chunks not longest first")
	}
}

func TestHTMLReportOfARunStillGoingAndWithoutTelemetry(t *testing.T) {
	run := "nightly-enrichment-20261123t020000z"
	st := fixture(t, run, false)
	var b bytes.Buffer
	if err := Write(context.Background(), st, run, t0.Add(30*time.Second), &b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "not finished") || !strings.Contains(b.String(), `id="total-records" data-value="4"`) {
		t.Errorf("unfinished run's report:\n%s", b.String())
	}
	if _, err := telemetry.Delete(context.Background(), st, run); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if err := Write(context.Background(), st, run, t0.Add(30*time.Second), &b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "No telemetry was recorded") {
		t.Errorf("a run without telemetry does not say so")
	}
}

func TestLiveLine(t *testing.T) {
	run := "nightly-enrichment-20261123t020000z"
	st := fixture(t, run, false)
	l, err := ReadLive(context.Background(), st, run, 0, t0.Add(21*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	line := l.Line()
	for _, want := range []string{"processing", "4/4 records", "(total: planned)", "failed 2", "429s 2", "Dataverse 4 in flight / limit 24 (hint 48)", "enrichment 2/8", "instances 2/2"} {
		if !strings.Contains(line, want) {
			t.Errorf("line lacks %q: %s", want, line)
		}
	}
	// Long after the last sample, nobody is alive.
	l, _ = ReadLive(context.Background(), st, run, 0, t0.Add(10*time.Minute))
	if l.Alive != 0 || !strings.Contains(l.Line(), "instances 0/2") {
		t.Errorf("stale instances counted alive: %s", l.Line())
	}
}

func TestPreviousTotalAndPrune(t *testing.T) {
	ctx := context.Background()
	old := "nightly-enrichment-20261120t020000z"
	st := fixture(t, old, true)
	spec, _ := job.Lookup("nightly-enrichment")
	cur := "nightly-enrichment-20261123t020000z"
	put(t, st, "runs/"+cur+"/manifest.json", &job.Manifest{Run: cur, Job: spec.Name, Spec: spec, State: job.RunPlanning, Created: t0.Add(72 * time.Hour)})
	put(t, st, telemetry.Prefix(cur)+"x.json", &telemetry.Doc{Run: cur, Instance: "x"})
	if n, err := PreviousTotal(ctx, st, spec.Name, cur); err != nil || n != 4 {
		t.Fatalf("previous total %d, %v; want 4", n, err)
	}
	// 30 days after the old run finished: its telemetry goes, the running one's stays.
	n, err := Prune(ctx, st, 720*time.Hour, t0.Add(721*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("pruned %d, %v; want the old run's 2 documents", n, err)
	}
	if docs, _ := telemetry.Read(ctx, st, old); len(docs) != 0 {
		t.Errorf("old run's telemetry kept")
	}
	if docs, _ := telemetry.Read(ctx, st, cur); len(docs) != 1 {
		t.Errorf("running run's telemetry pruned")
	}
	if _, _, err := st.Get(ctx, "runs/"+old+"/summary.json"); err != nil {
		t.Errorf("summary pruned: %v", err)
	}
	if n, _ := Prune(ctx, st, 0, t0.Add(10000*time.Hour)); n != 0 {
		t.Errorf("retention 0 pruned %d", n)
	}
}
