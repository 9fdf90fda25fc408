package app

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/dataverse"
	"dvbulk/internal/enrich"
	"dvbulk/internal/job"
	"dvbulk/internal/report"
	"dvbulk/internal/telemetry"
)

// attachTelemetry gives the engine a telemetry recorder (unless DVBULK_TELEMETRY_INTERVAL is 0) and
// makes the worker that completes a run write its report next to the summary.
func attachTelemetry(cfg *Config, st checkpoint.Store, e *job.Engine, dv *dataverse.Client, en *enrich.Client, log zerolog.Logger) {
	var rec *telemetry.Recorder
	if cfg.TelemetryInterval > 0 {
		rec = &telemetry.Recorder{Store: st, Instance: e.Instance, Interval: cfg.TelemetryInterval, Log: log,
			Settings: cfg.ReportSettings(), Gauges: gauges(dv, en)}
		e.Observer = rec
	}
	e.OnComplete = func(ctx context.Context, run string) error {
		if rec != nil {
			_ = rec.Flush(ctx, run) // the report's charts end with this instance's last moment
		}
		if err := report.Save(ctx, st, run, time.Now()); err != nil {
			return err
		}
		log.Info().Str("run", run).Str("report", report.Name(run)).Msg("run report written")
		return nil
	}
}

// RunTelemetry runs the engine's telemetry recorder (if it has one) until the returned stop is
// called; stop writes the last samples and returns when they are written.
func RunTelemetry(ctx context.Context, e *job.Engine) (stop func()) {
	rec, ok := e.Observer.(*telemetry.Recorder)
	if !ok {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		rec.Run(ctx)
	}()
	return func() { cancel(); <-done }
}

// gauges reads the clients' counters for a telemetry sample.
func gauges(dv *dataverse.Client, en *enrich.Client) func() telemetry.Gauges {
	return func() telemetry.Gauges {
		var g telemetry.Gauges
		if dv != nil {
			s := dv.Stats()
			g.DVRequests, g.DVThrottled, g.DVInFlight, g.DVLimit, g.DVHint = s.Requests, s.ThrottledByCode, s.CurrentInFlight, s.Limit, s.DOP
		}
		if en != nil {
			s := en.Stats()
			g.EnRequests, g.EnThrottled, g.EnInFlight, g.EnLimit = s.Requests, s.Throttled, int(s.InFlight), s.Limit // adapted, like DVLimit
		}
		return g
	}
}

// ReportSettings are the settings a run report shows: the effective value of every tuning setting,
// never a secret, a connection string or a URL that may carry a key.
func (c *Config) ReportSettings() map[string]string {
	d := func(v time.Duration) string { return v.String() }
	return map[string]string{
		"DATAVERSE_URL":                c.DataverseURL,
		"DATAVERSE_AUTH":               c.DataverseAuth,
		"DVBULK_DATAVERSE_CONCURRENCY": strconv.Itoa(c.DVConcurrency),
		"DVBULK_AFFINITY_COOKIE":       strconv.FormatBool(c.AffinityCookie),
		"DVBULK_REQUEST_TIMEOUT":       d(c.RequestTimeout),
		"DVBULK_MAX_RETRIES":           strconv.Itoa(c.MaxRetries),
		"ENRICHMENT_BATCH_SIZE":        strconv.Itoa(c.EnrichBatch),
		"ENRICHMENT_CONCURRENCY":       strconv.Itoa(c.EnrichConc),
		"ENRICHMENT_ADAPTIVE":          strconv.FormatBool(c.EnrichAdaptive),
		"ENRICHMENT_RPS":               fmt.Sprint(c.EnrichRPS),
		"ENRICHMENT_TIMEOUT":           d(c.EnrichTimeout),
		"DVBULK_CHECKPOINT_STORE":      c.StoreKind,
		"DVBULK_CHECKPOINT_CONTAINER":  c.Container,
		"DVBULK_JOB":                   c.JobRef,
		"DVBULK_CHUNK_SIZE":            strconv.Itoa(c.ChunkSize),
		"DVBULK_DRY_RUN":               strconv.FormatBool(c.DryRun),
		"DVBULK_LEASE":                 d(c.Lease),
		"DVBULK_STALE_AFTER":           d(c.StaleAfter),
		"DVBULK_FLUSH_INTERVAL":        d(c.Flush),
		"DVBULK_PLAN_PAGES":            strconv.Itoa(c.PlanPages),
		"DVBULK_TRANSFORM_WORKERS":     strconv.Itoa(c.TWorkers),
		"DVBULK_WRITE_WORKERS":         strconv.Itoa(c.WWorkers),
		"DVBULK_TELEMETRY_INTERVAL":    d(c.TelemetryInterval),
		"DVBULK_TELEMETRY_RETENTION":   d(c.TelemetryRetention),
	}
}
