package job

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/dataverse"
	"dvbulk/internal/dvsim"
)

const importSpecJSON = `{
  "name": "import-contacts",
  "table": {"entitySet": "contacts", "logicalName": "contact", "key": "contactid"},
  "transform": {"kind": "import"},
  "chunkSize": 100, "pageSize": 500,
  "write": {"mode": "bulk", "batchSize": 50},
  "import": {
    "mode": "create",
    "key": ["dvb_legacyid"],
    "mapping": {"columns": [
      {"source": "Legacy ID", "target": "dvb_legacyid", "type": "string", "required": true},
      {"source": "First", "target": "firstname", "type": "string"},
      {"source": "Last", "target": "lastname", "type": "string", "required": true},
      {"source": "Email", "target": "emailaddress1", "type": "string"},
      {"source": "Children", "target": "numberofchildren", "type": "int"},
      {"source": "Notes", "target": "description", "type": "string"},
      {"source": "Account", "target": "parentcustomerid_account", "type": "lookup", "table": "accounts", "key": "accountnumber"}
    ]}
  }
}`

// importFile writes a CSV of n contacts: quoted fields with commas and quotes, a multi-line note
// every 25th row, lookups to the seeded accounts by account number, and bad rows of every kind.
// It returns the file, the legacy ids that must exist afterwards and the bad rows' record numbers.
func importFile(t testing.TB, n, accounts int) (string, map[string]bool, map[int64]string) {
	var b strings.Builder
	b.WriteString("\uFEFFLegacy ID,First,Last,Email,Children,Notes,Account\r\n")
	good := map[string]bool{}
	bad := map[int64]string{}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("L-%05d", i)
		last := fmt.Sprintf(`"O'Brien, ""Jr"" %d"`, i)
		children := fmt.Sprint(i % 5)
		notes := "plain"
		if i%25 == 0 {
			notes = "\"first line\r\nsecond line, with comma\""
		}
		account := dvsim.AccountNumber(i % accounts)
		switch i % 100 {
		case 13:
			children, bad[int64(i)] = "many", `column "Children"`
		case 37:
			last, bad[int64(i)] = "", `column "Last": required but empty`
		case 59:
			account, bad[int64(i)] = "ACC-999999", "lookup target not found"
		case 71:
			id, bad[int64(i)] = fmt.Sprintf("L-%05d", i-1), "key repeated in the file (first in record"
		}
		if _, isBad := bad[int64(i)]; !isBad {
			good[id] = true
		}
		fmt.Fprintf(&b, "%s,Ann,%s,a%d@example.com,%s,%s,%s\r\n", id, last, i, children, notes, account)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "imports"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "imports", "contacts.csv"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, good, bad
}

