package funcemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"

	"dvbulk/internal/netutil"
)

const (
	readyPoll    = 25 * time.Millisecond // DefaultHttpWorkerService.IsWorkerReady
	readyTimeout = 30 * time.Second      // HttpWorkerOptions.InitializationTimeout
	stopGrace    = 10 * time.Second
)

// instance is one scaled-out worker: the handler process plus (conceptually) its host.
type instance struct {
	idx    int
	gen    int // bumped on every launch, so a late result from a dead process is recognised
	port   int
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has exited and its output is drained
	alive  bool          // ready and not signalled to die: may receive deliveries
	paused bool          // SIGSTOPped: the whole instance is frozen, leases are not renewed
	// hostRestarted is the generation the host killed after a functionTimeout: its invocations fail
	// (and their messages are released) rather than being abandoned.
	hostRestarted int
	running       map[string]int
	inflight      map[string]*Invocation
}

// Start launches every instance and waits until each answers GET /.
func (h *Host) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(h.instances))
	for i := range h.instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.launch(ctx, i)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// portAttempts bounds how often an instance is relaunched on a fresh port because another process
// took the one chosen for it between the choice and the child's bind.
const portAttempts = 5

// errPortTaken: the child could not listen on its port (it said so and exited), or another
// process's server answers there.
var errPortTaken = errors.New("funcemu: port taken by another process")

// launch starts instance i's handler process. The port is chosen here and bound by the child later,
// so another process can take it in between: then the child reports it in use and exits, and the
// instance is launched again on a fresh port; a server that answers there but is not the child's
// is not taken for the child's readiness.
func (h *Host) launch(ctx context.Context, i int) error {
	var err error
	for attempt := 1; attempt <= portAttempts; attempt++ {
		var port int
		if port, err = h.freePort(); err != nil {
			return fmt.Errorf("funcemu: instance %d: port: %w", i, err)
		}
		if err = h.launchOn(ctx, i, port); !errors.Is(err, errPortTaken) {
			return err
		}
		h.writeLine(fmt.Sprintf("[%d] ", i), fmt.Sprintf("funcemu: port %d was taken (attempt %d of %d); relaunching on a fresh port", port, attempt, portAttempts))
	}
	return fmt.Errorf("funcemu: instance %d: %w after %d ports", i, err, portAttempts)
}

func (h *Host) launchOn(ctx context.Context, i, port int) error {
	worker := uuid.NewString()
	cmd := exec.Command(h.opts.Binary, h.cfg.arguments...)
	cmd.Dir = h.opts.AppRoot
	if h.cfg.workingDir != "" {
		cmd.Dir = h.cfg.workingDir
	}
	cmd.Env = append(append(os.Environ(), h.opts.Env...),
		fmt.Sprintf("FUNCTIONS_CUSTOMHANDLER_PORT=%d", port),
		fmt.Sprintf("FUNCTIONS_HTTPWORKER_PORT=%d", port),
		"FUNCTIONS_CUSTOMHANDLER_WORKER_ID="+worker,
		"FUNCTIONS_HTTPWORKER_ID="+worker,
		"FUNCTIONS_APP_ROOT_PATH="+h.opts.AppRoot)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("funcemu: instance %d: %w", i, err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("funcemu: start instance %d: %w", i, err)
	}
	done := make(chan struct{})
	h.mu.Lock()
	inst := h.instances[i]
	inst.gen++
	gen := inst.gen
	inst.port, inst.cmd, inst.done, inst.alive, inst.paused = port, cmd, done, false, false
	h.mu.Unlock()

	var inUse atomic.Bool // the child said its port was taken
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			if netutil.InUse(line) {
				inUse.Store(true)
			}
			h.writeLine(fmt.Sprintf("[%d] ", i), line)
			if h.opts.OnLine != nil {
				h.opts.OnLine(i, line)
			}
		}
		_ = cmd.Wait()
		h.mu.Lock()
		if inst.gen == gen {
			inst.alive = false // it died on its own (crash, exit)
		}
		h.mu.Unlock()
		close(done)
	}()

	probe := &http.Client{Timeout: time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	for {
		if resp, err := probe.Get(url); err == nil && h.owns(cmd, port) {
			resp.Body.Close() // any answer, 404 included, means ready
			h.mu.Lock()
			if inst.gen == gen {
				inst.alive = true
			}
			h.mu.Unlock()
			return nil
		}
		select {
		case <-done:
			if inUse.Load() {
				return fmt.Errorf("funcemu: instance %d: port %d: %w", i, port, errPortTaken)
			}
			return fmt.Errorf("funcemu: instance %d exited during start", i)
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("funcemu: start instance %d: %w", i, ctx.Err())
		case <-deadline.C:
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("funcemu: instance %d not ready within %s", i, readyTimeout)
		case <-time.After(readyPoll):
		}
	}
}

