package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/dataverse"
	"dvbulk/internal/enrich"
	"dvbulk/internal/job"
)

// newLogger writes zerolog JSON. The custom handler logs to stdout, which the Functions host
// forwards; CLI subcommands log to stderr so stdout keeps the report.
func newLogger(w io.Writer, level zerolog.Level) zerolog.Logger {
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// openStore opens the checkpoint store: "blob" (AzureWebJobsStorage, shared by every instance) or
// "dir" (a local directory, for the console and the demo).
func openStore(ctx context.Context, cfg *config, kind string, getenv func(string) string) (checkpoint.Store, error) {
	switch kind {
	case "dir":
		st, err := checkpoint.NewDir(cfg.CheckpointDir)
		if err != nil {
			return nil, &settingError{name: "DVBULK_CHECKPOINT_DIR", problem: err.Error()}
		}
		return st, nil
	case "blob":
		bc, err := checkpoint.FromEnv("AzureWebJobsStorage", getenv)
		if err != nil {
			return nil, &settingError{name: "AzureWebJobsStorage", problem: err.Error()}
		}
		bc.Container = cfg.Container
		st, err := checkpoint.NewBlob(ctx, bc)
		if err != nil {
			return nil, fmt.Errorf("checkpoint store: %w", err)
		}
		return st, nil
	}
	return nil, &settingError{name: "DVBULK_CHECKPOINT_STORE", problem: fmt.Sprintf("must be blob or dir, got %q", kind)}
}

// newEngine wires the Dataverse client, the enrichment adapter and the store into a job engine.
func newEngine(cfg *config, st checkpoint.Store, getenv func(string) string, log zerolog.Logger) (*job.Engine, *dataverse.Client, error) {
	host, _ := os.Hostname()
	instance := fmt.Sprintf("%s-%d", host, os.Getpid())
	log = log.With().Str("instance", instance).Logger() // on every line of this process's engine and clients
	cred, err := dataverse.CredentialFor(cfg.DataverseAuth, cfg.DataverseURL, getenv)
	if err != nil {
		return nil, nil, &settingError{name: "DATAVERSE_AUTH", problem: err.Error()}
	}
	dv, err := dataverse.New(dataverse.Config{URL: cfg.DataverseURL, Credential: cred, MaxConcurrency: cfg.DVConcurrency,
		AffinityCookie: cfg.AffinityCookie, RequestTimeout: cfg.RequestTimeout, MaxRetries: retries(cfg.MaxRetries), Logger: log})
	if err != nil {
		return nil, nil, &settingError{name: "DATAVERSE_URL", problem: err.Error()}
	}
	var en job.Enricher
	var enc *enrich.Client
	if cfg.EnrichmentURL != "" {
		c, err := enrich.New(enrich.Config{URL: cfg.EnrichmentURL, APIKey: cfg.EnrichmentKey, APIKeyHeader: cfg.EnrichmentHeader,
			BatchSize: cfg.EnrichBatch, Concurrency: cfg.EnrichConc, RPS: cfg.EnrichRPS, Timeout: cfg.EnrichTimeout, Logger: log})
		if err != nil {
			return nil, nil, &settingError{name: "ENRICHMENT_URL", problem: err.Error()}
		}
		en, enc = c, c
	}
	e := &job.Engine{
		Store: st, DV: dv, Enricher: en, Log: log,
		Instance: instance,
		Opt: job.Options{Lease: cfg.Lease, FlushInterval: cfg.Flush, StaleAfter: cfg.StaleAfter, PlanPages: cfg.PlanPages,
			ChunkSize: cfg.ChunkSize, DryRun: cfg.DryRun, TransformBatch: cfg.EnrichBatch,
			TransformWorkers: cfg.TWorkers, WriteWorkers: cfg.WWorkers},
	}
	e.Init()
	attachTelemetry(cfg, st, e, dv, enc, getenv, log)
	return e, dv, nil
}

// since formats a duration for people.
func since(t time.Time) string { return time.Since(t).Round(100 * time.Millisecond).String() }

type store = checkpoint.Store

// retries maps the setting (0 = no retries) to the client's convention (negative = none).
func retries(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
