package funcemu

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var echoBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "funcemu-echo")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	echoBinary = filepath.Join(dir, "echohandler")
	if out, err := exec.Command("go", "build", "-o", echoBinary, "./testdata/echohandler").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build echohandler: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const defaultQueues = `"batchSize": 4, "newBatchThreshold": 2, "visibilityTimeout": "00:00:00", "maxDequeueCount": 5`

// newApp writes an app root: a timer "Timer" writing to queue %WORK_QUEUE% and a queue function
// "Work" triggered by "work" writing back to it (as ChunkQueue does).
func newApp(t *testing.T, functionTimeout, queues string) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"host.json": fmt.Sprintf(`{"version": "2.0", "functionTimeout": %q,
			"customHandler": {"description": {"defaultExecutablePath": "handler"}},
			"extensions": {"queues": {%s}}}`, functionTimeout, queues),
		"Timer/function.json": `{"bindings": [
			{"name": "timer", "type": "timerTrigger", "direction": "in", "schedule": "0 0 2 * * *"},
			{"name": "out", "type": "queue", "direction": "out", "queueName": "%WORK_QUEUE%"}]}`,
		"Work/function.json": `{"bindings": [
			{"name": "item", "type": "queueTrigger", "direction": "in", "queueName": "work"},
			{"name": "out", "type": "queue", "direction": "out", "queueName": "work"}]}`,
	}
	for name, text := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// lines collects the instances' output lines.
type lines struct {
	mu  sync.Mutex
	all []string
	on  func(i int, line string)
}

func (l *lines) add(i int, line string) {
	l.mu.Lock()
	l.all = append(l.all, line)
	on := l.on
	l.mu.Unlock()
	if on != nil {
		on(i, line)
	}
}

// bodies returns the raw request bodies fn received (logged by echohandler as base64).
func (l *lines) bodies(t *testing.T, fn string) []string {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.all {
		if rest, ok := strings.CutPrefix(line, "BODY "+fn+" "); ok {
			b, err := base64.StdEncoding.DecodeString(rest)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(b))
		}
	}
	return out
}

// start builds a host, starts it and runs its dispatch loop until the test ends.
func start(t *testing.T, opts Options) (*Host, *lines) {
	t.Helper()
	l := &lines{on: opts.OnLine}
	opts.OnLine = l.add
	if opts.Binary == "" {
		opts.Binary = echoBinary
	}
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	if err := h.Start(ctx); err != nil {
		cancel()
		h.Close()
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-runDone
		h.Close()
	})
	return h, l
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func byFunction(invs []Invocation, fn string) []Invocation {
	var out []Invocation
	for _, inv := range invs {
		if inv.Function == fn {
			out = append(out, inv)
		}
	}
	return out
}
