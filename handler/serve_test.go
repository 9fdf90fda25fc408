package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/ctxutil"
)

// recorder is a fake app that records what the server decoded.
type recorder struct {
	mu     sync.Mutex
	timers []TimerInfo
	msgs   []QueueMessage
	ctxDL  time.Time
	result Result
	err    error
}

func (r *recorder) EnrichTimer(ctx context.Context, _ *Invocation, t TimerInfo) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timers = append(r.timers, t)
	r.ctxDL, _ = ctx.Deadline()
	return r.result, r.err
}

func (r *recorder) ChunkQueue(ctx context.Context, _ *Invocation, m QueueMessage) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
	r.ctxDL, _ = ctx.Deadline()
	return r.result, r.err
}

func post(t *testing.T, h http.Handler, path string, body []byte) (*http.Response, invokeResponse) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("X-Azure-Functions-InvocationId", "3f0e8c1a-6a77-4c8e-9d51-2b4f0f6d1a90")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	resp := w.Result()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json (the host fails anything else)", ct)
	}
	raw, _ := io.ReadAll(resp.Body)
	var out invokeResponse
	if len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		t.Fatalf("empty or null body (the host would hang)")
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("body %q: %v", raw, err)
	}
	// Outputs must be arrays of strings.
	var generic struct{ Outputs map[string]json.RawMessage }
	_ = json.Unmarshal(raw, &generic)
	for k, v := range generic.Outputs {
		if !bytes.HasPrefix(bytes.TrimSpace(v), []byte("[")) {
			t.Fatalf("output %s is %s, not an array of strings", k, v)
		}
	}
	return resp, out
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGoldenPayloads(t *testing.T) {
	rec := &recorder{result: Result{Outputs: map[string][]string{"chunks": {`{"v":1}`}}, Logs: []string{"ok"}}}
	h := newServer(rec, zerolog.Nop(), 10*time.Minute).routes()

	t.Run("timer", func(t *testing.T) {
		resp, out := post(t, h, "/EnrichTimer", fixture(t, "timer.json"))
		if resp.StatusCode != 200 || len(out.Outputs["chunks"]) != 1 || out.Logs[0] != "ok" {
			t.Fatalf("status %d out %+v", resp.StatusCode, out)
		}
		got := rec.timers[len(rec.timers)-1]
		if got.ScheduleStatus == nil || !got.ScheduleStatus.Next.Equal(time.Date(2024, 10, 24, 14, 30, 0, 0, time.UTC)) || got.IsPastDue {
			t.Fatalf("timer decoded as %+v", got)
		}
	})
	t.Run("timer with null ScheduleStatus", func(t *testing.T) {
		post(t, h, "/EnrichTimer", fixture(t, "timer_null_status.json"))
		got := rec.timers[len(rec.timers)-1]
		if got.ScheduleStatus != nil || !got.IsPastDue {
			t.Fatalf("timer decoded as %+v", got)
		}
	})
	tests := []struct {
		file, body, id string
		dequeue        int
	}{
		{"queue_json.json", `{"v":1,"kind":"start","job":"nightly-enrichment","dryRun":true}`, "b7e1c2a4-0d3f-4a51-9a7e-3c2f1d0e9b88", 1},
		{"queue_text.json", "hello world", "6c1b5c3e-2f1d-4a47-8d6b-1f2e3d4c5b6a", 3},
		{"queue_id_shadow.json", `{"id":"not-the-message-id","v":1}`, "", 2}, // Metadata.Id is the message's property: not trusted
		{"queue_binary.json", "hello world", "7d2c6d4f-3e2a-4b58-9e7c-2a3f4e5d6c7b", 1},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			resp, _ := post(t, h, "/ChunkQueue", fixture(t, tt.file))
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			got := rec.msgs[len(rec.msgs)-1]
			if string(got.Body) != tt.body || got.ID != tt.id || got.DequeueCount != tt.dequeue {
				t.Fatalf("decoded body %q id %q dequeue %d; want %q %q %d", got.Body, got.ID, got.DequeueCount, tt.body, tt.id, tt.dequeue)
			}
		})
	}
}

func TestFailurePolicy(t *testing.T) {
	rec := &recorder{}
	h := newServer(rec, zerolog.Nop(), 10*time.Minute).routes()
	cases := []struct {
		name, path, body string
		err              error
		status           int
	}{
		{"not JSON", "/ChunkQueue", "hello", nil, 400},
		{"no Data", "/ChunkQueue", `{"Metadata":{}}`, nil, 400},
		{"wrong binding", "/ChunkQueue", `{"Data":{"other":"\"x\""}}`, nil, 400},
		{"transient app error", "/ChunkQueue", string(fixture(t, "queue_text.json")), errors.New("storage unreachable"), 500},
		{"deadline", "/EnrichTimer", string(fixture(t, "timer.json")), context.DeadlineExceeded, 503},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			rec.err = tt.err
			resp, out := post(t, h, tt.path, []byte(tt.body))
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status != 200 && len(out.Logs) == 0 {
				t.Fatal("a failure carries no log line explaining it")
			}
		})
	}
	rec.err = nil
	if resp, _ := post(t, h, "/NoSuchFunction", []byte(`{}`)); resp.StatusCode != 404 {
		t.Errorf("unknown function answered %d", resp.StatusCode)
	}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("readiness answered %d %q", w.Code, w.Header().Get("Content-Type"))
	}
}

