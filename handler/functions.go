package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/job"
)

// Binding names, exactly as in EnrichTimer/function.json and ChunkQueue/function.json.
const (
	bindChunks     = "chunks"
	bindDeadLetter = "deadletter"
)

// functionApp implements the two functions on top of one job engine per process, so every invocation on an
// instance shares one Dataverse client and one throttle state.
type functionApp struct {
	engine *job.Engine
	spec   *job.Spec
	log    zerolog.Logger
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
	return a.result(inv, res, err)
}

// ChunkQueue handles start, plan and chunk messages.
func (a *functionApp) ChunkQueue(ctx context.Context, inv *Invocation, m QueueMessage) (Result, error) {
	res, err := a.engine.Handle(ctx, m.Body, job.Delivery{DequeueCount: m.DequeueCount, MessageID: m.ID})
	return a.result(inv, res, err)
}

// result maps the engine's answer to the host's: outputs by binding name, short logs, and an error
// (non-2xx, so the host redelivers) only for transient failures.
func (a *functionApp) result(inv *Invocation, res job.Result, err error) (Result, error) {
	out := Result{Outputs: map[string][]string{}, Logs: res.Logs}
	if len(res.Enqueue) > 0 {
		out.Outputs[bindChunks] = res.Enqueue
	}
	if len(res.DeadLetter) > 0 {
		out.Outputs[bindDeadLetter] = res.DeadLetter
	}
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: stopped before finishing (%v); checkpoints are saved", job.ErrTransient, err)
		}
		inv.Log.Warn().Err(err).Msg("invocation failed; the host will redeliver")
		return out, err
	}
	return out, nil
}
