package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/dataverse"
	"dvbulk/internal/enrich"
	"dvbulk/internal/ledger"
	"dvbulk/internal/pipeline"
)

// Dataverse is what the engine needs from the Dataverse client.
type Dataverse interface {
	QueryPage(ctx context.Context, q dataverse.Query, nextLink string) (dataverse.Page, error)
	GetByIDs(ctx context.Context, t dataverse.Table, ids []string, sel []string) ([]dataverse.Record, error)
	pipeline.Writer
	pipeline.Actor
}

// Enricher is what the engine needs from the enrichment adapter.
type Enricher interface {
	Enrich(ctx context.Context, recs []enrich.Record) ([]enrich.Result, error)
}

// Options tune the engine; zero values take the defaults noted.
type Options struct {
	Lease         time.Duration // chunk ownership lease (DefaultLease); renewed by every checkpoint write
	FlushInterval time.Duration // how often a running chunk writes its checkpoint (DefaultFlushInterval)
	StaleAfter    time.Duration // a run with no progress for this long is taken over by the next start (DefaultStaleAfter)
	PlanPages     int           // pages read per planning step before continuing in a new message (DefaultPlanPages: a step's chunks are queued only when it returns)
	MaxDequeue    int           // the host's maxDequeueCount (DefaultMaxDequeue): the last delivery dead-letters
	YieldMargin   time.Duration // stop this long before the invocation deadline to checkpoint and yield (15s)
	WaitPoll      time.Duration // how often a duplicate delivery re-reads an owned chunk (1s)
	ChunkSize     int           // overrides the spec's chunk size when > 0
	DryRun        bool          // force every run started by this engine to be a dry run
	ImportPrefix  string        // an import's source must be a blob name under this prefix ("" = anywhere in the container)
	// Rules decide which records of an incremental job are sent (the zero value sends every record
	// but still keeps the ledger; the settings default to 720h and 168h).
	Rules ledger.Rules
	// NoChangeTracking pages the table even where it tracks changes.
	NoChangeTracking bool

	// TransformBatch and TransformWorkers size an enrich chunk's transform stage: records per
	// call group and groups at once. Zero derives both from the enricher's limits (its records
	// per request now, its concurrency ceiling), so that one chunk can fill the instance.
	TransformBatch   int
	TransformWorkers int
	WriteWorkers     int // concurrent write requests per chunk
}

// Defaults of Options, also the defaults of the app settings DVBULK_LEASE, DVBULK_FLUSH_INTERVAL,
// DVBULK_STALE_AFTER and DVBULK_PLAN_PAGES; DefaultMaxDequeue is the Functions host's own default of
// maxDequeueCount.
const (
	DefaultLease         = 60 * time.Second
	DefaultFlushInterval = time.Second
	DefaultStaleAfter    = 30 * time.Minute
	DefaultPlanPages     = 1
	DefaultMaxDequeue    = 5
)

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Lease, DefaultLease)
	def(&o.FlushInterval, DefaultFlushInterval)
	def(&o.StaleAfter, DefaultStaleAfter)
	def(&o.YieldMargin, 15*time.Second)
	def(&o.WaitPoll, time.Second)
	if o.PlanPages <= 0 {
		o.PlanPages = DefaultPlanPages
	}
	if o.MaxDequeue <= 0 {
		o.MaxDequeue = DefaultMaxDequeue
	}
}

// Engine plans runs and processes chunks. One engine per process: chunks processed concurrently share
// its Dataverse client and so one throttle state.
type Engine struct {
	Store    checkpoint.Store
	DV       Dataverse
	Enricher Enricher     // nil when no enrich job is configured
	Imports  ImportSource // nil when import jobs are not configured
	Instance string       // identifies this process in ownership records
	Log      zerolog.Logger
	Opt      Options
	Now      func() time.Time
	// Observer, when set, is told about records, chunks and planning steps (telemetry).
	Observer Observer
	// OnComplete, when set, runs after this worker wrote a run's summary (the run report).
	OnComplete func(ctx context.Context, run string) error
	Jobs       *Catalog // the jobs a start message may name; nil = the built-in ones

	ignored sync.Map // property names of chunk and plan messages already logged as ignored
}

