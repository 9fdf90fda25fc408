package funcemu

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"dvbulk/internal/testutil"
)

// The port chosen for an instance is taken before the child binds it, by a server that even answers
// the readiness probe. The child reports the port in use and exits; the instance is launched again on
// a fresh port, and invocations reach the child, not the other server. Deterministic: the first port
// handed out is the occupied one.
func TestInstanceRelaunchedWhenItsPortIsTaken(t *testing.T) {
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			t.Errorf("an invocation (%s) reached the server that held the port first", r.URL.Path)
		}
		w.WriteHeader(http.StatusOK) // it answers GET / like a ready handler
	}))
	defer foreign.Close()
	taken := foreign.Listener.Addr().(*net.TCPAddr).Port

	l := &lines{}
	h, err := New(Options{AppRoot: newApp(t, "00:01:00", defaultQueues), Binary: echoBinary, OnLine: l.add, Env: []string{"WORK_QUEUE=work"}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ports := testutil.NewTakenFirst(taken)
	h.freePort = ports.Port
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	if err := h.Start(ctx); err != nil {
		t.Fatalf("start with the first port taken: %v", err)
	}
	if handed := ports.Handed(); len(handed) < 2 || h.instances[0].port == taken {
		t.Fatalf("ports handed out %v, instance on %d; want a relaunch on a fresh port", handed, h.instances[0].port)
	}
	l.mu.Lock()
	said := strings.Contains(strings.Join(l.all, "\n"), "address already in use")
	l.mu.Unlock()
	if !said {
		t.Error("the child never reported its port in use; the test did not exercise the race")
	}
	runDone := make(chan error, 1)
	go func() { runDone <- h.Run(ctx) }()
	h.Enqueue("work", `{"hello":"child"}`, true)
	waitFor(t, "the message to reach the child", 30*time.Second, func() bool { return len(l.bodies(t, "Work")) == 1 })
	cancel()
	<-runDone
}

// Every launch attempt meets a taken port: the start fails, naming the cause, after a bounded
// number of attempts instead of looping.
func TestInstanceStartGivesUpAfterPortAttempts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).Port
	h, err := New(Options{AppRoot: newApp(t, "00:01:00", defaultQueues), Binary: echoBinary, Env: []string{"WORK_QUEUE=work"}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	calls := 0
	h.freePort = func() (int, error) { calls++; return taken, nil }
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	err = h.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "port taken") || calls != portAttempts {
		t.Fatalf("start: %v after %d ports; want a port-taken failure after %d", err, calls, portAttempts)
	}
}
