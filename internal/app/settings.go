// Package app is the one place that reads the app settings (environment variables) and host.json, and
// the one place that builds the product from them: the Dataverse client, the enrichment client, the
// checkpoint store and the job engine. The custom handler, the CLI, the bench and the demo all build
// through it, so a new capability is wired once. Library packages get URLs, credentials and options
// from here, never a getenv.
//
// azidentity's DefaultAzureCredential also reads AZURE_* variables itself (its environment
// credential): that is the library's design, noted in the README's Settings section.
package app

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/dataverse"
	"dvbulk/internal/enrich"
	"dvbulk/internal/job"
	"dvbulk/internal/netutil"
	"dvbulk/internal/pipeline"
)

// Config is every app setting, read and validated by Load. Library packages get plain values from here.
type Config struct {
	DataverseURL   string
	DataverseAuth  string
	DVConcurrency  int
	AffinityCookie bool
	RequestTimeout time.Duration
	MaxRetries     int

	EnrichmentURL    string
	EnrichmentKey    string
	EnrichmentHeader string
	EnrichBatch      int
	EnrichConc       int
	EnrichAdaptive   bool
	EnrichRPS        float64
	EnrichTimeout    time.Duration

	Identity dataverse.Identity // AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET (DATAVERSE_AUTH)

	Storage       Storage // AzureWebJobsStorage and its identity-based form
	StoreKind     string  // DVBULK_CHECKPOINT_STORE: blob or dir
	Container     string
	CheckpointDir string

	ImportContainer string // DVBULK_IMPORT_CONTAINER: where import jobs' files are
	ImportPrefix    string // DVBULK_IMPORT_PREFIX, with a trailing slash ("" = the whole container)

	Job       *job.Spec
	JobRef    string
	JobsDir   string       // DVBULK_JOBS_DIR resolved against the app root
	Jobs      *job.Catalog // built-in jobs plus the jobs directory's: what a start message may name
	ChunkSize int
	DryRun    bool
	// RefreshAfter and NoMatchRetry are the incremental rules (internal/ledger); 0 = always ask.
	RefreshAfter time.Duration
	NoMatchRetry time.Duration
	Lease        time.Duration
	StaleAfter   time.Duration
	Flush        time.Duration
	PlanPages    int
	TWorkers     int
	WWorkers     int
	LogLevel     zerolog.Level

	TelemetryInterval  time.Duration // 0 = no samples
	TelemetryRetention time.Duration // 0 = keep
	// The service-protection budget shared by every instance of the same application user.
	SharedBudget    bool
	BudgetRefresh   time.Duration
	BudgetHeartbeat time.Duration
	BudgetSkew      time.Duration
}

// SettingError names the setting that is wrong; the CLI prints it as the one-line reason for exit 2.
type SettingError struct{ Name, Problem string }

func (e *SettingError) Error() string { return e.Name + ": " + e.Problem }

// Setting documents one app setting: its name, default and meaning (README's settings table and
// local.settings.json are checked against the same list by a test).
type Setting struct{ Name, Default, Meaning string }

