package funcemu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options configure a Host.
type Options struct {
	AppRoot   string   // folder with host.json and <Function>/function.json
	Binary    string   // the custom handler executable
	Instances int      // scaled-out instances (processes), default 1
	Env       []string // app settings for every instance
	Output    io.Writer
	Lease     time.Duration // dequeue invisibility, renewed at half while running (host: 10 min)
	Poll      time.Duration // queue polling interval (default 50ms)
	OnLine    func(instance int, line string)
}

// Invocation is one call of a function.
type Invocation struct {
	ID, Function string
	Instance     int
	MessageID    string
	DequeueCount int
	Body         string
	Status       int
	Err          string
	Start, End   time.Time
	Outputs      map[string][]string
	Logs         []string
}

type message struct {
	id        string
	stored    string // as in the queue: base64 under the default messageEncoding
	dequeue   int
	inserted  time.Time
	visibleAt time.Time
	pop       string
	owner     *instance // instance holding the lease, nil when none
}

type instance struct {
	idx      int
	port     int
	cmd      *exec.Cmd
	done     chan struct{}
	alive    bool
	running  int
	inflight map[string]*Invocation
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
	pending     sync.WaitGroup
	timerMu     sync.Mutex
	closed      bool
}

// New reads the app's host.json and function.json files.
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
	cfg, fns, err := readApp(opts.AppRoot, opts.Env)
	if err != nil {
		return nil, err
	}
	h := &Host{opts: opts, cfg: cfg, fns: fns, queues: map[string][]*message{},
		client: &http.Client{Timeout: cfg.functionTimeout + time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	for i := 0; i < opts.Instances; i++ {
		h.instances = append(h.instances, &instance{idx: i, inflight: map[string]*Invocation{}})
	}
	return h, nil
}

// Start launches every instance and waits until each answers GET /.
func (h *Host) Start(ctx context.Context) error {
	for i := range h.instances {
		if err := h.launch(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (h *Host) launch(ctx context.Context, i int) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	cmd := exec.Command(h.opts.Binary)
	cmd.Dir = h.opts.AppRoot
	cmd.Env = append(append(os.Environ(), h.opts.Env...),
		fmt.Sprintf("FUNCTIONS_CUSTOMHANDLER_PORT=%d", port), fmt.Sprintf("FUNCTIONS_HTTPWORKER_PORT=%d", port),
		fmt.Sprintf("FUNCTIONS_CUSTOMHANDLER_WORKER_ID=%s", newGUID()), "FUNCTIONS_APP_ROOT_PATH="+h.opts.AppRoot)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("funcemu: start instance %d: %w", i, err)
	}
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintf(h.opts.Output, "[%d] %s\n", i, line)
			if h.opts.OnLine != nil {
				h.opts.OnLine(i, line)
			}
		}
		_ = cmd.Wait()
		close(done)
	}()
	h.mu.Lock()
	inst := h.instances[i]
	inst.port, inst.cmd, inst.done, inst.alive, inst.running = port, cmd, done, false, 0
	inst.inflight = map[string]*Invocation{}
	h.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil {
			resp.Body.Close()
			h.mu.Lock()
			inst.alive = true
			h.mu.Unlock()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("funcemu: instance %d exited during start", i)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
	_ = cmd.Process.Kill()
	return fmt.Errorf("funcemu: instance %d not ready within 30s", i)
}

func (h *Host) signal(i int, sig syscall.Signal) error {
	h.mu.Lock()
	if i < 0 || i >= len(h.instances) || h.instances[i].cmd == nil {
		h.mu.Unlock()
		return fmt.Errorf("funcemu: no instance %d", i)
	}
	inst := h.instances[i]
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		inst.alive = false // no new deliveries; a killed one's messages keep their leases
	}
	p := inst.cmd.Process
	h.mu.Unlock()
	return p.Signal(sig)
}

// Kill SIGKILLs instance i: its in-flight messages are neither deleted nor released.
func (h *Host) Kill(i int) error {
	if err := h.signal(i, syscall.SIGKILL); err != nil {
		return err
	}
	<-h.instances[i].done
	return nil
}

// Stop SIGTERMs instance i and waits for it to exit.
func (h *Host) Stop(i int) error {
	if err := h.signal(i, syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-h.instances[i].done:
	case <-time.After(40 * time.Second):
		return h.Kill(i)
	}
	return nil
}

// Restart starts a stopped or killed instance again.
func (h *Host) Restart(i int) error {
	h.mu.Lock()
	inst := h.instances[i]
	h.mu.Unlock()
	if inst.done != nil {
		select {
		case <-inst.done:
		default:
			return fmt.Errorf("funcemu: instance %d is still running", i)
		}
	}
	return h.launch(context.Background(), i)
}

// Pause and Resume SIGSTOP / SIGCONT an instance (a stale owner that wakes up later).
func (h *Host) Pause(i int) error  { return h.signal(i, syscall.SIGSTOP) }
func (h *Host) Resume(i int) error { return h.signal(i, syscall.SIGCONT) }

// Close stops every instance (SIGTERM, then SIGKILL after a grace period).
func (h *Host) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	insts := append([]*instance(nil), h.instances...)
	h.mu.Unlock()
	for _, inst := range insts {
		if inst.cmd == nil {
			continue
		}
		select {
		case <-inst.done:
			continue
		default:
		}
		_ = inst.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-inst.done:
		case <-time.After(10 * time.Second):
			_ = inst.cmd.Process.Kill()
			<-inst.done
		}
	}
}

