package funcemu

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Run polls every queue-trigger function's queue and delivers visible messages to live instances,
// each instance running at most batchSize+newBatchThreshold invocations of a function at once, until
// ctx ends. Invocations still running then are abandoned like a host shutdown: their messages are
// neither deleted nor released. Run returns ctx.Err() once its deliveries have returned.
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

// delivery is one dequeued message on its way to an instance.
type delivery struct {
	fn      function
	inst    *instance
	gen     int
	port    int
	m       *message
	dequeue int // m.dequeue when leased: identifies this lease
	inv     *Invocation
	payload []byte
}

func (h *Host) dispatch(ctx context.Context) {
	limit := h.cfg.batchSize + h.cfg.newBatchThreshold
	for _, fn := range h.fns {
		if fn.trigger.Type != "queueTrigger" {
			continue
		}
		q := fn.trigger.QueueName
		for ctx.Err() == nil {
			d, more := h.next(fn, q, limit)
			if !more {
				break
			}
			if d == nil {
				continue // poisoned without invoking
			}
			h.begin(d.inst, d.inv)
			h.pending.Add(1)
			go h.deliver(ctx, d)
		}
	}
}

// next leases the next visible message of q for the least busy live instance. more is false when
// there is no message or no free instance; d is nil when the message went straight to poison.
func (h *Host) next(fn function, q string, limit int) (d *delivery, more bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	inst := h.pick(fn.name, limit)
	if inst == nil {
		return nil, false
	}
	m := h.dequeue(q)
	if m == nil {
		return nil, false
	}
	body, ok := h.decode(m)
	switch {
	case !ok:
		h.hostLine("Message decoding has failed! Check MessageEncoding settings. MessageId=%s", m.id)
		h.poison(q, m)
		return nil, true
	case m.dequeue > h.cfg.maxDequeue:
		h.hostLine("Message %s has DequeueCount %d > maxDequeueCount %d: moved to %s-poison", m.id, m.dequeue, h.cfg.maxDequeue, q)
		h.poison(q, m)
		return nil, true
	}
	m.owner = inst
	inst.running[fn.name]++
	d = &delivery{fn: fn, inst: inst, gen: inst.gen, port: inst.port, m: m, dequeue: m.dequeue,
		payload: queuePayload(fn, m, body)}
	d.inv = &Invocation{ID: uuid.NewString(), Function: fn.name, Instance: inst.idx, MessageID: m.id,
		DequeueCount: m.dequeue, Body: body, Start: time.Now()}
	return d, true
}

// holds reports whether d still holds its message's lease (nobody dequeued it since); h.mu held.
func (d *delivery) holds() bool { return d.m.owner == d.inst && d.m.dequeue == d.dequeue }

func (h *Host) deliver(ctx context.Context, d *delivery) {
	defer h.pending.Done()
	stop := make(chan struct{})
	renewed := make(chan struct{})
	go h.renew(d, stop, renewed)
	r := h.invokeTimed(ctx, d.inst, d.gen, d.port, d.fn, d.inv.ID, d.payload, d.inv.Start)
	close(stop)
	<-renewed

	h.mu.Lock()
	d.inst.running[d.fn.name]--
	// A process the host itself restarted (functionTimeout) fails its invocations; one that died or was
	// killed from outside abandons them.
	dead := (d.inst.gen != d.gen || !d.inst.alive) && d.inst.hostRestarted != d.gen
	q := d.fn.trigger.QueueName
	switch {
	case r.err == nil:
		// Outputs are bound before the trigger message is completed.
		for _, b := range d.fn.outputs {
			for _, msg := range r.outputs[b.Name] {
				h.put(b.QueueName, msg, true)
			}
		}
		if d.holds() {
			h.remove(q, d.m)
		}
	case dead || ctx.Err() != nil:
		// The process (or the host) is gone: nothing deletes or releases the message; its lease lapses.
		if d.holds() {
			d.m.owner = nil
		}
	case d.holds():
		d.m.owner = nil
		if d.m.dequeue >= h.cfg.maxDequeue {
			h.hostLine("Message %s failed %d times: moved to %s-poison", d.m.id, d.m.dequeue, q)
			h.poison(q, d.m)
		} else {
			d.m.visibleAt = time.Now().Add(h.cfg.visibility) // "let someone else try"
		}
	}
	h.mu.Unlock()
	h.end(d.inst, d.inv, r)
}

// renew extends d's lease every Lease/2 while its invocation runs on a live, unfrozen instance.
func (h *Host) renew(d *delivery, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(h.opts.Lease / 2)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			h.mu.Lock()
			if d.inst.gen == d.gen && d.inst.alive && !d.inst.paused && d.holds() {
				d.m.visibleAt = time.Now().Add(h.opts.Lease)
				d.m.pop = uuid.NewString()
			}
			h.mu.Unlock()
		}
	}
}

// Drain returns nil once every queue-trigger queue has been empty (leased messages count as pending)
// and no invocation has been in flight for idle. It needs Run (or FireTimer) to make progress; it
// returns an error when ctx ends first.
func (h *Host) Drain(ctx context.Context, idle time.Duration) error {
	var quietSince time.Time
	t := time.NewTicker(h.opts.Poll)
	defer t.Stop()
	for {
		h.mu.Lock()
		busy, left := false, 0
		for _, fn := range h.fns {
			if fn.trigger.Type == "queueTrigger" {
				left += len(h.queues[fn.trigger.QueueName])
			}
		}
		for _, in := range h.instances {
			if len(in.inflight) > 0 {
				busy = true
			}
		}
		h.mu.Unlock()
		switch {
		case busy || left > 0:
			quietSince = time.Time{}
		case quietSince.IsZero():
			quietSince = time.Now()
		case time.Since(quietSince) >= idle:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("funcemu: drain (%d messages left): %w", left, errors.Join(ErrNotDrained, ctx.Err()))
		case <-t.C:
		}
	}
}

// ErrNotDrained is returned by Drain when its context ends first.
var ErrNotDrained = errors.New("funcemu: queues did not drain")