// Settings is every app setting the product reads, with its default. A default that a library also
// falls back to (a zero value in its Config) is that library's exported constant, so each default is
// decided once; TestReadmeTableMatchesCode and TestLocalSettingsMatchDefaults hold the README's table
// and local.settings.json to this list.
var Settings = []Setting{
	{"DATAVERSE_URL", "", "required; environment root such as https://contoso.crm.dynamics.com (https unless loopback)"},
	{"DATAVERSE_AUTH", "default", "default (DefaultAzureCredential), managedidentity, clientsecret, or none (loopback only)"},
	{"ENRICHMENT_URL", "", "required by enrich jobs; https unless loopback"},
	{"ENRICHMENT_API_KEY", "", "optional; sent in the ENRICHMENT_API_KEY_HEADER header; never logged"},
	{"ENRICHMENT_API_KEY_HEADER", enrich.DefaultAPIKeyHeader, "header that carries the enrichment API key"},
	{"ENRICHMENT_BATCH_SIZE", strconv.Itoa(enrich.DefaultBatchSize), "most records per enrichment request (1-1000); a 400/413 on several is retried in halves and a smaller size the service takes is learned"},
	{"ENRICHMENT_CONCURRENCY", strconv.Itoa(enrich.DefaultConcurrency), "ceiling of concurrent enrichment requests per instance (1-256); below it the limit adapts to the service's latency and 429s"},
	{"ENRICHMENT_ADAPTIVE", "true", "false: always ENRICHMENT_CONCURRENCY requests at once (a fixed concurrency) instead of adapting up to it"},
	{"ENRICHMENT_RPS", "0", "enrichment requests per second per instance; 0 = no limit"},
	{"ENRICHMENT_TIMEOUT", duration(enrich.DefaultTimeout), "timeout of one enrichment request"},
	{"AzureWebJobsStorage", "", "storage connection for checkpoints; UseDevelopmentStorage=true means Azurite"},
	{"DVBULK_CHECKPOINT_STORE", StoreBlob, "where the Functions app keeps checkpoints: blob (AzureWebJobsStorage) or dir (DVBULK_CHECKPOINT_DIR, one machine only)"},
	{"DVBULK_CHECKPOINT_CONTAINER", "dvbulk-checkpoints", "blob container that holds checkpoints"},
	{"DVBULK_CHECKPOINT_DIR", ".dvbulk", "local checkpoint directory for the console (run/status --store dir)"},
	{"DVBULK_IMPORT_CONTAINER", "dvbulk-imports", "blob container (in AzureWebJobsStorage's account) that import jobs read their files from"},
	{"DVBULK_IMPORT_PREFIX", "imports/", "an import's source must be a blob name under this prefix of DVBULK_IMPORT_CONTAINER"},
	{"DVBULK_JOB", "nightly-enrichment", "the timer's job: a built-in job, a job from DVBULK_JOBS_DIR (by name), or a path to a job .json file"},
	{"DVBULK_JOBS_DIR", DefaultJobsDir, "directory of custom job specs (*.json), relative to the app root; all are validated at start and start messages may name them; the default may be absent (no custom jobs), a directory set here must exist"},
	{"DVBULK_SCHEDULE", "0 0 2 * * *", "EnrichTimer's NCRONTAB schedule (read by the Functions host)"},
	{"DVBULK_CHUNK_SIZE", "0", "records per chunk message; 0 = the job's chunkSize (default " + strconv.Itoa(job.DefaultChunkSize) + "); max " + strconv.Itoa(job.MaxChunkSize)},
	{"DVBULK_DRY_RUN", "false", "true: do everything but the writes; the report shows what would change"},
	{"DVBULK_REFRESH_AFTER", "720h", "an enriched record whose inputs did not change is asked again after this long (spread over its last quarter); 0 = every run"},
	{"DVBULK_NOMATCH_RETRY_AFTER", "168h", "a record the enrichment service answered \"no match\" is asked again after this long; 0 = every run"},
	{"DVBULK_DATAVERSE_CONCURRENCY", strconv.Itoa(dataverse.DefaultMaxConcurrency), "cap on concurrent Dataverse requests per instance (the x-ms-dop-hint caps it too)"},
	{"DVBULK_AFFINITY_COOKIE", "false", "true sends the ARRAffinity cookie (pins one web server; slower)"},
	{"DVBULK_MAX_RETRIES", strconv.Itoa(dataverse.DefaultMaxRetries), "retries of one Dataverse request after 5xx, timeouts and resets (429s are waited out separately)"},
	{"DVBULK_REQUEST_TIMEOUT", duration(dataverse.DefaultRequestTimeout), "timeout of one Dataverse request attempt"},
	{"DVBULK_LEASE", duration(job.DefaultLease), "chunk ownership lease; renewed by every checkpoint write"},
	{"DVBULK_STALE_AFTER", duration(job.DefaultStaleAfter), "a run without progress for this long is taken over by the next timer tick"},
	{"DVBULK_FLUSH_INTERVAL", duration(job.DefaultFlushInterval), "how often a running chunk writes its checkpoint"},
	{"DVBULK_PLAN_PAGES", strconv.Itoa(job.DefaultPlanPages), "pages of 5,000 records planned per plan message; a step's chunks are queued only when it returns, so small steps start chunks sooner"},
	{"DVBULK_TRANSFORM_WORKERS", "0", "concurrent enrichment call groups per chunk; 0 = ENRICHMENT_CONCURRENCY, so one chunk alone can fill the instance (the instance's limit still caps all its chunks together)"},
	{"DVBULK_WRITE_WORKERS", strconv.Itoa(pipeline.DefaultWriteWorkers), "concurrent write requests per chunk"},
	{"DVBULK_LOG_LEVEL", "info", "trace, debug, info, warn or error"},
	{"DVBULK_TELEMETRY_INTERVAL", "5s", "how often each instance writes a telemetry sample of the runs it works on (1s-5m; 0 = none: no live rate, ETA or charts)"},
	{"DVBULK_TELEMETRY_RETENTION", "720h", "the timer deletes the telemetry of runs finished longer ago than this (their report.html and summary stay); 0 = keep"},
	{"DVBULK_SHARED_BUDGET", "true", "true: every instance of the same application user on the same environment shares one service-protection budget (a 429's pause, the dop hint split over the live instances) through the checkpoint store; false: each instance throttles alone"},
	{"DVBULK_BUDGET_REFRESH", "1s", "how often an active instance reads the shared budget (one storage read each)"},
	{"DVBULK_BUDGET_HEARTBEAT", "5s", "how often an active instance renews its membership of the shared budget (one storage write each); a member missing for 3 heartbeats no longer takes a share"},
	{"DVBULK_BUDGET_SKEW", "2s", "margin added to a pause another instance published, so clocks that differ by up to this much cannot send early"},
}

