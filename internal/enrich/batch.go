package enrich

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"dvbulk/internal/ctxutil"
)

// maxThrottleWaits bounds how often one request may be told to wait by Retry-After. Such
// waits do not use up MaxRetries (being paced is not failing), but a service that never stops
// throttling must not hold a chunk until its deadline.
const maxThrottleWaits = 50

// runBatch enriches one request's worth of records into out (same length as batch). It
// returns false only if ctx ended (or its stop closed) first, leaving the unanswered records as
// they were.
// A probe (of a size not yet answered) and its splits go ahead of other requests waiting for a
// slot: until it is answered, the others use a smaller size.
func (c *Client) runBatch(ctx context.Context, batch []Record, out []Result, probe bool) bool {
	p := c.encode(batch, out)
	p.probe = probe
	if len(p.sent) == 0 {
		return true
	}
	return c.send(ctx, p) != unfinished
}

type sendResult int

const (
	allAnswered sendResult = iota // every record has the service's answer
	someFailed                    // the request (or part of it) failed; reasons are in out
	unfinished                    // ctx ended first
)

// send sends one request and retries it as the answer requires. A 400 or 413 on several
// records is retried in halves (see split).
func (c *Client) send(ctx context.Context, p part) sendResult {
	body := p.body()
	var retries, throttles int
	for {
		t, err := c.gate.acquire(ctx, p.probe)
		if err != nil {
			return unfinished
		}
		began := time.Now()
		o := c.attempt(ctx, body, p.sent)
		c.gate.release(t, signalOf(o), time.Since(began), len(p.sent))
		c.heed(o.quota)

		switch o.kind {
		case answered:
			c.sizer.answered(len(p.sent))
			for j, r := range o.results {
				c.setResult(p.out, p.slots[j], r)
			}
			return allAnswered
		case canceled:
			return unfinished
		case permanent:
			if o.tooLarge && len(p.sent) > 1 {
				return c.split(ctx, p, o.reason)
			}
			c.log.Warn().Int("records", len(p.sent)).Str("reason", o.reason).Msg("enrichment request failed")
			c.failAll(p.out, p.slots, o.reason, false)
			return someFailed
		case throttled:
			c.stats.throttled.Add(1)
			if !o.hasWait {
				break // no Retry-After: an ordinary transient failure
			}
			if throttles++; throttles > maxThrottleWaits {
				c.giveUp(p.out, p.slots, o.reason, retries+throttles)
				return someFailed
			}
			// Every request of the client waits, not only this one: the service asked the
			// client to back off, and the others would only be throttled too.
			c.gate.pause(o.wait)
			c.stats.retries.Add(1)
			c.log.Debug().Int("records", len(p.sent)).Str("reason", o.reason).
				Dur("retry_after", o.wait).Msg("enrichment throttled")
			continue
		}

		if retries >= c.cfg.MaxRetries {
			c.giveUp(p.out, p.slots, o.reason, retries+throttles+1)
			return someFailed
		}
		retries++
		c.stats.retries.Add(1)
		wait := wait(retries, c.cfg.BackoffBase, c.cfg.BackoffMax)
		c.log.Debug().Int("records", len(p.sent)).Str("reason", o.reason).Int("retry", retries).
			Dur("backoff", wait).Msg("enrichment request will be retried")
		if ctxutil.Sleep(ctx, wait) != nil {
			return unfinished
		}
	}
}

// split retries a request the service refused (400/413) as two halves, as UpdateMultiple
// failures are bisected: a service that takes fewer records per request is learned (when both
// halves are answered, the whole was too large; see sizer) and a bad record ends up alone, failing
// with the service's reason while every other record gets its answer.
func (c *Client) split(ctx context.Context, p part, reason string) sendResult {
	c.stats.splits.Add(1)
	c.log.Debug().Int("records", len(p.sent)).Str("reason", reason).Msg("enrichment request refused; retrying in halves")
	a, b := p.halves()
	ra := c.send(ctx, a)
	if ra == unfinished {
		return unfinished
	}
	rb := c.send(ctx, b)
	switch {
	case rb == unfinished:
		return unfinished
	case ra == allAnswered && rb == allAnswered:
		c.sizer.split(len(p.sent))
		return allAnswered
	}
	return someFailed
}

