// Package funcemu plays the Azure Functions host for a custom handler, as read from the host's source
// (github.com/Azure/azure-functions-host) and Microsoft's "Azure Functions custom handlers" and
// "Azure Queue storage trigger for Azure Functions" (README, "Local development"): it starts the
// handler as one or more instances, sends timer and queue invocations with the host's exact payload
// encoding, applies output bindings, and keeps in-memory storage queues with the queue trigger's
// semantics (base64 message encoding, visibility leases renewed while an invocation runs,
// DequeueCount, retry after visibilityTimeout, poison queue after maxDequeueCount). Tests use it to
// kill instances mid-invocation; the demo uses it to run the app on one machine.
package funcemu

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"dvbulk/internal/netutil"
)

// ErrNoInstance is returned when no live instance can take an invocation.
var ErrNoInstance = errors.New("funcemu: no live instance")

// Options configure a Host.
type Options struct {
	AppRoot   string    // folder with host.json and <Function>/function.json
	Binary    string    // the custom handler executable; empty = host.json customHandler.description.defaultExecutablePath
	Instances int       // scaled-out instances (processes), default 1
	Env       []string  // app settings for every instance, e.g. "DATAVERSE_URL=..."
	Output    io.Writer // instances' stdout+stderr, each line prefixed "[i] " (nil = discard)
	// Lease is the invisibility a dequeued message gets, renewed at half while its invocation runs
	// (the real host: 10 min). Default 10m.
	Lease  time.Duration
	Poll   time.Duration                   // queue polling interval (default 50ms)
	OnLine func(instance int, line string) // optional: called for every output line; must not block (it runs on the output reader, which Close waits for)
}

// Invocation is one call of a function.
type Invocation struct {
	ID, Function string
	Instance     int
	MessageID    string // queue trigger only
	DequeueCount int    // queue trigger only
	Body         string // the decoded queue message (queue trigger only)
	Status       int    // HTTP status; 0 when no answer arrived
	Err          string // why the invocation failed; empty on success
	Start, End   time.Time
	Outputs      map[string][]string // binding name -> messages enqueued (only on success)
	Logs         []string            // the response's Logs (only on success, as in the host)
}

// Host emulates the Functions host around one app.
type Host struct {
	opts   Options
	cfg    hostConfig
	fns    []function
	client *http.Client

	mu          sync.Mutex
	queues      map[string][]*message
	instances   []*instance
	invocations []*Invocation
	pending     sync.WaitGroup         // deliveries started by Run
	timerLocks  map[string]*sync.Mutex // timers are singletons: one invocation per function at a time across the app
	closed      bool
	outMu       sync.Mutex // instances write to Output concurrently

	freePort func() (int, error) // netutil.FreePort; tests hand out a taken port first
}

// New reads the app's host.json and function.json files (resolving %SETTING% from opts.Env).
func New(opts Options) (*Host, error) {
	if opts.Instances <= 0 {
		opts.Instances = 1
	}
	if opts.Lease <= 0 {
		opts.Lease = 10 * time.Minute
	}
	if opts.Poll <= 0 {
		opts.Poll = 50 * time.Millisecond
	}
	if opts.Output == nil {
		opts.Output = io.Discard
	}
	root, err := filepath.Abs(opts.AppRoot)
	if err != nil {
		return nil, fmt.Errorf("funcemu: app root: %w", err)
	}
	opts.AppRoot = root
	cfg, fns, err := readApp(root, opts.Env)
	if err != nil {
		return nil, err
	}
	if opts.Binary == "" {
		if cfg.executable == "" {
			return nil, errors.New("funcemu: no handler binary: set Options.Binary or customHandler.description.defaultExecutablePath")
		}
		opts.Binary = cfg.executable
	}
	if !filepath.IsAbs(opts.Binary) && filepath.Base(opts.Binary) != opts.Binary {
		opts.Binary = filepath.Join(root, opts.Binary) // relative to the app root, as the host does
	}
	timeout := cfg.functionTimeout + time.Minute
	if cfg.functionTimeout <= 0 {
		timeout = 0 // "-1": unbounded
	}
	h := &Host{opts: opts, cfg: cfg, freePort: netutil.FreePort, fns: fns, queues: map[string][]*message{}, timerLocks: map[string]*sync.Mutex{},
		client: &http.Client{Timeout: timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	for _, f := range fns {
		h.timerLocks[f.name] = &sync.Mutex{}
	}
	for i := 0; i < opts.Instances; i++ {
		h.instances = append(h.instances, &instance{idx: i, running: map[string]int{}, inflight: map[string]*Invocation{}})
	}
	return h, nil
}

// Invocations returns the history, oldest first (in-flight ones included, End still zero).
func (h *Host) Invocations() []Invocation {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Invocation, len(h.invocations))
	for i, inv := range h.invocations {
		out[i] = copyInvocation(inv)
	}
	return out
}

// InFlight lists what instance i is running now.
func (h *Host) InFlight(i int) []Invocation {
	h.mu.Lock()
	defer h.mu.Unlock()
	if i < 0 || i >= len(h.instances) {
		return nil
	}
	var out []Invocation
	for _, inv := range h.instances[i].inflight {
		out = append(out, copyInvocation(inv))
	}
	return out
}

func copyInvocation(inv *Invocation) Invocation {
	c := *inv
	c.Logs = append([]string(nil), inv.Logs...)
	if inv.Outputs != nil {
		c.Outputs = make(map[string][]string, len(inv.Outputs))
		for k, v := range inv.Outputs {
			c.Outputs[k] = append([]string(nil), v...)
		}
	}
	return c
}

func (h *Host) function(name string) (function, bool) {
	for _, f := range h.fns {
		if f.name == name {
			return f, true
		}
	}
	return function{}, false
}

// begin records an invocation as running on inst; end finishes it with its result.
func (h *Host) begin(inst *instance, inv *Invocation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	inst.inflight[inv.ID] = inv
	h.invocations = append(h.invocations, inv)
}

func (h *Host) end(inst *instance, inv *Invocation, r result) {
	h.mu.Lock()
	defer h.mu.Unlock()
	inv.Status, inv.Logs, inv.Outputs = r.status, r.logs, r.outputs
	if r.err != nil {
		inv.Err = r.err.Error()
	}
	inv.End = time.Now()
	delete(inst.inflight, inv.ID)
}

func (h *Host) writeLine(prefix, line string) {
	h.outMu.Lock()
	defer h.outMu.Unlock()
	_, _ = io.WriteString(h.opts.Output, prefix+line+"\n")
}

// hostLine writes one of the emulated host's own log lines to Output, prefixed "[host] ".
func (h *Host) hostLine(format string, args ...any) {
	h.writeLine("[host] ", fmt.Sprintf(format, args...))
}
