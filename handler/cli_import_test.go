package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"dvbulk/internal/dvsim"
	"dvbulk/internal/job"
	"dvbulk/internal/testutil"
)

// TestRunImportsALocalFile: `dvbulk run --job import-contacts --source file.csv` imports a file on this
// machine through the same planner and writes as a dropped blob: the good rows are created once (a
// quoted field with a comma and quotes, a multi-line field, a lookup by account number), the bad row
// fails alone with its record and line, and a second run of the same file creates nothing again.
func TestRunImportsALocalFile(t *testing.T) {
	dv := dvsim.New(dvsim.Config{Accounts: 5})
	url, stop := dv.Start()
	t.Cleanup(stop)
	dir := t.TempDir()
	file := filepath.Join(dir, "contacts.csv")
	csv := "legacy_id,first_name,last_name,email,phone,city,birthdate,children,credit_limit,do_not_email,role,account_number,notes\r\n" +
		"L-1,Ann,\"O'Brien, \"\"Jr\"\"\",ann@example.com,555-0100,Oslo,1980-02-29,2,1500.50,true,Employee,ACC-000001,\"first line\r\nsecond line\"\r\n" +
		"L-2,Bob,Smith,bob@example.com,,,,,,,,,\r\n" +
		"L-3,Eve,,eve@example.com,,,,,,,,,no last name\r\n"
	if err := os.WriteFile(file, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	env := envOf(map[string]string{"DATAVERSE_URL": url, "DATAVERSE_AUTH": "none",
		"DVBULK_CHECKPOINT_DIR": filepath.Join(dir, "checkpoints"), "DVBULK_LOG_LEVEL": "warn"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	importOnce := func(extra ...string) *job.Summary {
		var stdout, stderr testutil.SyncBuffer
		args := append([]string{"run", "--job", "import-contacts", "--source", file, "--json"}, extra...)
		if code := run(ctx, args, env, &stdout, &stderr); code != 0 {
			t.Fatalf("dvbulk run exited %d:\n%s\n%s", code, stdout.String(), stderr.String())
		}
		var sum job.Summary
		if err := json.Unmarshal([]byte(stdout.String()), &sum); err != nil {
			t.Fatalf("summary: %v\n%s", err, stdout.String())
		}
		return &sum
	}
	sum := importOnce()
	rows := dv.Rows("contacts")
	if len(rows) != 2 {
		t.Fatalf("%d contacts created, want 2: %v", len(rows), rows)
	}
	for _, r := range rows {
		switch r["dvb_legacyid"] {
		case "L-1":
			if r["lastname"] != `O'Brien, "Jr"` || r["description"] != "first line\r\nsecond line" || r["_parentcustomerid_value"] == nil {
				t.Errorf("L-1 imported as %v", r)
			}
		case "L-2":
		default:
			t.Errorf("unexpected contact %v", r)
		}
	}
	if len(sum.Failures) != 1 || sum.Failures[0].Row != 3 || sum.Failures[0].Line != 5 || !strings.Contains(sum.Failures[0].Reason, "last_name") {
		t.Errorf("failures %+v, want record 3 on line 5 naming last_name", sum.Failures)
	}

	importOnce("--new")
	if n := len(dv.Rows("contacts")); n != 2 {
		t.Errorf("a second import of the same file left %d contacts, want 2", n)
	}
}

// TestRunSourceNeedsAnImportJob: --source with a job that does not import is bad usage.
func TestRunSourceNeedsAnImportJob(t *testing.T) {
	var stdout, stderr testutil.SyncBuffer
	env := envOf(map[string]string{"DATAVERSE_URL": "http://127.0.0.1:1", "DATAVERSE_AUTH": "none", "ENRICHMENT_URL": "http://127.0.0.1:1",
		"DVBULK_CHECKPOINT_DIR": t.TempDir()})
	code := run(context.Background(), []string{"run", "--source", "contacts.csv"}, env, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "--source") {
		t.Errorf("exit %d, stderr %q; want 2 naming --source", code, stderr.String())
	}
}