// heed applies what an answer's rate-limit headers say: a used-up quota holds every request of
// the client until its reset, and an advertised policy sets the pace.
func (c *Client) heed(q quota) {
	if d, ok := q.exhausted(); ok {
		c.gate.pause(d)
		c.log.Debug().Dur("reset", d).Msg("enrichment quota used up; holding requests until it resets")
	}
	c.gate.pace(q.rps)
}

// signalOf is what an outcome tells the concurrency limiter.
func signalOf(o outcome) Signal {
	switch o.kind {
	case answered:
		return Answered
	case throttled:
		return Throttled
	}
	return Ignore
}

func (c *Client) setResult(out []Result, i int, r Result) {
	if r.Err == "" {
		c.stats.enriched.Add(1)
	} else {
		c.stats.failures.Add(1)
	}
	out[i] = r
}

func (c *Client) failAll(out []Result, slots []int, reason string, retryable bool) {
	for _, i := range slots {
		c.setResult(out, i, Result{ID: out[i].ID, Err: reason, Retryable: retryable})
	}
}

// giveUp fails the records of a request whose transient failures outlasted the budget. They
// stay Retryable: a later run may well succeed.
func (c *Client) giveUp(out []Result, slots []int, reason string, attempts int) {
	reason = fmt.Sprintf("%s (gave up after %d attempts)", reason, attempts)
	c.log.Warn().Int("records", len(slots)).Str("reason", reason).Msg("enrichment request gave up")
	c.failAll(out, slots, reason, true)
}

// part is a request's worth of records: the encoded records, the Records they came from and
// their indices in out.
type part struct {
	encoded [][]byte
	sent    []Record
	slots   []int
	out     []Result
	probe   bool
}

func (p part) body() []byte {
	n := len(`{"records":[]}`) + len(p.encoded)
	for _, e := range p.encoded {
		n += len(e)
	}
	b := make([]byte, 0, n)
	b = append(b, `{"records":[`...)
	for i, e := range p.encoded {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e...)
	}
	return append(b, `]}`...)
}

func (p part) halves() (part, part) {
	h := len(p.sent) / 2
	return part{p.encoded[:h], p.sent[:h], p.slots[:h], p.out, p.probe},
		part{p.encoded[h:], p.sent[h:], p.slots[h:], p.out, p.probe}
}

// encode renders the records of a request. A record that cannot be sent (no id, an input value
// JSON cannot represent) fails on its own rather than sinking the request.
func (c *Client) encode(batch []Record, out []Result) part {
	p := part{out: out}
	for i, r := range batch {
		rec, err := encodeRecord(r)
		if err != nil {
			c.setResult(out, i, Result{ID: r.ID, Err: err.Error()})
			continue
		}
		p.encoded = append(p.encoded, rec)
		p.sent = append(p.sent, r)
		p.slots = append(p.slots, i)
	}
	return p
}

// encodeRecord renders {"id":..., <input columns in name order>}. An input column named "id"
// is left out: the record's own id must win.
func encodeRecord(r Record) ([]byte, error) {
	if r.ID == "" || !utf8.ValidString(r.ID) {
		return nil, fmt.Errorf("record has no usable id")
	}
	id, _ := json.Marshal(r.ID) // a valid string always marshals
	b := append([]byte(`{"id":`), id...)
	keys := make([]string, 0, len(r.Input))
	for k := range r.Input {
		if k != "id" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		name, _ := json.Marshal(k)
		v, err := json.Marshal(r.Input[k])
		if err != nil {
			return nil, fmt.Errorf("input column %s cannot be sent: %v", name, err)
		}
		b = append(append(append(append(b, ','), name...), ':'), v...)
	}
	return append(b, '}'), nil
}