// Load reads and validates the settings. needDataverse lets subcommands that only read checkpoints
// (status) skip what they do not use.
func Load(getenv func(string) string, needDataverse bool) (*Config, error) {
	get := func(name string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		for _, s := range Settings {
			if s.Name == name {
				return s.Default
			}
		}
		return ""
	}
	c := &Config{}
	var err error
	fail := func(name, format string, a ...any) error {
		return &SettingError{Name: name, Problem: fmt.Sprintf(format, a...)}
	}
	if c.LogLevel, err = zerolog.ParseLevel(strings.ToLower(get("DVBULK_LOG_LEVEL"))); err != nil || get("DVBULK_LOG_LEVEL") == "" {
		return nil, fail("DVBULK_LOG_LEVEL", "must be trace, debug, info, warn or error, got %q", getenv("DVBULK_LOG_LEVEL"))
	}
	if c.JobsDir, c.Jobs, err = loadJobs(getenv); err != nil {
		return nil, err
	}
	c.JobRef = get("DVBULK_JOB")
	if strings.HasSuffix(c.JobRef, ".json") {
		c.Job, err = job.Lookup(c.JobRef) // a file for the timer and the CLI; start messages cannot name it
	} else {
		c.Job, err = c.Jobs.Lookup(c.JobRef)
	}
	if err != nil {
		return nil, fail("DVBULK_JOB", "%v", err)
	}
	c.Storage = readStorage(storageSetting, getenv)
	c.StoreKind = strings.ToLower(get("DVBULK_CHECKPOINT_STORE"))
	if c.StoreKind != StoreBlob && c.StoreKind != StoreDir {
		return nil, fail("DVBULK_CHECKPOINT_STORE", "must be blob or dir, got %q", c.StoreKind)
	}
	c.Container = get("DVBULK_CHECKPOINT_CONTAINER")
	if !validContainer(c.Container) {
		return nil, fail("DVBULK_CHECKPOINT_CONTAINER", "must be 3-63 lowercase letters, digits or '-', got %q", c.Container)
	}
	c.CheckpointDir = get("DVBULK_CHECKPOINT_DIR")
	c.ImportContainer = get("DVBULK_IMPORT_CONTAINER")
	if !validContainer(c.ImportContainer) {
		return nil, fail("DVBULK_IMPORT_CONTAINER", "must be 3-63 lowercase letters, digits or '-', got %q", c.ImportContainer)
	}
	c.ImportPrefix = strings.TrimSuffix(get("DVBULK_IMPORT_PREFIX"), "/")
	if c.ImportPrefix != "" {
		if err := job.CheckSource(c.ImportPrefix, ""); err != nil {
			return nil, fail("DVBULK_IMPORT_PREFIX", "must be a blob name prefix such as imports/: %v", err)
		}
		c.ImportPrefix += "/"
	}

	ints := []struct {
		name     string
		dst      *int
		min, max int
	}{
		{"ENRICHMENT_BATCH_SIZE", &c.EnrichBatch, 1, 1000},
		{"ENRICHMENT_CONCURRENCY", &c.EnrichConc, 1, 256},
		{"DVBULK_CHUNK_SIZE", &c.ChunkSize, 0, job.MaxChunkSize},
		{"DVBULK_DATAVERSE_CONCURRENCY", &c.DVConcurrency, 1, 1000},
		{"DVBULK_MAX_RETRIES", &c.MaxRetries, 0, 50},
		{"DVBULK_PLAN_PAGES", &c.PlanPages, 1, 1000},
		{"DVBULK_TRANSFORM_WORKERS", &c.TWorkers, 0, 256},
		{"DVBULK_WRITE_WORKERS", &c.WWorkers, 1, 256},
	}
	for _, s := range ints {
		v, err := strconv.Atoi(get(s.name))
		if err != nil || v < s.min || v > s.max {
			return nil, fail(s.name, "must be a whole number from %d to %d, got %q", s.min, s.max, get(s.name))
		}
		*s.dst = v
	}
	durations := []struct {
		name     string
		dst      *time.Duration
		min, max time.Duration
		zeroOff  bool // 0 switches the feature off
	}{
		{"ENRICHMENT_TIMEOUT", &c.EnrichTimeout, time.Second, 10 * time.Minute, false},
		{"DVBULK_REQUEST_TIMEOUT", &c.RequestTimeout, time.Second, 10 * time.Minute, false},
		{"DVBULK_LEASE", &c.Lease, 2 * time.Second, 10 * time.Minute, false},
		{"DVBULK_STALE_AFTER", &c.StaleAfter, time.Second, 7 * 24 * time.Hour, false},
		{"DVBULK_FLUSH_INTERVAL", &c.Flush, 10 * time.Millisecond, time.Minute, false},
		{"DVBULK_TELEMETRY_INTERVAL", &c.TelemetryInterval, time.Second, 5 * time.Minute, true},
		{"DVBULK_TELEMETRY_RETENTION", &c.TelemetryRetention, time.Hour, 10 * 365 * 24 * time.Hour, true},
		{"DVBULK_REFRESH_AFTER", &c.RefreshAfter, 0, 10 * 365 * 24 * time.Hour, false},
		{"DVBULK_NOMATCH_RETRY_AFTER", &c.NoMatchRetry, 0, 10 * 365 * 24 * time.Hour, false},
		{"DVBULK_BUDGET_REFRESH", &c.BudgetRefresh, 10 * time.Millisecond, time.Minute, false},
		{"DVBULK_BUDGET_HEARTBEAT", &c.BudgetHeartbeat, 10 * time.Millisecond, 5 * time.Minute, false},
		{"DVBULK_BUDGET_SKEW", &c.BudgetSkew, time.Millisecond, time.Minute, false},
	}
	for _, s := range durations {
		v, err := time.ParseDuration(get(s.name))
		switch {
		case s.zeroOff && (get(s.name) == "0" || err == nil && v == 0):
			*s.dst = 0
			continue
		case err != nil || v < s.min || v > s.max:
			off := ""
			if s.zeroOff {
				off = "0 (off) or "
			}
			return nil, fail(s.name, "must be %sa duration from %s to %s such as 30s, got %q", off, s.min, s.max, get(s.name))
		}
		*s.dst = v
	}
	if c.BudgetHeartbeat < c.BudgetRefresh {
		return nil, fail("DVBULK_BUDGET_HEARTBEAT", "must be at least DVBULK_BUDGET_REFRESH (%s), got %s", c.BudgetRefresh, c.BudgetHeartbeat)
	}
	if c.Flush >= c.Lease/2 {
		return nil, fail("DVBULK_FLUSH_INTERVAL", "must be under half of DVBULK_LEASE (%s), got %s", c.Lease, c.Flush)
	}
	if c.EnrichRPS, err = strconv.ParseFloat(get("ENRICHMENT_RPS"), 64); err != nil || c.EnrichRPS < 0 || c.EnrichRPS > 100000 {
		return nil, fail("ENRICHMENT_RPS", "must be a number from 0 (no limit) to 100000, got %q", get("ENRICHMENT_RPS"))
	}
	bools := []struct {
		name string
		dst  *bool
	}{{"DVBULK_DRY_RUN", &c.DryRun}, {"DVBULK_AFFINITY_COOKIE", &c.AffinityCookie}, {"ENRICHMENT_ADAPTIVE", &c.EnrichAdaptive}, {"DVBULK_SHARED_BUDGET", &c.SharedBudget}}
	for _, s := range bools {
		v, err := strconv.ParseBool(get(s.name))
		if err != nil {
			return nil, fail(s.name, "must be true or false, got %q", get(s.name))
		}
		*s.dst = v
	}
	c.EnrichmentKey = getenv("ENRICHMENT_API_KEY")
	c.EnrichmentHeader = get("ENRICHMENT_API_KEY_HEADER")
	if !validHeader(c.EnrichmentHeader) {
		return nil, fail("ENRICHMENT_API_KEY_HEADER", "must be an HTTP header name, got %q", c.EnrichmentHeader)
	}
	if !needDataverse {
		return c, nil
	}
	c.Identity = dataverse.Identity{TenantID: strings.TrimSpace(getenv("AZURE_TENANT_ID")),
		ClientID: strings.TrimSpace(getenv("AZURE_CLIENT_ID")), ClientSecret: getenv("AZURE_CLIENT_SECRET")}
	if c.DataverseURL, err = checkURL(get("DATAVERSE_URL"), true); err != nil {
		return nil, fail("DATAVERSE_URL", "%v", err)
	}
	c.DataverseAuth = strings.ToLower(get("DATAVERSE_AUTH"))
	switch c.DataverseAuth {
	case "default", "managedidentity", "clientsecret":
	case "none":
		if !isLoopbackURL(c.DataverseURL) {
			return nil, fail("DATAVERSE_AUTH", "none is only allowed for a loopback DATAVERSE_URL, not %s", c.DataverseURL)
		}
	default:
		return nil, fail("DATAVERSE_AUTH", "must be default, managedidentity, clientsecret or none, got %q", c.DataverseAuth)
	}
	if c.Job.Transform.Kind == job.KindEnrich {
		if c.EnrichmentURL, err = checkURL(get("ENRICHMENT_URL"), false); err != nil {
			return nil, fail("ENRICHMENT_URL", "%v (job %s enriches)", err, c.Job.Name)
		}
	}
	return c, nil
}