// Result is what an invocation hands back to the host: messages for the chunk queue, dead letters,
// and short log lines.
type Result struct {
	Enqueue    []string
	DeadLetter []string
	Logs       []string
}

func (r *Result) logf(format string, a ...any) { r.Logs = append(r.Logs, fmt.Sprintf(format, a...)) }

// Delivery describes how a queue message arrived.
type Delivery struct {
	DequeueCount int
	MessageID    string
}

// yieldMargin is how long before ctx's deadline work stops to checkpoint and hand on: YieldMargin,
// but at most a quarter of the time left, so a short invocation budget (a small functionTimeout)
// still gets most of its time for work instead of yielding at once, over and over.
func (e *Engine) yieldMargin(ctx context.Context) time.Duration {
	dl, ok := ctx.Deadline()
	if !ok {
		return e.Opt.YieldMargin
	}
	return min(e.Opt.YieldMargin, time.Until(dl)/4)
}

// ErrTransient wraps failures worth a redelivery (storage or Dataverse unreachable).
var ErrTransient = errors.New("job: transient failure")

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) catalog() *Catalog {
	if e.Jobs != nil {
		return e.Jobs
	}
	return builtinCatalog
}

var builtinCatalog = Builtins()

// Init applies option defaults; call it once before use.
func (e *Engine) Init() {
	e.Opt.defaults()
	if e.Instance == "" {
		e.Instance = "instance-" + nonce()
	}
}

// Handle processes one chunk-queue message. A message that can never be processed yields a dead
// letter and no error (so the host does not retry it five times for nothing); transient failures
// return an error so the host redelivers.
func (e *Engine) Handle(ctx context.Context, body []byte, d Delivery) (Result, error) {
	m, err := DecodeMessage(body)
	if err != nil {
		return e.deadLetter(body, d, err), nil
	}
	base := e.Log
	if l := zerolog.Ctx(ctx); l.GetLevel() != zerolog.Disabled {
		base = *l // the invocation's logger: keeps invocation_id and function
	}
	log := base.With().Str("run", m.Run).Str("job", m.Job).Str("kind", string(m.Kind)).Logger()
	ctx = log.WithContext(ctx)
	for _, p := range m.Ignored {
		if _, seen := e.ignored.LoadOrStore(p, true); !seen {
			log.Debug().Str("property", p).Msg("message property unknown to this build ignored (a newer build's?); logged once per property")
		}
	}
	var res Result
	switch m.Kind {
	case KindStart:
		spec, lerr := e.catalog().Lookup(m.Job)
		if lerr != nil {
			return e.deadLetter(body, d, &BadMessageError{Reason: lerr.Error()}), nil
		}
		res, err = e.Start(ctx, spec, StartOptions{Run: m.Run, DryRun: m.DryRun, Full: m.Full, RerunOf: m.RerunOf, Source: m.Source, Trigger: "queue", At: e.now()})
	case KindPlan:
		res, err = e.planStep(ctx, m.Run, m.Cursor, m.Seq, e.Opt.PlanPages)
	case KindChunk:
		res, err = e.processChunk(ctx, m, d)
	}
	if IsBadMessage(err) {
		return e.deadLetter(body, d, err), nil
	}
	return res, err
}

// DeadLetter is the body written to the dead-letter queue.
type DeadLetter struct {
	Reason       string    `json:"reason"`
	Message      string    `json:"message"`
	MessageID    string    `json:"messageId,omitempty"`
	DequeueCount int       `json:"dequeueCount"`
	At           time.Time `json:"at"`
}

func (e *Engine) deadLetter(body []byte, d Delivery, err error) Result {
	msg := string(body)
	if len(msg) > 16*1024 {
		msg = msg[:16*1024] + "...(truncated)"
	}
	data, _ := json.Marshal(DeadLetter{Reason: err.Error(), Message: msg, MessageID: d.MessageID, DequeueCount: d.DequeueCount, At: e.now().UTC()})
	e.Log.Warn().Str("message_id", d.MessageID).Str("reason", err.Error()).Msg("message dead-lettered")
	return Result{DeadLetter: []string{string(data)}, Logs: []string{"dead-lettered: " + err.Error()}}
}
