// Package job defines bulk jobs (what to read, how to transform, what may be written), the queue
// messages that carry their work, the checkpoint documents that make that work resumable, and the
// planner and chunk runner that the Functions app and the console share.
//
// Where things are:
//
//   - spec.go, builtin.go: job definitions and the built-in jobs.
//   - message.go: the chunk-queue messages (start, plan, chunk) and their decoding.
//   - state.go: the checkpoint documents (manifest, chunk, progress) and their ETag-guarded helpers.
//   - engine.go: the Engine, its Options and Handle, which dispatches a queue message.
//   - planner.go: starting a run and planning it into chunk messages, page by page.
//   - chunk.go: a chunk message's delivery: the claim, or waiting for the live owner.
//   - lease.go: the chunk lease protocol (claim, takeover, renewal, guard, release, lost).
//   - chunkrun.go: running a claimed chunk through the pipeline and ending the delivery.
//   - records.go, transform.go, recalc.go: records of a chunk and the transforms.
//   - complete.go: a finished chunk's progress, and the run's completion and summary.
//   - takeover.go: resuming a stale or interrupted run.
//   - local.go: the in-process queue the console and the bench run the engine with.
//   - status.go: reading a run's status for the CLI.
package job
