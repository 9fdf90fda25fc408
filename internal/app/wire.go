package app

import (
	"fmt"
	"io"
	"os"

	"github.com/rs/zerolog"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/dataverse"
	"dvbulk/internal/enrich"
	"dvbulk/internal/importsrc"
	"dvbulk/internal/job"
	"dvbulk/internal/ledger"
)

// NewLogger writes zerolog JSON. The custom handler logs to stdout, which the Functions host
// forwards; CLI subcommands log to stderr so stdout keeps the report.
func NewLogger(w io.Writer, level zerolog.Level) zerolog.Logger {
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// NewEngine builds the Dataverse client, the enrichment client (when the configuration has an
// enrichment URL) and the job engine over st from a validated configuration. The engine's instance
// name is host-pid; callers that run several engines in one process (the bench) rename them.
// Configuration problems are *SettingError.
func NewEngine(cfg *Config, st checkpoint.Store, log zerolog.Logger, opts ...EngineOption) (*job.Engine, *dataverse.Client, error) {
	instance := InstanceName()
	log = log.With().Str("instance", instance).Logger() // on every line of this engine and its clients
	cred, err := dataverse.CredentialFor(cfg.DataverseAuth, cfg.DataverseURL, cfg.Identity)
	if err != nil {
		return nil, nil, &SettingError{Name: "DATAVERSE_AUTH", Problem: err.Error()}
	}
	dvc := dataverse.Config{URL: cfg.DataverseURL, Credential: cred, MaxConcurrency: cfg.DVConcurrency,
		AffinityCookie: cfg.AffinityCookie, RequestTimeout: cfg.RequestTimeout, MaxRetries: retries(cfg.MaxRetries), Logger: log}
	for _, o := range opts {
		o(&dvc)
	}
	dv, err := dataverse.New(dvc)
	if err != nil {
		return nil, nil, &SettingError{Name: "DATAVERSE_URL", Problem: err.Error()}
	}
	var en job.Enricher
	var enc *enrich.Client
	if cfg.EnrichmentURL != "" {
		c, err := enrich.New(enrich.Config{URL: cfg.EnrichmentURL, APIKey: cfg.EnrichmentKey, APIKeyHeader: cfg.EnrichmentHeader,
			BatchSize: cfg.EnrichBatch, Concurrency: cfg.EnrichConc, FixedConcurrency: !cfg.EnrichAdaptive, RPS: cfg.EnrichRPS,
			Timeout: cfg.EnrichTimeout, Logger: log})
		if err != nil {
			return nil, nil, &SettingError{Name: "ENRICHMENT_URL", Problem: err.Error()}
		}
		en, enc = c, c
	}
	e := &job.Engine{
		Store: st, DV: dv, Enricher: en, Log: log, Jobs: cfg.Jobs, Imports: importSource(cfg, log),
		Instance: instance,
		Opt: job.Options{Lease: cfg.Lease, FlushInterval: cfg.Flush, StaleAfter: cfg.StaleAfter, PlanPages: cfg.PlanPages,
			// TransformBatch is left to the enrichment client's records per request now (learned).
			ChunkSize: cfg.ChunkSize, DryRun: cfg.DryRun, TransformWorkers: cfg.TWorkers, WriteWorkers: cfg.WWorkers, ImportPrefix: cfg.ImportPrefix,
			Rules: ledger.Rules{RefreshAfter: cfg.RefreshAfter, NoMatchRetryAfter: cfg.NoMatchRetry}},
	}
	e.Init()
	attachTelemetry(cfg, st, e, dv, enc, log)
	return e, dv, nil
}

// importSource is the import container in the storage account of AzureWebJobsStorage, or nil
// when no storage is configured (import jobs are then refused with a reason naming the setting).
func importSource(cfg *Config, log zerolog.Logger) job.ImportSource {
	bc, err := cfg.Storage.blobConfig()
	if err != nil {
		return nil
	}
	bc.Container = cfg.ImportContainer
	src, err := importsrc.NewBlob(bc)
	if err != nil {
		log.Warn().Err(err).Msg("import source unavailable; import jobs will be refused")
		return nil
	}
	return src
}

// InstanceName names this process among the app's instances: host-pid.
func InstanceName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// retries maps the setting (0 = no retries) to the client's convention (negative = none).
func retries(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
