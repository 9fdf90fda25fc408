package enrich

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"unicode/utf8"

	"dvbulk/internal/ctxutil"
)

// maxThrottleWaits bounds how often one request may be told to wait by Retry-After. Such
// waits do not use up MaxRetries (being paced is not failing), but a service that never stops
// throttling must not hold a chunk until its deadline.
const maxThrottleWaits = 50

// runBatch enriches one request's worth of records into out (same length as batch). It
// returns false only if ctx ended first, leaving the unanswered records as they were.
func (c *Client) runBatch(ctx context.Context, batch []Record, out []Result) bool {
	body, sent, slots := c.encode(batch, out)
	if len(sent) == 0 {
		return true
	}
	var retries, throttles int
	for {
		if err := c.gate.acquire(ctx); err != nil {
			return false
		}
		o := c.attempt(ctx, body, sent)
		c.gate.release()

		switch o.kind {
		case answered:
			for j, r := range o.results {
				c.setResult(out, slots[j], r)
			}
			return true
		case canceled:
			return false
		case permanent:
			c.log.Warn().Int("records", len(sent)).Str("reason", o.reason).Msg("enrichment request failed")
			c.failAll(out, slots, o.reason, false)
			return true
		case throttled:
			c.stats.throttled.Add(1)
			if !o.hasWait {
				break // no Retry-After: an ordinary transient failure
			}
			if throttles++; throttles > maxThrottleWaits {
				c.giveUp(out, slots, o.reason, retries+throttles)
				return true
			}
			// Every request of the client waits, not only this one: the service asked the
			// client to back off, and the others would only be throttled too.
			c.gate.pause(o.wait)
			c.stats.retries.Add(1)
			c.log.Debug().Int("records", len(sent)).Str("reason", o.reason).
				Dur("retry_after", o.wait).Msg("enrichment throttled")
			continue
		}

		if retries >= c.cfg.MaxRetries {
			c.giveUp(out, slots, o.reason, retries+throttles+1)
			return true
		}
		retries++
		c.stats.retries.Add(1)
		wait := wait(retries, c.cfg.BackoffBase, c.cfg.BackoffMax)
		c.log.Debug().Int("records", len(sent)).Str("reason", o.reason).Int("retry", retries).
			Dur("backoff", wait).Msg("enrichment request will be retried")
		if ctxutil.Sleep(ctx, wait) != nil {
			return false
		}
	}
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

// encode builds the request body. A record that cannot be sent (no id, an input value JSON
// cannot represent) fails on its own rather than sinking the request. sent are the records in
// the body and slots their indices in batch and out.
func (c *Client) encode(batch []Record, out []Result) (body []byte, sent []Record, slots []int) {
	var b bytes.Buffer
	b.WriteString(`{"records":[`)
	for i, r := range batch {
		rec, err := encodeRecord(r)
		if err != nil {
			c.setResult(out, i, Result{ID: r.ID, Err: err.Error()})
			continue
		}
		if len(sent) > 0 {
			b.WriteByte(',')
		}
		b.Write(rec)
		sent = append(sent, r)
		slots = append(slots, i)
	}
	b.WriteString(`]}`)
	return b.Bytes(), sent, slots
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
