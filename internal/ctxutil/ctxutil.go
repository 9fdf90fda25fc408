// Package ctxutil holds small helpers around context.Context shared by the clients and the engine.
package ctxutil

import (
	"context"
	"time"
)

// Sleep waits d, or returns ctx's error if ctx ends first (at once for d <= 0 on an ended ctx).
func Sleep(ctx context.Context, d time.Duration) error {
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
	}
}
