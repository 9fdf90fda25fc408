package main

import (
	"context"
	"strings"
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
func attachTelemetry(cfg *config, st checkpoint.Store, e *job.Engine, dv *dataverse.Client, en *enrich.Client, getenv func(string) string, log zerolog.Logger) {
	var rec *telemetry.Recorder
	if cfg.TelemetryInterval > 0 {
		rec = &telemetry.Recorder{Store: st, Instance: e.Instance, Interval: cfg.TelemetryInterval, Log: log,
			Settings: reportSettings(getenv), Gauges: gauges(dv, en)}
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

// runTelemetry runs the engine's recorder until the returned stop is called; stop writes the last
// samples and returns when they are written.
func runTelemetry(ctx context.Context, e *job.Engine) (stop func()) {
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
			g.EnRequests, g.EnThrottled, g.EnInFlight, g.EnLimit = s.Requests, s.Throttled, int(s.InFlight), s.Concurrency
		}
		return g
	}
}

// reportSettings are the settings a run report shows: every tuning setting with its effective value,
// never a secret or a connection string.
func reportSettings(getenv func(string) string) map[string]string {
	out := map[string]string{}
	for _, s := range settings {
		switch {
		case s.Name == "ENRICHMENT_API_KEY" || s.Name == "AzureWebJobsStorage" || s.Name == "ENRICHMENT_URL":
			continue // secrets, or a URL that may carry one
		case strings.HasPrefix(s.Name, "DVBULK_") || strings.HasPrefix(s.Name, "ENRICHMENT_") || strings.HasPrefix(s.Name, "DATAVERSE_"):
		default:
			continue
		}
		v := strings.TrimSpace(getenv(s.Name))
		if v == "" {
			v = s.Default
		}
		out[s.Name] = v
	}
	return out
}
