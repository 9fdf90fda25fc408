package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/ctxutil"
)

// functions is what the server dispatches to: the app, or a fake in tests.
type functions interface {
	EnrichTimer(ctx context.Context, inv *Invocation, t TimerInfo) (Result, error)
	ChunkQueue(ctx context.Context, inv *Invocation, m QueueMessage) (Result, error)
}

// Trigger binding names, exactly as in the function.json files.
const (
	bindTimer   = "timer"
	bindMessage = "message"
	maxBody     = 4 << 20 // a queue message is at most 64 KiB; a timer payload is tiny
)

// server serves the custom-handler protocol.
type server struct {
	fns     functions
	log     zerolog.Logger
	timeout time.Duration // functionTimeout: each invocation must be done before it

	// draining is closed on shutdown (SIGTERM): every invocation's context carries it as its stop
	// (ctxutil.WithStop), so in-flight work sends nothing new, lets the calls already sent finish,
	// checkpoints and hands on in a continuation message that the host still binds.
	draining  chan struct{}
	drainOnce sync.Once
	base      context.Context // cancelled only if draining takes longer than drainFor
	cancel    context.CancelFunc
	drainFor  time.Duration // drainTimeout; shorter in tests
}

// Shutdown bounds: how long in-flight invocations get to hand over after SIGTERM before they are
// cancelled (they then checkpoint, release their chunks and fail, so the host redelivers), and how
// long after that the server waits before closing the connections. Flex Consumption gives an
// execution up to 60 minutes after scale-in starts; the hand-over itself takes as long as the
// slowest call in flight (ENRICHMENT_TIMEOUT, DVBULK_REQUEST_TIMEOUT bound it).
const (
	drainTimeout  = 2 * time.Minute
	cancelTimeout = 10 * time.Second
)

func newServer(fns functions, log zerolog.Logger, functionTimeout time.Duration) *server {
	s := &server{fns: fns, log: log, timeout: functionTimeout, draining: make(chan struct{}), drainFor: drainTimeout}
	s.base, s.cancel = context.WithCancel(context.Background())
	return s
}

// drain makes every running and later invocation hand over instead of starting new work.
func (s *server) drain() { s.drainOnce.Do(func() { close(s.draining) }) }

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		writeBody(w, http.StatusOK, []byte(`{"status":"ready"}`+"\n"))
	})
	mux.HandleFunc("POST /EnrichTimer", s.invoke("EnrichTimer", func(ctx context.Context, inv *Invocation, req *invokeRequest) (Result, error) {
		t, err := decodeTimer(req, bindTimer)
		if err != nil {
			return Result{}, err
		}
		return s.fns.EnrichTimer(ctx, inv, t)
	}))
	mux.HandleFunc("POST /ChunkQueue", s.invoke("ChunkQueue", func(ctx context.Context, inv *Invocation, req *invokeRequest) (Result, error) {
		m, err := decodeQueue(req, bindMessage)
		if err != nil {
			return Result{}, err
		}
		inv.Log = inv.Log.With().Str("message_id", m.ID).Int("dequeue_count", m.DequeueCount).Logger()
		return s.fns.ChunkQueue(zerolog.Ctx(ctx).With().Str("message_id", m.ID).Logger().WithContext(ctx), inv, m)
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeBody(w, http.StatusNotFound, encodeResponse(Result{Logs: []string{"no function at " + r.URL.Path}}))
	})
	return mux
}

// invocationDeadline leaves a margin inside functionTimeout for the final checkpoint and the answer.
func (s *server) invocationDeadline(now time.Time) time.Time {
	margin := max(s.timeout/10, 5*time.Second)
	margin = min(margin, 60*time.Second)
	if margin >= s.timeout {
		margin = s.timeout / 2
	}
	return now.Add(s.timeout - margin)
}

func (s *server) invoke(name string, call func(context.Context, *Invocation, *invokeRequest) (Result, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Azure-Functions-InvocationId")
		log := s.log.With().Str("invocation_id", id).Str("function", name).Logger()
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err == nil && len(body) > maxBody {
			err = fmt.Errorf("%w: body larger than %d bytes", errBadInvocation, maxBody)
		}
		var req *invokeRequest
		if err == nil {
			req, err = decodeRequest(body)
		}
		if err != nil {
			log.Error().Err(err).Msg("invocation rejected")
			writeBody(w, statusOf(err), encodeResponse(Result{Logs: []string{err.Error()}}))
			return
		}
		inv := &Invocation{ID: id, Function: name, Deadline: s.invocationDeadline(time.Now()), Log: log}
		ctx, cancel := context.WithDeadline(s.base, inv.Deadline)
		defer cancel()
		stop := context.AfterFunc(r.Context(), cancel) // the host gave up on us
		defer stop()
		ctx = ctxutil.WithStop(log.WithContext(ctx), s.draining)
		started := time.Now()
		res, err := call(ctx, inv, req)
		status := statusOf(err)
		ev := log.Info()
		if err != nil {
			ev = log.Warn().Err(err)
			if stopped(ctx, err) {
				ev = log.Info().Err(err) // a stop is not a failure; the work resumes on redelivery
			}
			res.Logs = append(res.Logs, "failed: "+err.Error())
		}
		ev.Int("status", status).Dur("took", time.Since(started)).Int("outputs", countOutputs(res)).Msg("invocation done")
		writeBody(w, status, encodeResponse(res))
	}
}

// statusOf is the one place errors become HTTP statuses. A non-2xx makes the host fail the
// invocation: a queue message is then redelivered (and poisoned after maxDequeueCount).
func statusOf(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, errBadInvocation):
		return http.StatusBadRequest
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

func countOutputs(r Result) int {
	n := 0
	for _, v := range r.Outputs {
		n += len(v)
	}
	return n
}

func writeBody(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// serve answers the host until ctx ends (SIGTERM: the platform scaling in or the host stopping).
// Then it stops accepting connections (Shutdown closes the listener) and drains: in-flight
// invocations finish the calls they have sent, checkpoint and answer with a continuation message,
// so a chunk moves to another instance with nothing paid for twice. Only if that takes longer than
// drainTimeout are they cancelled (checkpoint, release, fail: the host redelivers).
func (s *server) serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.log.Info().Msg("shutting down: in-flight invocations checkpoint and hand over")
	s.drain()
	dctx, cancel := context.WithTimeout(context.Background(), s.drainFor)
	defer cancel()
	err := srv.Shutdown(dctx)
	if err == nil {
		return nil
	}
	s.log.Warn().Dur("after", s.drainFor).Msg("in-flight invocations did not hand over in time: cancelling them")
	s.cancel()
	cctx, cancel2 := context.WithTimeout(context.Background(), cancelTimeout)
	defer cancel2()
	if err := srv.Shutdown(cctx); err != nil {
		return srv.Close()
	}
	return nil
}
