package app

import (
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"dvbulk/internal/dataverse"
	"dvbulk/internal/enrich"
	"dvbulk/internal/job"
	"dvbulk/internal/pipeline"
)

// localDifferences are the settings local.settings.json deliberately sets to something other than the
// default, for `func start` against the simulators and Azurite; every other setting there must equal
// the default, so a default changed in code but not there fails TestLocalSettingsMatchDefaults.
var localDifferences = map[string]string{
	"DATAVERSE_URL":       "http://127.0.0.1:5555",        // dvbulk simulate --dataverse-port 5555
	"DATAVERSE_AUTH":      "none",                         // the simulator takes no token
	"ENRICHMENT_URL":      "http://127.0.0.1:5556/enrich", // dvbulk simulate --enrichment-port 5556
	"AzureWebJobsStorage": "UseDevelopmentStorage=true",   // Azurite
	"DVBULK_JOBS_DIR":     "handler/jobs",                 // func start runs from the repository root; the package ships it as jobs/
}

// TestLocalSettingsMatchDefaults keeps local.settings.json and the settings table in step.
func TestLocalSettingsMatchDefaults(t *testing.T) {
	data, err := os.ReadFile("../../local.settings.json")
	if err != nil {
		t.Fatal(err)
	}
	var ls struct{ Values map[string]string }
	if err := json.Unmarshal(data, &ls); err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{"FUNCTIONS_WORKER_RUNTIME": true}
	for _, s := range Settings {
		known[s.Name] = true
		if s.Name == "ENRICHMENT_API_KEY" {
			if _, ok := ls.Values[s.Name]; ok {
				t.Errorf("local.settings.json sets %s: a secret is never in a committed file", s.Name)
			}
			continue
		}
		got, ok := ls.Values[s.Name]
		want, differs := localDifferences[s.Name]
		switch {
		case !ok:
			t.Errorf("local.settings.json lacks %s", s.Name)
		case differs && got != want:
			t.Errorf("local.settings.json %s = %q, want the intended local value %q", s.Name, got, want)
		case !differs && got != s.Default:
			t.Errorf("local.settings.json %s = %q, but the default is %q (add it to localDifferences if intended)", s.Name, got, s.Default)
		}
	}
	for name := range ls.Values {
		if !known[name] {
			t.Errorf("local.settings.json sets %s, which is not in the settings table", name)
		}
	}
	for name := range localDifferences {
		if !known[name] {
			t.Errorf("localDifferences names %s, which is not a setting", name)
		}
	}
	if ls.Values["FUNCTIONS_WORKER_RUNTIME"] != "custom" {
		t.Error("FUNCTIONS_WORKER_RUNTIME must be custom")
	}
}

// readmeRow is a row of the README's settings table: | `NAME` | `default` or — | meaning |.
var readmeRow = regexp.MustCompile("(?m)^\\| `([A-Za-z_]+)` \\| (—|`[^`]*`) \\| (.*) \\|$")

// TestReadmeTableMatchesCode checks the README's settings table against Settings, name by name and
// default by default, in both directions.
func TestReadmeTableMatchesCode(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(data)
	if i := strings.Index(section, "\n## Settings\n"); i >= 0 {
		section = section[i+1:]
	}
	if i := strings.Index(section[1:], "\n#"); i >= 0 {
		section = section[:i+1] // up to the next heading
	}
	readme := map[string]string{}
	for _, m := range readmeRow.FindAllStringSubmatch(section, -1) {
		def := strings.Trim(m[2], "`")
		if m[2] == "—" {
			def = ""
		}
		readme[m[1]] = def
	}
	if len(readme) < len(Settings)/2 {
		t.Fatalf("found only %d rows in the README's settings table; the pattern is broken", len(readme))
	}
	for _, s := range Settings {
		def, ok := readme[s.Name]
		switch {
		case !ok:
			t.Errorf("README settings table lacks %s", s.Name)
		case def != s.Default:
			t.Errorf("README says %s defaults to %q, the code to %q", s.Name, def, s.Default)
		}
	}
	for name := range readme {
		if settingDefault(name) == nil {
			t.Errorf("README settings table lists %s, which the code does not read", name)
		}
	}
}