func TestInvocationDeadlineInsideFunctionTimeout(t *testing.T) {
	rec := &recorder{}
	h := newServer(rec, zerolog.Nop(), 2*time.Minute).routes()
	start := time.Now()
	post(t, h, "/ChunkQueue", fixture(t, "queue_text.json"))
	if rec.ctxDL.IsZero() || rec.ctxDL.Sub(start) >= 2*time.Minute || rec.ctxDL.Sub(start) < time.Minute {
		t.Fatalf("invocation deadline %v after start, want inside functionTimeout with a margin", rec.ctxDL.Sub(start))
	}
}

// TestShutdownDrainsInFlight: on SIGTERM (serve's ctx ending) an in-flight invocation is not
// cancelled: its context's stop closes, it hands over, and its answer (with the continuation
// message) still reaches the host before serve returns.
func TestShutdownDrainsInFlight(t *testing.T) {
	started := make(chan struct{})
	fn := funcs{queue: func(ctx context.Context) (Result, error) {
		close(started)
		select {
		case <-ctxutil.StopChan(ctx):
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		return Result{Outputs: map[string][]string{bindChunks: {"continuation"}}}, nil
	}}
	srv := newServer(fn, zerolog.Nop(), time.Minute)
	status, body, served := serveOne(t, srv, func() { <-started })
	if status != http.StatusOK || len(body.Outputs[bindChunks]) != 1 {
		t.Fatalf("in-flight invocation at shutdown: status %d outputs %v, want 200 with the continuation", status, body.Outputs)
	}
	if err := <-served; err != nil {
		t.Fatalf("serve after drain: %v", err)
	}
}

// TestShutdownCancelsWhatDoesNotDrain: an invocation that ignores the stop is cancelled once the
// drain time is up, answers (non-2xx: the host redelivers) and serve returns.
func TestShutdownCancelsWhatDoesNotDrain(t *testing.T) {
	started := make(chan struct{})
	fn := funcs{queue: func(ctx context.Context) (Result, error) {
		close(started)
		<-ctx.Done()
		return Result{}, ctx.Err()
	}}
	srv := newServer(fn, zerolog.Nop(), time.Minute)
	srv.drainFor = 50 * time.Millisecond
	status, _, served := serveOne(t, srv, func() { <-started })
	if status != http.StatusServiceUnavailable {
		t.Fatalf("cancelled invocation answered %d, want 503", status)
	}
	select {
	case <-served:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return after cancelling")
	}
}

// serveOne runs srv on a loopback listener, posts one queue invocation, ends serve's context (what
// SIGTERM does) once inFlight returns, and returns the answer and serve's result channel.
func serveOne(t *testing.T, srv *server, inFlight func()) (int, invokeResponse, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, sigterm := context.WithCancel(context.Background())
	defer sigterm()
	served := make(chan error, 1)
	go func() { served <- srv.serve(ctx, ln) }()
	type answer struct {
		status int
		body   invokeResponse
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := http.Post("http://"+ln.Addr().String()+"/ChunkQueue", "application/json", bytes.NewReader(fixture(t, "queue_text.json")))
		if err != nil {
			done <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		var out invokeResponse
		err = json.NewDecoder(resp.Body).Decode(&out)
		done <- answer{status: resp.StatusCode, body: out, err: err}
	}()
	inFlight()
	sigterm()
	select {
	case a := <-done:
		if a.err != nil {
			t.Fatalf("invocation: %v", a.err)
		}
		return a.status, a.body, served
	case <-time.After(30 * time.Second):
		t.Fatal("in-flight invocation got no answer after shutdown")
	}
	return 0, invokeResponse{}, served
}

type funcs struct {
	queue func(context.Context) (Result, error)
}

func (f funcs) EnrichTimer(context.Context, *Invocation, TimerInfo) (Result, error) {
	return Result{}, nil
}
func (f funcs) ChunkQueue(ctx context.Context, _ *Invocation, _ QueueMessage) (Result, error) {
	return f.queue(ctx)
}

func FuzzDecodeInvocation(f *testing.F) {
	for _, name := range []string{"timer.json", "timer_null_status.json", "queue_json.json", "queue_text.json", "queue_id_shadow.json", "queue_binary.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeRequest(body)
		if err != nil {
			if !errors.Is(err, errBadInvocation) {
				t.Fatalf("error not classified: %v", err)
			}
			return
		}
		_, _ = decodeTimer(req, bindTimer)
		if m, err := decodeQueue(req, bindMessage); err == nil && m.DequeueCount < 0 {
			t.Fatal("negative dequeue count")
		}
	})
}