func importEngine(t testing.TB, sim *dvsim.Sim, dir string) *Engine {
	base, stop := sim.Start()
	t.Cleanup(stop)
	dv, err := dataverse.New(dataverse.Config{URL: base, MaxConcurrency: 8, Logger: zerolog.Nop(), RetryBaseDelay: 5 * time.Millisecond, RetryMaxDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{Store: checkpoint.NewMem(), DV: dv, Imports: DirSource{Root: dir}, Log: zerolog.Nop(),
		Opt: Options{PlanPages: 1, FlushInterval: 20 * time.Millisecond, Lease: 5 * time.Second, YieldMargin: time.Second, ImportPrefix: "imports/"}}
	e.Init()
	return e
}

func runImport(t testing.TB, e *Engine, source string) *Summary {
	t.Helper()
	spec, err := Parse([]byte(importSpecJSON))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := e.Start(ctx, spec, StartOptions{Source: source, Trigger: "test", At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if dead := drain(ctx, t, e, res); len(dead) > 0 {
		t.Fatalf("dead letters: %v", dead)
	}
	var sum *Summary
	_ = e.Store.List(ctx, "runs/", func(name string) error {
		if strings.HasSuffix(name, "/summary.json") {
			sum, _, err = load[Summary](ctx, e.Store, name)
		}
		return err
	})
	if sum == nil {
		t.Fatal("no run summary")
	}
	return sum
}

// checkImported verifies that every good row exists exactly once with its values and lookup, and
// that the summary names every bad row by record and line.
func checkImported(t *testing.T, sim *dvsim.Sim, sum *Summary, good map[string]bool, bad map[int64]string) {
	t.Helper()
	rows := sim.Rows("contacts")
	seen := map[string]int{}
	for _, r := range rows {
		id, _ := r["dvb_legacyid"].(string)
		seen[id]++
		if !good[id] {
			t.Errorf("unexpected contact %v", r)
		}
	}
	for id := range good {
		if seen[id] != 1 {
			t.Errorf("%s exists %d times", id, seen[id])
		}
	}
	if sum.Outcomes[OutcomeCreated] != len(good) || sum.Outcomes["failed"] != len(bad) {
		t.Errorf("outcomes %v, want %d created and %d failed", sum.Outcomes, len(good), len(bad))
	}
	for _, f := range sum.Failures {
		want, ok := bad[f.Row]
		// Row r of this file starts on line r+1 (the header is line 1); rows 25, 50, ... hold a
		// two-line note, so later rows start one line further down for each one before them.
		line := f.Row + 1 + (f.Row-1)/25
		if !ok || !strings.Contains(f.Reason, want) || f.Line != line || !strings.HasPrefix(f.Reason, fmt.Sprintf("record %d (line %d)", f.Row, line)) {
			t.Errorf("failure %+v, want record %d line %d with %q", f, f.Row, line, want)
		}
	}
	if len(sum.Failures) != len(bad) {
		t.Errorf("%d failures listed, want %d", len(sum.Failures), len(bad))
	}
}

func TestImportCreatesEveryGoodRowOnce(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 20})
	dir, good, bad := importFile(t, 2000, 20)
	e := importEngine(t, sim, dir)
	sum := runImport(t, e, "imports/contacts.csv")
	checkImported(t, sim, sum, good, bad)
	r := sim.Rows("contacts")[0]
	if !strings.HasPrefix(r["lastname"].(string), `O'Brien, "Jr" `) || r["_parentcustomerid_value"] == nil {
		t.Errorf("row %v", r)
	}
	for _, r := range sim.Rows("contacts") {
		if r["dvb_legacyid"] == "L-00025" && r["description"] != "first line\r\nsecond line, with comma" {
			t.Errorf("multi-line note: %q", r["description"])
		}
	}
	if sim.Counters().ByKind["createMultiple"] == 0 {
		t.Error("no CreateMultiple")
	}
}

// TestImportSurvivesLostAnswers drops the answers of applied writes, as a worker killed between a
// write and its checkpoint: the retried creates find their records and nothing is created twice.
func TestImportSurvivesLostAnswers(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 20})
	dir, good, bad := importFile(t, 1500, 20)
	e := importEngine(t, sim, dir)
	sim.Faults().LoseAnswers(12)
	sum := runImport(t, e, "imports/contacts.csv")
	checkImported(t, sim, sum, good, bad)
	if c := sim.Counters(); c.Dropped < 12 {
		t.Errorf("only %d answers lost", c.Dropped)
	}
}

func TestImportStartRefusals(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 1})
	dir, _, _ := importFile(t, 10, 1)
	if err := os.WriteFile(filepath.Join(dir, "imports", "wrong.csv"), []byte("Legacy ID,Last\nL-1,X\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := importEngine(t, sim, dir)
	spec, err := Parse([]byte(importSpecJSON))
	if err != nil {
		t.Fatal(err)
	}
	for source, want := range map[string]string{
		"":                       "must name its source",
		"elsewhere/contacts.csv": "not under the import prefix",
		"imports/../secret.csv":  "'..' path segment",
		"https://evil/x.csv":     "not a URL",
		"imports/missing.csv":    "not found",
		"imports/wrong.csv":      `the file has no column "First"`,
	} {
		_, err := e.Start(context.Background(), spec, StartOptions{Source: source, At: time.Now()})
		if !IsBadMessage(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("source %q: %v, want a bad message with %q", source, err, want)
		}
	}
	if _, err := DecodeMessage([]byte(`{"v":1,"kind":"start","job":"import-contacts","source":"imports/contacts.csv"}`)); err != nil {
		t.Errorf("start with source: %v", err)
	}
	if _, err := DecodeMessage([]byte(`{"v":1,"kind":"start","job":"import-contacts","source":"/etc/passwd"}`)); err == nil {
		t.Error("absolute source accepted")
	}
}