// DefaultJobsDir is DVBULK_JOBS_DIR's default: the jobs folder of the deployed package (make package
// ships handler/jobs/*.json there).
const DefaultJobsDir = "jobs"

// loadJobs reads the jobs directory (DVBULK_JOBS_DIR, relative to FUNCTIONS_APP_ROOT_PATH or else the
// working directory) into a catalog. The default directory may be missing (no custom jobs); one the
// operator set must exist. A bad spec stops the start with its file and field named.
func loadJobs(getenv func(string) string) (string, *job.Catalog, error) {
	set := strings.TrimSpace(getenv("DVBULK_JOBS_DIR"))
	dir := set
	if dir == "" {
		dir = DefaultJobsDir
	}
	if !filepath.IsAbs(dir) {
		root := strings.TrimSpace(getenv("FUNCTIONS_APP_ROOT_PATH"))
		if root == "" {
			wd, err := os.Getwd()
			if err != nil {
				return "", nil, &SettingError{Name: "DVBULK_JOBS_DIR", Problem: fmt.Sprintf("resolve %q: %v", dir, err)}
			}
			root = wd
		}
		dir = filepath.Join(root, dir)
	}
	cat, err := job.LoadCatalog(dir, set != "")
	if err != nil {
		return "", nil, &SettingError{Name: "DVBULK_JOBS_DIR", Problem: err.Error()}
	}
	return dir, cat, nil
}

