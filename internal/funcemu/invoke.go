package funcemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
)

// HostVersion is what the emulator reports in X-Azure-Functions-HostVersion and User-Agent.
const HostVersion = "4.1037.0.0"

// ErrHang marks an invocation whose response body was empty or null: the real host never completes
// it and fails it only when functionTimeout fires.
var ErrHang = errors.New("funcemu: empty or null response body (the host hangs until functionTimeout)")

// result is what one invocation produced, host-side.
type result struct {
	status  int
	logs    []string
	outputs map[string][]string // binding name -> message bodies, in order
	err     error
}

// invoke POSTs one invocation to an instance and interprets the answer as the host does:
// 2xx, a JSON Content-Type, a JSON object with case-insensitive top-level keys.
func (h *Host) invoke(ctx context.Context, port int, fn function, id string, payload []byte, start time.Time) result {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/%s", port, fn.name), bytes.NewReader(payload))
	if err != nil {
		return result{err: err}
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("X-Azure-Functions-InvocationId", id)
	req.Header.Set("X-Azure-Functions-HostVersion", HostVersion)
	req.Header.Set("User-Agent", "Azure-Functions-Host/"+HostVersion)
	resp, err := h.client.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	r := result{status: resp.StatusCode}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		r.err = err
		return r
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// EnsureSuccessStatusCode: no outputs, Logs dropped.
		//lint:ignore ST1005 the host's own message text
		r.err = fmt.Errorf("Response status code does not indicate success: %d (%s)", resp.StatusCode, http.StatusText(resp.StatusCode))
		return r
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" && mt != "text/json" {
		//lint:ignore ST1005 the host's own message text
		r.err = fmt.Errorf("Invalid HttpResponseMessage: unsupported media type %q", resp.Header.Get("Content-Type"))
		return r
	}
	if t := bytes.TrimSpace(body); len(t) == 0 || string(t) == "null" {
		r.err = h.hang(ctx, start)
		return r
	}
	logs, outputs, err := parseResult(fn, body)
	if err != nil {
		r.err = err
		return r
	}
	r.logs, r.outputs = logs, outputs
	return r
}

// hang waits until the function timeout (counted from start) or ctx ends.
func (h *Host) hang(ctx context.Context, start time.Time) error {
	if h.cfg.functionTimeout <= 0 {
		<-ctx.Done()
		return fmt.Errorf("%w: %w", ErrHang, ctx.Err())
	}
	t := time.NewTimer(time.Until(start.Add(h.cfg.functionTimeout)))
	defer t.Stop()
	select {
	case <-t.C:
		return fmt.Errorf("%w: timeout after %s", ErrHang, h.cfg.functionTimeout)
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrHang, ctx.Err())
	}
}

// parseResult reads {Outputs, Logs, ReturnValue} (top-level keys case-insensitive, Outputs keys exact)
// and turns each output binding's value into queue message bodies (reference §2.1, §2.2).
func parseResult(fn function, body []byte) ([]string, map[string][]string, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, nil, fmt.Errorf("response is not a JSON object: %w", err)
	}
	var rawOutputs, rawLogs, rawReturn json.RawMessage
	for k, v := range top {
		switch strings.ToLower(k) {
		case "outputs":
			rawOutputs = v
		case "logs":
			rawLogs = v
		case "returnvalue":
			rawReturn = v
		}
	}
	var logs []string
	if len(rawLogs) > 0 {
		if err := json.Unmarshal(rawLogs, &logs); err != nil {
			//lint:ignore ST1005 the host's own message text
			return nil, nil, fmt.Errorf("Logs is not an array of strings: %w", err)
		}
	}
	outputs := map[string]json.RawMessage{}
	if len(rawOutputs) > 0 && string(rawOutputs) != "null" {
		if err := json.Unmarshal(rawOutputs, &outputs); err != nil {
			//lint:ignore ST1005 the host's own message text
			return nil, nil, fmt.Errorf("Outputs is not an object: %w", err)
		}
	}
	if rv := bytes.TrimSpace(rawReturn); len(rv) > 0 && string(rv) != "null" {
		if fn.hasOutput("$return") {
			outputs["$return"] = rv
		} else if rv[0] == '{' {
			// No $return binding: an object ReturnValue's properties override Outputs.
			var props map[string]json.RawMessage
			if json.Unmarshal(rv, &props) == nil {
				for k, v := range props {
					outputs[k] = v
				}
			}
		}
	}
	msgs := map[string][]string{}
	for _, b := range fn.outputs {
		v, ok := outputs[b.Name]
		if !ok {
			continue
		}
		if m := outputMessages(v, b.DataType == "binary"); len(m) > 0 {
			msgs[b.Name] = m
		}
	}
	return logs, msgs, nil
}

// enqueueOutputs writes an invocation's output messages, one by one, as the queue binding does.
func (h *Host) enqueueOutputs(fn function, outputs map[string][]string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range fn.outputs {
		for _, msg := range outputs[b.Name] {
			h.put(b.QueueName, msg, true)
		}
	}
}

// TimerOptions shape a timer invocation.
type TimerOptions struct {
	PastDue    bool      // the catch-up invocation after a missed occurrence
	NullStatus bool      // schedule monitor off: ScheduleStatus is null
	Next       time.Time // the occurrence being fired (default: now, whole seconds)
}

// FireTimer invokes a timer function on one live instance. Timers are singletons: concurrent calls
// run one after the other. Outputs reach their queues only on success; a failed run is not retried.
// The returned Invocation is also in the history; err is non-nil when the invocation failed.
func (h *Host) FireTimer(ctx context.Context, name string, o TimerOptions) (*Invocation, error) {
	fn, ok := h.function(name)
	if !ok || fn.trigger.Type != "timerTrigger" {
		return nil, fmt.Errorf("funcemu: no timer function %q", name)
	}
	lock := h.timerLocks[name]
	lock.Lock()
	defer lock.Unlock()
	h.mu.Lock()
	inst := h.pick("", 0)
	if inst == nil {
		h.mu.Unlock()
		return nil, ErrNoInstance
	}
	port := inst.port
	h.mu.Unlock()
	inv := &Invocation{ID: newGUID(), Function: name, Instance: inst.idx, Start: time.Now()}
	h.begin(inst, inv)
	r := h.invoke(ctx, port, fn, inv.ID, timerPayload(fn, o), inv.Start)
	if r.err == nil {
		h.enqueueOutputs(fn, r.outputs)
	}
	h.end(inst, inv, r)
	c := copyInvocation(inv)
	if r.err != nil {
		return &c, fmt.Errorf("funcemu: %s: %w", name, r.err)
	}
	return &c, nil
}
