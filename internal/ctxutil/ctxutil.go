// Package ctxutil holds small helpers around context.Context shared by the clients and the engine.
package ctxutil

import (
	"context"
	"errors"
	"time"
)

// Sleep waits d, or returns ctx's error if ctx ends first (at once for d <= 0 on an ended ctx).
func Sleep(ctx context.Context, d time.Duration) error { return sleep(ctx, d, nil) }

// ErrStopped reports that a call was not started because ctx's stop (WithStop) had closed; SleepOrStop
// returns it when the stop closes first.
var ErrStopped = errors.New("stopped before sending")

// SleepOrStop is Sleep that also ends, with ErrStopped, when ctx's stop (WithStop) closes: for
// waits before a call that a stop means not to start at all.
func SleepOrStop(ctx context.Context, d time.Duration) error { return sleep(ctx, d, StopChan(ctx)) }

func sleep(ctx context.Context, d time.Duration, stop <-chan struct{}) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
		return ErrStopped
	}
}

type stopKey struct{}

// WithStop returns a context that carries stop: once stop is closed, work under the context starts
// no new calls (a worker's yield point), while the calls already sent finish, bounded by ctx itself.
// Unlike cancelling, it wastes no answer a service has already been asked for.
func WithStop(ctx context.Context, stop <-chan struct{}) context.Context {
	return context.WithValue(ctx, stopKey{}, stop)
}

// StopChan returns ctx's stop channel, or nil (never ready) if it has none.
func StopChan(ctx context.Context) <-chan struct{} {
	c, _ := ctx.Value(stopKey{}).(<-chan struct{})
	return c
}

// Stopped reports whether ctx's stop channel is closed.
func Stopped(ctx context.Context) bool {
	select {
	case <-StopChan(ctx):
		return true
	default:
		return false
	}
}
