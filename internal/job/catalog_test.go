package job

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"dvbulk/internal/checkpoint"
)

const customSpec = `{
  "name": "custom-recalc",
  "table": {"entitySet": "accounts", "logicalName": "account", "key": "accountid"},
  "filter": "statecode eq 0",
  "columns": {"accountid": "guid", "numberofemployees": "int", "description": "string"},
  "input": ["numberofemployees"],
  "writable": ["description"],
  "transform": {"kind": "recalculate", "set": {"description": "(numberofemployees ?? 0) > 10 ? \"big\" : \"small\""}},
  "write": {"mode": "bulk", "batchSize": 100, "concurrency": "none"}
}`

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadCatalog(t *testing.T) {
	t.Run("specs and built-ins", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{"custom.json": customSpec, "README.txt": "not a spec"})
		c, err := LoadCatalog(dir, true)
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.Lookup("custom-recalc")
		if err != nil || s.Transform.Kind != KindRecalculate {
			t.Fatalf("custom job: %+v %v", s, err)
		}
		if _, err := c.Lookup("nightly-enrichment"); err != nil {
			t.Fatalf("built-in job: %v", err)
		}
		if got := c.Source("custom-recalc"); got != filepath.Join(dir, "custom.json") {
			t.Errorf("source %q", got)
		}
		// Each lookup is the caller's own copy.
		s.ChunkSize = 7
		if s2, _ := c.Lookup("custom-recalc"); s2.ChunkSize == 7 {
			t.Error("a lookup returned a shared spec")
		}
	})
	cases := []struct {
		name     string
		files    map[string]string
		required bool
		want     []string // substrings of the error; nil = loads
	}{
		{"a bad field", map[string]string{"bad.json": strings.Replace(customSpec, `"batchSize": 100`, `"batchSize": 5000`, 1)}, false, []string{"bad.json", "write.batchSize"}},
		{"an unknown field", map[string]string{"typo.json": strings.Replace(customSpec, `"filter"`, `"fliter"`, 1)}, false, []string{"typo.json", `"fliter"`}},
		{"not JSON", map[string]string{"broken.json": "{"}, false, []string{"broken.json"}},
		{"a built-in job's name", map[string]string{"mine.json": strings.Replace(customSpec, "custom-recalc", "nightly-enrichment", 1)}, false, []string{"mine.json", "name", "built-in"}},
		{"two files, one name", map[string]string{"a.json": customSpec, "b.json": customSpec}, false, []string{"b.json", "a.json"}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadCatalog(writeFiles(t, tt.files), tt.required)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
	t.Run("missing directory", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "jobs")
		c, err := LoadCatalog(missing, false)
		if err != nil || strings.Join(c.Names(), ",") != strings.Join(BuiltinNames(), ",") {
			t.Fatalf("the default directory absent: %v %v, want the built-in jobs", c, err)
		}
		if _, err := LoadCatalog(missing, true); err == nil {
			t.Fatal("a directory the operator named is missing, but the catalog loaded")
		}
	})
}

// The job-name rule stays: a catalog never reads a file a name points at.
func TestCatalogLookupRefusesPaths(t *testing.T) {
	dir := writeFiles(t, map[string]string{"custom.json": customSpec})
	c, err := LoadCatalog(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{filepath.Join(dir, "custom.json"), "custom.json", "../custom-recalc", "https://example.com/job.json", "Custom-Recalc"} {
		if _, err := c.Lookup(ref); !errors.Is(err, ErrUnknownJob) {
			t.Errorf("Lookup(%q) = %v, want ErrUnknownJob", ref, err)
		}
	}
}

// A start message naming a job of the jobs directory starts it; before, it was dead-lettered as
// "unknown job". A name that is neither built in nor in the directory is still dead-lettered.
func TestStartMessageNamesAJobsDirectoryJob(t *testing.T) {
	c, err := LoadCatalog(writeFiles(t, map[string]string{"custom.json": customSpec}), true)
	if err != nil {
		t.Fatal(err)
	}
	dv := newFakeDV(30, 0)
	st := checkpoint.NewMem()
	e := testEngine(t, dv, &fakeEnricher{}, st)
	e.Jobs = c
	ctx := context.Background()
	res, err := e.Handle(ctx, []byte(`{"v":1,"kind":"start","job":"custom-recalc","run":"custom-recalc-r1"}`), Delivery{DequeueCount: 1})
	if err != nil || len(res.DeadLetter) != 0 || len(res.Enqueue) == 0 {
		t.Fatalf("start of a jobs-directory job: %+v %v", res, err)
	}
	m, err := ReadStatus(ctx, st, "custom-recalc-r1")
	if err != nil || m.Manifest == nil || m.Manifest.Spec.Name != "custom-recalc" {
		t.Fatalf("no run of the custom job: %+v %v", m, err)
	}
	res, err = e.Handle(ctx, []byte(`{"v":1,"kind":"start","job":"not-there"}`), Delivery{DequeueCount: 1})
	if err != nil || len(res.DeadLetter) != 1 || !strings.Contains(res.DeadLetter[0], "custom-recalc") {
		t.Fatalf("unknown job: %+v %v; want a dead letter listing the known jobs", res, err)
	}
}

// The example specs the package ships are valid.
func TestShippedJobSpecsLoad(t *testing.T) {
	c, err := LoadCatalog(filepath.Join("..", "..", "handler", "jobs"), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Names()) <= len(BuiltinNames()) {
		t.Fatalf("handler/jobs adds no job: %v", c.Names())
	}
}