func TestDurationIsWrittenAsPeopleDo(t *testing.T) {
	for d, want := range map[time.Duration]string{time.Second: "1s", 30 * time.Second: "30s", 60 * time.Second: "60s",
		2 * time.Minute: "2m", 30 * time.Minute: "30m", 24 * time.Hour: "24h", 1500 * time.Millisecond: "1.5s"} {
		got := duration(d)
		if got != want {
			t.Errorf("duration(%v) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(got); err != nil || back != d {
			t.Errorf("duration(%v) = %q does not parse back: %v %v", d, got, back, err)
		}
	}
}

func settingDefault(name string) *string {
	for _, s := range Settings {
		if s.Name == name {
			return &s.Default
		}
	}
	return nil
}

// TestLoadTakesTheTableDefaults: a configuration from nothing but the required settings holds the
// table's defaults, so the table is the one place a default is decided.
func TestLoadTakesTheTableDefaults(t *testing.T) {
	c, err := Load(envOf(map[string]string{"DATAVERSE_URL": "http://127.0.0.1:1", "DATAVERSE_AUTH": "none", "ENRICHMENT_URL": "http://127.0.0.1:2/e"}), true)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"ENRICHMENT_BATCH_SIZE", c.EnrichBatch, enrich.DefaultBatchSize},
		{"ENRICHMENT_CONCURRENCY", c.EnrichConc, enrich.DefaultConcurrency},
		{"ENRICHMENT_TIMEOUT", c.EnrichTimeout, enrich.DefaultTimeout},
		{"ENRICHMENT_API_KEY_HEADER", c.EnrichmentHeader, enrich.DefaultAPIKeyHeader},
		{"DVBULK_DATAVERSE_CONCURRENCY", c.DVConcurrency, dataverse.DefaultMaxConcurrency},
		{"DVBULK_MAX_RETRIES", c.MaxRetries, dataverse.DefaultMaxRetries},
		{"DVBULK_REQUEST_TIMEOUT", c.RequestTimeout, dataverse.DefaultRequestTimeout},
		{"DVBULK_LEASE", c.Lease, job.DefaultLease},
		{"DVBULK_FLUSH_INTERVAL", c.Flush, job.DefaultFlushInterval},
		{"DVBULK_STALE_AFTER", c.StaleAfter, job.DefaultStaleAfter},
		{"DVBULK_PLAN_PAGES", c.PlanPages, job.DefaultPlanPages},
		{"DVBULK_TRANSFORM_WORKERS", c.TWorkers, 0}, // derived from the enrichment client's limits
		{"ENRICHMENT_ADAPTIVE", c.EnrichAdaptive, true},
		{"DVBULK_WRITE_WORKERS", c.WWorkers, pipeline.DefaultWriteWorkers},
		{"DVBULK_CHECKPOINT_STORE", c.StoreKind, StoreBlob},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s: loaded %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestLoadNamesTheBadSetting(t *testing.T) {
	base := map[string]string{"DATAVERSE_URL": "http://127.0.0.1:1", "DATAVERSE_AUTH": "none", "ENRICHMENT_URL": "http://127.0.0.1:2/e"}
	for name, value := range map[string]string{
		"DVBULK_CHECKPOINT_STORE":     "disk",
		"DVBULK_CHECKPOINT_CONTAINER": "Has_Upper",
		"ENRICHMENT_RPS":              "-1",
		"DVBULK_FLUSH_INTERVAL":       "45s", // not under half of the 60s lease
		"ENRICHMENT_API_KEY_HEADER":   "x api key",
		"DVBULK_WRITE_WORKERS":        "0",
		"DVBULK_TRANSFORM_WORKERS":    "-1",
		"ENRICHMENT_ADAPTIVE":         "sometimes",
		"DVBULK_SHARED_BUDGET":        "maybe",
		"DVBULK_BUDGET_REFRESH":       "0s",
		"DVBULK_BUDGET_HEARTBEAT":     "500ms", // under the 1s refresh
		"DVBULK_BUDGET_SKEW":          "-2s",
	} {
		env := map[string]string{name: value}
		for k, v := range base {
			env[k] = v
		}
		_, err := Load(envOf(env), true)
		var se *SettingError
		if !errors.As(err, &se) || se.Name != name {
			t.Errorf("%s=%q: Load = %v, want a SettingError naming it", name, value, err)
		}
	}
}