// owns reports whether the answer on port can be the child's: it holds the listening socket (or
// that cannot be checked here).
func (h *Host) owns(cmd *exec.Cmd, port int) bool {
	owns, known := netutil.ListensOn(cmd.Process.Pid, port)
	return owns || !known
}

// signal sends sig to instance i and returns its exit channel.
func (h *Host) signal(i int, sig syscall.Signal) (chan struct{}, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if i < 0 || i >= len(h.instances) || h.instances[i].cmd == nil {
		return nil, fmt.Errorf("funcemu: no instance %d", i)
	}
	inst := h.instances[i]
	select {
	case <-inst.done:
		return nil, fmt.Errorf("funcemu: instance %d is not running", i)
	default:
	}
	switch sig {
	case syscall.SIGKILL, syscall.SIGTERM:
		inst.alive = false // no new deliveries; a killed one's messages keep their leases
	case syscall.SIGSTOP:
		inst.paused = true
	case syscall.SIGCONT:
		inst.paused = false
	}
	if err := inst.cmd.Process.Signal(sig); err != nil {
		return nil, fmt.Errorf("funcemu: signal instance %d: %w", i, err)
	}
	return inst.done, nil
}

// Kill SIGKILLs instance i and waits for it to exit. Its in-flight messages are neither deleted nor
// released: they reappear when their lease lapses, with DequeueCount+1.
func (h *Host) Kill(i int) error {
	done, err := h.signal(i, syscall.SIGKILL)
	if err != nil {
		return err
	}
	<-done
	return nil
}

// ErrStopGrace is returned by Stop when the instance did not exit within the grace period after
// SIGTERM and was SIGKILLed.
var ErrStopGrace = errors.New("funcemu: instance did not exit within the grace period after SIGTERM; killed")

// Stop SIGTERMs instance i, as the platform does on scale-in, and waits for it to exit. Its
// in-flight invocations keep running: their answers are bound and their messages completed (or
// released on failure) as usual. After grace (stopGrace if <= 0) it is SIGKILLed and Stop returns
// ErrStopGrace.
func (h *Host) Stop(i int, grace time.Duration) error {
	if grace <= 0 {
		grace = stopGrace
	}
	done, err := h.signal(i, syscall.SIGTERM)
	if err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(grace):
		if err := h.Kill(i); err != nil {
			return err
		}
		return ErrStopGrace
	}
}

// Restart starts a stopped or killed instance again (on a new port) and waits for readiness.
func (h *Host) Restart(i int) error {
	h.mu.Lock()
	if i < 0 || i >= len(h.instances) {
		h.mu.Unlock()
		return fmt.Errorf("funcemu: no instance %d", i)
	}
	done := h.instances[i].done
	h.mu.Unlock()
	if done != nil {
		select {
		case <-done:
		default:
			return fmt.Errorf("funcemu: instance %d is still running", i)
		}
	}
	return h.launch(context.Background(), i)
}

// Pause SIGSTOPs instance i. The whole instance counts as frozen: it gets no deliveries and its
// leases are not renewed, so its messages go to other instances once their leases lapse.
func (h *Host) Pause(i int) error {
	_, err := h.signal(i, syscall.SIGSTOP)
	return err
}

// Resume SIGCONTs a paused instance.
func (h *Host) Resume(i int) error {
	_, err := h.signal(i, syscall.SIGCONT)
	return err
}

// Close stops every instance (SIGTERM, then SIGKILL after a grace period). It is idempotent.
func (h *Host) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	type proc struct {
		p    *os.Process
		done chan struct{}
	}
	var procs []proc
	for _, inst := range h.instances {
		if inst.cmd != nil {
			inst.alive = false
			procs = append(procs, proc{inst.cmd.Process, inst.done})
		}
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, pr := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-pr.done:
				return
			default:
			}
			_ = pr.p.Signal(syscall.SIGCONT) // a stopped process cannot act on SIGTERM
			_ = pr.p.Signal(syscall.SIGTERM)
			select {
			case <-pr.done:
			case <-time.After(stopGrace):
				_ = pr.p.Kill()
				<-pr.done
			}
		}()
	}
	wg.Wait()
}

// pick returns the live, unpaused instance with the fewest running invocations of fn that is below
// limit (limit <= 0: no limit), or nil. h.mu must be held.
func (h *Host) pick(fn string, limit int) *instance {
	var best *instance
	for _, in := range h.instances {
		if !in.alive || in.paused || (limit > 0 && in.running[fn] >= limit) {
			continue
		}
		if best == nil || in.running[fn] < best.running[fn] {
			best = in
		}
	}
	return best
}
