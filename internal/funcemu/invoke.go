package funcemu

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
)

// HostVersion is what the emulator reports in X-Azure-Functions-HostVersion and User-Agent.
const HostVersion = "4.1037.0.0"

// ErrHang marks an invocation whose response body was empty or null: the real host never completes
// it and fails it only when functionTimeout fires.
// ErrTimeout marks an invocation that ran past functionTimeout. The host fails it and, a custom
// handler having a single channel, kills and restarts the whole handler process, failing every other
// invocation in flight on it too (reference §2.5).
var ErrTimeout = errors.New("funcemu: functionTimeout exceeded")

// MaxMessage is Azure Queue storage's limit on a message; with base64 encoding it counts encoded.
const MaxMessage = 64 << 10

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
func (h *Host) invoke(ctx context.Context, port int, fn function, id string, payload []byte) result {
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
		r.err = h.hang(ctx)
		return r
	}
	logs, outputs, err := parseResult(fn, body)
	if err != nil {
		r.err = err
		return r
	}
	if err := h.checkSizes(fn, outputs); err != nil {
		r.err = err
		return r
	}
	r.logs, r.outputs = logs, outputs
	return r
}

// checkSizes fails an invocation with an output message over the queue's limit, as the storage
// service refuses it (413) when the binding adds it after the function returned. (The real binding may
// have added the messages before the big one; the emulator adds none.)
func (h *Host) checkSizes(fn function, outputs map[string][]string) error {
	for _, b := range fn.outputs {
		for i, msg := range outputs[b.Name] {
			n := len(msg)
			if h.cfg.base64 {
				n = base64.StdEncoding.EncodedLen(n)
			}
			if n > MaxMessage {
				return fmt.Errorf("output %q message %d: %d bytes as stored, over the queue's %d-byte limit (RequestBodyTooLarge)", b.Name, i, n, MaxMessage)
			}
		}
	}
	return nil
}

// invokeTimed is invoke under functionTimeout (counted from start). When the timeout fires, the
// invocation fails with ErrTimeout and the instance's handler process is killed and restarted.
func (h *Host) invokeTimed(ctx context.Context, inst *instance, gen, port int, fn function, id string, payload []byte, start time.Time) result {
	if h.cfg.functionTimeout <= 0 {
		return h.invoke(ctx, port, fn, id, payload)
	}
	tctx, cancel := context.WithDeadline(ctx, start.Add(h.cfg.functionTimeout))
	defer cancel()
	r := h.invoke(tctx, port, fn, id, payload)
	if r.err == nil || ctx.Err() != nil || !errors.Is(tctx.Err(), context.DeadlineExceeded) {
		return r
	}
	h.hostLine("Timeout value of %s exceeded by function 'Functions.%s' (Id: '%s'). Initiating cancellation.", fmtSpan(h.cfg.functionTimeout), fn.name, id)
	h.restartWorker(inst, gen)
	return result{status: r.status, err: fmt.Errorf("%w after %s (%w)", ErrTimeout, fmtSpan(h.cfg.functionTimeout), r.err)}
}

// restartWorker kills generation gen of inst's handler process and launches a new one, as the host
// does after a timeout; invocations in flight on the old process fail (they are not abandoned).
func (h *Host) restartWorker(inst *instance, gen int) {
	h.mu.Lock()
	if inst.gen != gen || h.closed {
		h.mu.Unlock()
		return
	}
	inst.hostRestarted = gen
	h.mu.Unlock()
	h.hostLine("Restarting the custom handler process of instance %d: every invocation in flight on it fails", inst.idx)
	if err := h.Kill(inst.idx); err != nil {
		return
	}
	if err := h.Restart(inst.idx); err != nil {
		h.hostLine("instance %d: restart after timeout failed: %v", inst.idx, err)
	}
}

func fmtSpan(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%02d:%02d:%02d", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
}

// hang waits until ctx ends: invokeTimed's functionTimeout deadline, or forever when unbounded.
func (h *Host) hang(ctx context.Context) error {
	<-ctx.Done()
	return fmt.Errorf("%w: %w", ErrHang, ctx.Err())
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
	port, gen := inst.port, inst.gen
	h.mu.Unlock()
	inv := &Invocation{ID: uuid.NewString(), Function: name, Instance: inst.idx, Start: time.Now()}
	h.begin(inst, inv)
	r := h.invokeTimed(ctx, inst, gen, port, fn, inv.ID, timerPayload(fn, o), inv.Start)
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
