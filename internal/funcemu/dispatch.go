package funcemu

import (
	"context"
	"errors"
	"time"
)

// Run polls every queue-trigger function's queue and delivers visible messages to live instances,
// each running at most batchSize+newBatchThreshold invocations at once, until ctx ends.
func (h *Host) Run(ctx context.Context) error {
	t := time.NewTicker(h.opts.Poll)
	defer t.Stop()
	for {
		h.dispatch(ctx)
		select {
		case <-ctx.Done():
			h.pending.Wait()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (h *Host) dispatch(ctx context.Context) {
	limit := h.cfg.batchSize + h.cfg.newBatchThreshold
	for _, fn := range h.fns {
		if fn.trigger.Type != "queueTrigger" {
			continue
		}
		q := fn.trigger.QueueName
		for {
			h.mu.Lock()
			var inst *instance
			for _, in := range h.instances {
				if in.alive && in.running < limit && (inst == nil || in.running < inst.running) {
					inst = in
				}
			}
			m := h.nextVisible(q)
			if inst == nil || m == nil {
				h.mu.Unlock()
				break
			}
			now := time.Now()
			m.dequeue++
			m.visibleAt = now.Add(h.opts.Lease)
			m.pop = newGUID()
			body, ok := h.decode(m)
			if !ok || m.dequeue > h.cfg.maxDequeue {
				// Undecodable under base64 encoding, or dequeued too often: straight to poison, unrun.
				h.poison(q, m)
				h.mu.Unlock()
				continue
			}
			m.owner = inst
			inst.running++
			h.pending.Add(1)
			h.mu.Unlock()
			go h.deliver(ctx, fn, inst, m, body)
		}
	}
}

func (h *Host) nextVisible(q string) *message {
	now := time.Now()
	for _, m := range h.queues[q] {
		if !m.visibleAt.After(now) {
			return m
		}
	}
	return nil
}

func (h *Host) remove(q string, m *message) {
	msgs := h.queues[q]
	for i, x := range msgs {
		if x == m {
			h.queues[q] = append(msgs[:i:i], msgs[i+1:]...)
			return
		}
	}
}

// poison moves a message to <queue>-poison (there is none for a queue that is itself a poison queue:
// the message is then left invisible).
func (h *Host) poison(q string, m *message) {
	if len(q) > 7 && q[len(q)-7:] == "-poison" {
		m.visibleAt = time.Now().Add(24 * time.Hour)
		return
	}
	h.remove(q, m)
	now := time.Now()
	h.queues[q+"-poison"] = append(h.queues[q+"-poison"], &message{id: m.id, stored: m.stored, inserted: now, visibleAt: now})
}

func (h *Host) deliver(ctx context.Context, fn function, inst *instance, m *message, body string) {
	defer h.pending.Done()
	inv := &Invocation{ID: newGUID(), Function: fn.name, Instance: inst.idx, MessageID: m.id, DequeueCount: m.dequeue, Body: body, Start: time.Now()}
	h.track(inst, inv, true)
	payload := queuePayload(fn, m, body)

	// Renew the lease at half its length while the invocation runs on a live instance.
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(h.opts.Lease / 2)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				h.mu.Lock()
				if inst.alive && m.owner == inst {
					m.visibleAt = time.Now().Add(h.opts.Lease)
				}
				h.mu.Unlock()
			}
		}
	}()
	res, err := h.post(context.WithoutCancel(ctx), inst, fn.name, payload, inv)
	close(stop)
	if err != nil {
		inv.Err = err.Error()
	}
	h.mu.Lock()
	inst.running--
	crashed := !inst.alive
	h.mu.Unlock()
	switch {
	case crashed && err != nil:
		// The process died: nothing deletes or releases the message; its lease lapses.
		h.mu.Lock()
		if m.owner == inst {
			m.owner = nil
		}
		h.mu.Unlock()
	case err == nil:
		h.applyOutputs(fn, res, inv)
		h.mu.Lock()
		if m.owner == inst {
			h.remove(fn.trigger.QueueName, m)
		}
		h.mu.Unlock()
	default:
		h.mu.Lock()
		if m.owner == inst {
			m.owner = nil
			if m.dequeue >= h.cfg.maxDequeue {
				h.poison(fn.trigger.QueueName, m)
			} else {
				m.visibleAt = time.Now().Add(h.cfg.visibility)
			}
		}
		h.mu.Unlock()
	}
	h.track(inst, inv, false)
}

// Drain waits until every trigger queue is empty and nothing is in flight for idle.
func (h *Host) Drain(ctx context.Context, idle time.Duration) error {
	quietSince := time.Time{}
	for {
		h.mu.Lock()
		busy := false
		for _, fn := range h.fns {
			if fn.trigger.Type == "queueTrigger" && len(h.queues[fn.trigger.QueueName]) > 0 {
				busy = true
			}
		}
		for _, in := range h.instances {
			if len(in.inflight) > 0 {
				busy = true
			}
		}
		h.mu.Unlock()
		switch {
		case busy:
			quietSince = time.Time{}
		case quietSince.IsZero():
			quietSince = time.Now()
		case time.Since(quietSince) >= idle:
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(errors.New("funcemu: queues did not drain"), ctx.Err())
		case <-time.After(h.opts.Poll):
		}
	}
}
