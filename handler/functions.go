package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/job"
	"dvbulk/internal/report"
)

// Binding names, exactly as in EnrichTimer/function.json and ChunkQueue/function.json.
const (
	bindChunks     = "chunks"
	bindDeadLetter = "deadletter"
)

// functionApp implements the two functions on top of one job engine per process, so every invocation on an
// instance shares one Dataverse client and one throttle state.
type functionApp struct {
	engine    *job.Engine
	spec      *job.Spec
	log       zerolog.Logger
	retention time.Duration // DVBULK_TELEMETRY_RETENTION
}

// EnrichTimer starts the scheduled run (or does nothing while one is active) and plans its first
// pages; chunk messages and a continuation go out through the queue output binding.
func (a *functionApp) EnrichTimer(ctx context.Context, inv *Invocation, t TimerInfo) (Result, error) {
	at := time.Now().UTC()
	if t.ScheduleStatus != nil && !t.ScheduleStatus.Next.IsZero() && !t.IsPastDue {
		// The occurrence being fired: two firings of it name the same run.
		at = t.ScheduleStatus.Next
	}
	res, err := a.engine.Start(ctx, a.spec, job.StartOptions{At: at.Truncate(time.Minute), Trigger: "timer"})
	if err == nil {
		a.prune(ctx, inv)
	}
	return a.result(ctx, inv, res, err)
}

// prune applies DVBULK_TELEMETRY_RETENTION once per timer tick. A failure is logged, never the tick's:
// the next tick tries again.
func (a *functionApp) prune(ctx context.Context, inv *Invocation) {
	n, err := report.Prune(ctx, a.engine.Store, a.retention, time.Now())
	if err != nil {
		inv.Log.Warn().Err(err).Msg("telemetry retention: pruning old runs failed; the next tick tries again")
	} else if n > 0 {
		inv.Log.Info().Int("documents", n).Dur("retention", a.retention).Msg("telemetry retention: old runs' samples deleted")
	}
}

// ChunkQueue handles start, plan and chunk messages.
func (a *functionApp) ChunkQueue(ctx context.Context, inv *Invocation, m QueueMessage) (Result, error) {
	res, err := a.engine.Handle(ctx, m.Body, job.Delivery{DequeueCount: m.DequeueCount, MessageID: m.ID})
	return a.result(ctx, inv, res, err)
}

// result maps the engine's answer to the host's: outputs by binding name, short logs, and an error
// (non-2xx, so the host redelivers) only for transient failures.
func (a *functionApp) result(ctx context.Context, inv *Invocation, res job.Result, err error) (Result, error) {
	out := Result{Outputs: map[string][]string{}, Logs: res.Logs}
	if len(res.Enqueue) > 0 {
		out.Outputs[bindChunks] = res.Enqueue
	}
	if len(res.DeadLetter) > 0 {
		out.Outputs[bindDeadLetter] = res.DeadLetter
	}
	if err != nil {
		if stopped(ctx, err) {
			// A shutdown (SIGTERM) or the invocation deadline: not a failure of the work, which is
			// checkpointed and continues on redelivery.
			if !errors.Is(err, job.ErrTransient) {
				err = fmt.Errorf("%w: stopped before finishing: %w; checkpoints are saved", job.ErrTransient, err)
			}
			inv.Log.Info().Err(err).Msg("invocation stopped before finishing; the host will redeliver")
			return out, err
		}
		inv.Log.Warn().Err(err).Msg("invocation failed; the host will redeliver")
		return out, err
	}
	return out, nil
}

// stopped reports whether err says the invocation itself was stopped (shutdown or its deadline). A
// Dataverse attempt that timed out also wraps context.DeadlineExceeded, but while the invocation's
// context is alive that is a transient failure, not a stop.
func stopped(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}