// duration writes a default the way people write it in a setting: 60s, 2m, 30m, 24h.
func duration(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	case d >= 2*time.Minute && d%time.Minute == 0:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d >= time.Second && d%time.Second == 0:
		return strconv.Itoa(int(d/time.Second)) + "s"
	}
	return d.String()
}

// checkURL requires an absolute http(s) URL, https unless the host is loopback.
func checkURL(raw string, root bool) (string, error) {
	if raw == "" {
		return "", fmt.Errorf("is required")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil {
		return "", fmt.Errorf("must be an absolute http(s) URL, got %q", raw)
	}
	if u.Scheme == "http" && !isLoopbackURL(raw) {
		return "", fmt.Errorf("must use https (http is only allowed for loopback addresses), got %q", raw)
	}
	if root {
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
			return "", fmt.Errorf("must be the environment root such as https://contoso.crm.dynamics.com, got %q", raw)
		}
		return u.Scheme + "://" + u.Host, nil
	}
	return raw, nil
}

// isLoopbackURL reports whether raw's host is loopback (see netutil.IsLoopback).
func isLoopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && netutil.IsLoopback(u.Hostname())
}

func validContainer(s string) bool {
	if len(s) < 3 || len(s) > 63 || strings.HasPrefix(s, "-") || strings.HasSuffix(s, "-") || strings.Contains(s, "--") {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func validHeader(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}
