package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/dataverse"
	"dvbulk/internal/job"
	"dvbulk/internal/testutil"
)

// blockingStore holds every read until the caller's context ends, like storage that is slow when
// the host sends SIGTERM.
type blockingStore struct {
	checkpoint.Store
	entered chan struct{}
}

func (b *blockingStore) Get(ctx context.Context, _ string) ([]byte, checkpoint.ETag, error) {
	select {
	case b.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return nil, "", ctx.Err()
}

// A SIGTERM while a chunk waits on storage is a stop, not a failure: the engine's error reaches
// the server still saying "cancelled", so the invocation answers 503 (redeliver) and nothing is
// logged at warn or error level.
func TestStopOnShutdownIsNotLoggedAsAFailure(t *testing.T) {
	var logs testutil.SyncBuffer
	log := zerolog.New(&logs)
	st := &blockingStore{Store: checkpoint.NewMem(), entered: make(chan struct{}, 1)}
	e := &job.Engine{Store: st, Log: log, Instance: "test"}
	e.Init()
	srv := newServer(&functionApp{engine: e, log: log}, log, time.Minute)
	ts := httptest.NewServer(srv.routes())
	defer ts.Close()

	msg := `{"v":1,"kind":"chunk","job":"nightly-enrichment","run":"nightly-enrichment-r1","seq":0,"ids":["0000000a-0000-4000-8000-00000000000a"]}`
	data, _ := json.Marshal(map[string]string{"message": mustJSON(t, msg)})
	body, _ := json.Marshal(map[string]any{"Data": json.RawMessage(data), "Metadata": map[string]string{"DequeueCount": "1", "Id": `"m1"`}})
	done := make(chan int, 1)
	go func() {
		resp, err := http.Post(ts.URL+"/ChunkQueue", "application/json", bytes.NewReader(body))
		if err != nil {
			done <- -1
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	select {
	case <-st.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the chunk never reached the store")
	}
	srv.cancel() // what SIGTERM does
	var code int
	select {
	case code = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the invocation did not end after the stop")
	}
	if code != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503 (a stop: redeliver)", code)
	}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var l struct{ Level string }
		_ = json.Unmarshal([]byte(line), &l)
		if l.Level == "warn" || l.Level == "error" {
			t.Errorf("a stop was logged as a failure: %s", line)
		}
	}
	if !strings.Contains(logs.String(), "context canceled") {
		t.Errorf("the log does not say why the invocation stopped:\n%s", logs.String())
	}
}

func mustJSON(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A Dataverse failure that outlasted the retry budget (its last attempt timed out, so it wraps
// context.DeadlineExceeded) while the invocation is still running is a failure: it is returned so
// the host redelivers, and logged as one.
func TestTransientDataverseFailureIsRedelivered(t *testing.T) {
	var logs testutil.SyncBuffer
	a := &functionApp{log: zerolog.New(&logs)}
	inv := &Invocation{Log: zerolog.New(&logs)}
	attempt := fmt.Errorf("dataverse: query accounts: %w after 9 attempts: %w", dataverse.ErrUnavailable, context.DeadlineExceeded)
	engineErr := fmt.Errorf("%w: read page of accounts: %w", job.ErrTransient, attempt)
	_, err := a.result(context.Background(), inv, job.Result{}, engineErr)
	if err == nil || !errors.Is(err, dataverse.ErrUnavailable) || !errors.Is(err, job.ErrTransient) {
		t.Fatalf("result error %v, want the transient Dataverse failure (a redelivery)", err)
	}
	if !strings.Contains(logs.String(), `"level":"warn"`) {
		t.Errorf("a transient failure was not logged as one:\n%s", logs.String())
	}
	if s := statusOf(err); s < 500 {
		t.Errorf("status %d, want 5xx so the host redelivers", s)
	}
}