// InFlight lists what instance i is running now.
func (h *Host) InFlight(i int) []Invocation {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Invocation
	for _, inv := range h.instances[i].inflight {
		out = append(out, *inv)
	}
	return out
}

// Invocations returns the history.
func (h *Host) Invocations() []Invocation {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Invocation, len(h.invocations))
	for i, inv := range h.invocations {
		out[i] = *inv
	}
	return out
}

// Enqueue adds a message as an external tool would. With encode (and the default base64
// messageEncoding) it is stored base64-encoded, as the output binding and the portal do; without,
// the text is stored as is (what the Go azqueue SDK does), which the trigger cannot decode.
func (h *Host) Enqueue(queue, body string, encode bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.put(strings.ToLower(queue), body, encode)
}

func (h *Host) put(queue, body string, encode bool) {
	stored := body
	if encode && h.cfg.base64 {
		stored = base64.StdEncoding.EncodeToString([]byte(body))
	}
	now := time.Now()
	h.queues[queue] = append(h.queues[queue], &message{id: newGUID(), stored: stored, inserted: now, visibleAt: now})
}

func (h *Host) decode(m *message) (string, bool) {
	if !h.cfg.base64 {
		return m.stored, true
	}
	b, err := base64.StdEncoding.DecodeString(m.stored)
	return string(b), err == nil
}

// Messages returns the decoded bodies in a queue (visible or leased).
func (h *Host) Messages(queue string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, m := range h.queues[strings.ToLower(queue)] {
		if body, ok := h.decode(m); ok {
			out = append(out, body)
		} else {
			out = append(out, m.stored)
		}
	}
	return out
}

// post sends one invocation and reads the host-side result.
func (h *Host) post(ctx context.Context, inst *instance, fn string, payload []byte, inv *Invocation) (map[string]json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/%s", inst.port, fn), bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("X-Azure-Functions-InvocationId", inv.ID)
	req.Header.Set("X-Azure-Functions-HostVersion", "4.1037.0.0")
	req.Header.Set("User-Agent", "Azure-Functions-Host/4.1037.0.0")
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	inv.Status = resp.StatusCode
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("Response status code does not indicate success: %d", resp.StatusCode)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "application/json" && mt != "text/json" {
		return nil, fmt.Errorf("invalid media type %q", resp.Header.Get("Content-Type"))
	}
	t := bytes.TrimSpace(body)
	if len(t) == 0 || string(t) == "null" {
		return nil, errors.New("empty or null body: the real host would hang until functionTimeout")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(t, &top); err != nil {
		return nil, fmt.Errorf("response is not a JSON object: %w", err)
	}
	res := map[string]json.RawMessage{}
	for k, v := range top {
		res[strings.ToLower(k)] = v
	}
	if logs, ok := res["logs"]; ok && string(logs) != "null" {
		if err := json.Unmarshal(logs, &inv.Logs); err != nil {
			return nil, fmt.Errorf("Logs is not an array of strings: %w", err)
		}
	}
	return res, nil
}

// applyOutputs enqueues the output bindings' messages (binding names are case-sensitive).
func (h *Host) applyOutputs(fn function, res map[string]json.RawMessage, inv *Invocation) {
	var outputs map[string]json.RawMessage
	if raw, ok := res["outputs"]; ok {
		_ = json.Unmarshal(raw, &outputs)
	}
	inv.Outputs = map[string][]string{}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range fn.outputs {
		v, ok := outputs[b.Name]
		if !ok {
			continue
		}
		for _, msg := range outputMessages(v, b.DataType == "binary") {
			inv.Outputs[b.Name] = append(inv.Outputs[b.Name], msg)
			h.put(b.QueueName, msg, true)
		}
	}
}

// FireTimer invokes a timer function on the first live instance (timers are singletons).
func (h *Host) FireTimer(ctx context.Context, name string, o TimerOptions) (*Invocation, error) {
	fn, ok := h.function(name)
	if !ok || fn.trigger.Type != "timerTrigger" {
		return nil, fmt.Errorf("funcemu: no timer function %q", name)
	}
	h.timerMu.Lock()
	defer h.timerMu.Unlock()
	h.mu.Lock()
	var inst *instance
	for _, in := range h.instances {
		if in.alive {
			inst = in
			break
		}
	}
	h.mu.Unlock()
	if inst == nil {
		return nil, errors.New("funcemu: no live instance")
	}
	inv := &Invocation{ID: newGUID(), Function: name, Instance: inst.idx, Start: time.Now()}
	h.track(inst, inv, true)
	res, err := h.post(ctx, inst, name, timerPayload(fn, o), inv)
	if err == nil {
		h.applyOutputs(fn, res, inv)
	} else {
		inv.Err = err.Error()
	}
	h.track(inst, inv, false)
	return inv, err
}

func (h *Host) function(name string) (function, bool) {
	for _, f := range h.fns {
		if f.name == name {
			return f, true
		}
	}
	return function{}, false
}

func (h *Host) track(inst *instance, inv *Invocation, start bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if start {
		inst.inflight[inv.ID] = inv
		h.invocations = append(h.invocations, inv)
		return
	}
	inv.End = time.Now()
	delete(inst.inflight, inv.ID)
}
