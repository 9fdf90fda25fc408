package job

import (
	"context"
	"encoding/json"
	"sync"
	"time"
)

// LocalQueue runs queue messages in-process with the host's semantics that matter here: several
// messages at once, a failed message retried (after a pause) until maxDequeue deliveries, then
// dead-lettered. The console's run command drives the engine with it.
type LocalQueue struct {
	Engine *Engine
	// Engines, when set, stand for several instances sharing the queue (each with its own clients
	// and throttle state): worker i delivers to Engines[i%len(Engines)].
	Engines []*Engine
	Workers int           // messages processed at once (default 8)
	Retry   time.Duration // pause before a failed message is delivered again (default 2s)
	// Invocation bounds one message's processing, like the host's functionTimeout (default 10m).
	Invocation time.Duration
	// DeadLetters receives dead-lettered bodies and poisoned messages.
	DeadLetters func(body string)
}

type localMsg struct {
	body    string
	kind    MessageKind // decoded once when enqueued; "" when the body does not decode
	dequeue int
}

// newLocalMsg reads the kind of a queued body. Only the kind is decoded: a body that fails the full
// decoding is still delivered, and the engine dead-letters it with the reason.
func newLocalMsg(body string) localMsg {
	var k struct {
		Kind MessageKind `json:"kind"`
	}
	_ = json.Unmarshal([]byte(body), &k)
	return localMsg{body: body, kind: k.Kind}
}

// Run processes the messages of first and everything they enqueue, until none are left.
func (q *LocalQueue) Run(ctx context.Context, first Result) error {
	workers := q.Workers
	if workers <= 0 {
		workers = 8
	}
	retry := q.Retry
	if retry <= 0 {
		retry = 2 * time.Second
	}
	invocation := q.Invocation
	if invocation <= 0 {
		invocation = 10 * time.Minute
	}
	var (
		mu      sync.Mutex
		cond    = sync.NewCond(&mu)
		pending []localMsg
		busy    int
		waiting int // messages sleeping before a retry
	)
	dead := func(body string) {
		if q.DeadLetters != nil {
			q.DeadLetters(body)
		}
	}
	for _, d := range first.DeadLetter {
		dead(d)
	}
	for _, b := range first.Enqueue {
		pending = append(pending, newLocalMsg(b))
	}
	stop := context.AfterFunc(ctx, func() { mu.Lock(); cond.Broadcast(); mu.Unlock() })
	defer stop()
	var wg sync.WaitGroup
	engines := q.Engines
	if len(engines) == 0 {
		engines = []*Engine{q.Engine}
	}
	maxDequeue := engines[0].Opt.MaxDequeue
	for w := range workers {
		eng := engines[w%len(engines)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				for len(pending) == 0 && (busy > 0 || waiting > 0) && ctx.Err() == nil {
					cond.Wait()
				}
				if len(pending) == 0 || ctx.Err() != nil {
					cond.Broadcast()
					mu.Unlock()
					return
				}
				i := pick(pending, 2*workers)
				m := pending[i]
				pending = append(pending[:i:i], pending[i+1:]...)
				busy++
				mu.Unlock()

				m.dequeue++
				ictx, cancel := context.WithTimeout(ctx, invocation)
				res, err := eng.Handle(ictx, []byte(m.body), Delivery{DequeueCount: m.dequeue})
				cancel()
				for _, d := range res.DeadLetter {
					dead(d)
				}
				var next []localMsg
				if err == nil {
					for _, b := range res.Enqueue {
						next = append(next, newLocalMsg(b))
					}
				}
				mu.Lock()
				busy--
				pending = append(pending, next...)
				if err != nil && ctx.Err() == nil {
					if m.dequeue >= maxDequeue {
						mu.Unlock()
						dead(m.body)
						mu.Lock()
					} else {
						waiting++
						time.AfterFunc(retry, func() {
							mu.Lock()
							waiting--
							pending = append(pending, m)
							cond.Broadcast()
							mu.Unlock()
						})
					}
				}
				cond.Broadcast()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// pick chooses the next message: the oldest one, except that a planning continuation waits while
// enough chunk messages are queued. Planning is faster than processing; without this backpressure a
// large run would be planned entirely into memory before most of it is processed.
func pick(pending []localMsg, backlog int) int {
	chunks, firstChunk, firstPlan := 0, -1, -1
	for i, m := range pending {
		if m.kind == KindPlan {
			if firstPlan < 0 {
				firstPlan = i
			}
			continue
		}
		chunks++
		if firstChunk < 0 {
			firstChunk = i
		}
	}
	if firstChunk < 0 || (firstPlan >= 0 && chunks < backlog) {
		return firstPlan
	}
	return firstChunk
}
