package dataverse

import (
	"context"
	"time"
)

// Budget is the service-protection state this client shares with every other instance that uses
// the same application user on the same environment (internal/budget keeps it in the checkpoint
// store). Dataverse's limits and x-ms-dop-hint apply to the user as a whole, so a pause one instance
// was told about binds them all, and the hint is split among the live instances.
//
// The client calls View before every attempt, so it must answer from memory in steady state;
// Throttled must not block.
type Budget interface {
	// View returns the cluster's pause (no request may start before it) and the number of live
	// instances sharing the budget (at least 1). With a non-zero fresh it first waits (bounded) for
	// a read of the shared state that started after fresh: the client asks for that while the
	// budget binds, so that a request it starts after another one finished has seen any pause
	// published meanwhile. Reads stay at their own pace; only the request waits for the next one.
	View(ctx context.Context, fresh time.Time) (pausedUntil time.Time, instances int)
	// Throttled publishes that the server asked this user to wait until until.
	Throttled(until time.Time)
}

// shareOf is one instance's part of the cluster's ceiling: ceiling/instances, possibly below one
// (then the instance sends one request at a time with pauses between, see throttle.pace).
func shareOf(ceiling, instances int) float64 {
	return float64(ceiling) / float64(max(1, instances))
}
