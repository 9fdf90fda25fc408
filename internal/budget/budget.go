// Package budget shares one Dataverse service-protection budget among every instance that uses the
// same application user on the same environment, through the checkpoint store they already meet in.
//
// Dataverse counts its limits per user per web server and advises one x-ms-dop-hint for the user as a
// whole, so N processes that each keep their own throttle send up to N times the hint and each
// discovers a running penalty only by sending into it, which lengthens it. Here one small document per
// (environment, user) holds the cluster's pause ("paused until T", only ever extended, ETag-guarded)
// and the members' heartbeats (short leases); each instance reads it on a short interval and gives its
// Dataverse client the pause and the number of live instances, whose share of the hint becomes that
// client's ceiling. No storage call is made per Dataverse request.
//
// Cost, per active instance, for this state alone: one read per Refresh, one write per Heartbeat, one
// read and one write per local 429 (plus a re-read and rewrite when another instance wrote in
// between). With the defaults (1s, 5s) that is 1.2 operations per second. An instance whose client
// sent nothing for Idle makes none; its next request first refreshes the view once.
//
// Degraded mode: when the store cannot be read the view keeps its last known instance count (so the
// ceiling stays at hint/that count) and its pause, the client's local gate keeps working, one warning
// is logged, and the first successful read logs the recovery.
package budget

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/checkpoint"
)

// Config configures a Shared budget. Zero durations take the defaults noted.
type Config struct {
	Store checkpoint.Store
	// Environment and User key the budget: the Dataverse host and the application user (client id).
	Environment, User string
	// Instance names this process among the members; unique per process.
	Instance string
	// Refresh is how often an active instance reads the shared state (default 1s).
	Refresh time.Duration
	// Heartbeat is how often it renews its membership; a member whose lease (3 heartbeats) ran out
	// no longer takes a share (default 5s).
	Heartbeat time.Duration
	// Skew is added to a pause another instance published, so a clock that runs ahead by up to Skew
	// cannot send early (default 2s).
	Skew time.Duration
	// Idle is the quiet spell after which the instance stops reading and writing the state (default 30s).
	Idle time.Duration
	Log  zerolog.Logger
}

const (
	defaultRefresh   = time.Second
	defaultHeartbeat = 5 * time.Second
	defaultSkew      = 2 * time.Second
	defaultIdle      = 30 * time.Second
	// syncTimeout bounds the refresh a request waits for after a quiet spell.
	syncTimeout = 2 * time.Second
	// writeAttempts bounds one write's read-modify-write retries when other instances write between.
	writeAttempts = 4
)

// Stats counts the storage operations made for the shared state.
type Stats struct {
	Reads, Writes, Conflicts, Failures int64
	Degraded                           bool
	Instances                          int
}

// Shared is one instance's view of the cluster's budget. Run keeps it fresh; View and Throttled are
// what the Dataverse client calls.
type Shared struct {
	cfg   Config
	name  string
	nonce string
	kick  chan struct{} // asks Run for a refresh now

	mu        sync.Mutex
	view      view
	viewAt    time.Time // when the last successful read ended
	viewFrom  time.Time // when it started: the view holds everything published before then
	lastUse   time.Time
	pending   time.Time // a pause to publish, not yet in the document
	beatUntil time.Time // our lease's end in the document
	known     int       // last known live instances
	degraded  bool
	synced    chan struct{} // closed and replaced after every refresh attempt
	stats     Stats
}

type view struct {
	pausedUntil time.Time
	instances   int
}

// document is the stored state. Times are UTC with nanoseconds; Nonce makes every write's bytes
// unique, as checkpoint.Store asks for ambiguous-write detection.
type document struct {
	Version     int                  `json:"v"`
	PausedUntil time.Time            `json:"pausedUntil,omitzero"`
	PausedBy    string               `json:"pausedBy,omitempty"`
	Members     map[string]time.Time `json:"members"`
	Nonce       string               `json:"nonce"`
}

// New validates cfg. It performs no I/O.
func New(cfg Config) (*Shared, error) {
	if cfg.Store == nil {
		return nil, errors.New("budget: no store")
	}
	if cfg.Environment == "" || cfg.User == "" || cfg.Instance == "" {
		return nil, errors.New("budget: environment, user and instance are required")
	}
	def := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&cfg.Refresh, defaultRefresh)
	def(&cfg.Heartbeat, defaultHeartbeat)
	def(&cfg.Idle, defaultIdle)
	if cfg.Skew < 0 {
		return nil, errors.New("budget: negative skew margin")
	}
	if cfg.Skew == 0 {
		cfg.Skew = defaultSkew
	}
	name := "budget/" + segment(cfg.Environment) + "/" + segment(cfg.User) + ".json"
	if err := checkpoint.ValidName(name); err != nil {
		return nil, fmt.Errorf("budget: %w", err)
	}
	s := &Shared{cfg: cfg, name: name, nonce: randomHex(8), kick: make(chan struct{}, 1), known: 1,
		synced: make(chan struct{}), view: view{instances: 1}}
	s.cfg.Log = cfg.Log.With().Str("component", "budget").Logger()
	return s, nil
}

// Name is the store document that holds the state.
func (s *Shared) Name() string { return s.name }

// segment keeps a name segment to characters every store accepts, escaping the rest (%xx).
func segment(v string) string {
	var b strings.Builder
	for _, c := range []byte(strings.ToLower(v)) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02x", c)
		}
	}
	return b.String()
}

// View returns the cluster's pause (the skew margin already added to others' pauses) and the number
// of live instances sharing the budget (at least 1). In steady state it answers from memory. With a
// non-zero fresh it waits for a read that started at least one refresh interval after fresh (reads
// keep their own pace).
// After a quiet spell it asks for a read at once and waits for it. Waits are bounded by ctx and a
// short timeout; while the store is unreachable it answers the last known state at once.
func (s *Shared) View(ctx context.Context, fresh time.Time) (time.Time, int) {
	now := time.Now()
	s.mu.Lock()
	// Stale means a quiet spell (or no read yet), not a slow read: Run bounds every read, and a
	// failed one enters degraded mode, which answers at once.
	stale := !s.degraded && (s.viewAt.IsZero() || now.Sub(s.lastUse) > s.cfg.Idle)
	s.lastUse = now
	s.mu.Unlock()
	if stale {
		s.poke()
	}
	var timeout <-chan time.Time
	for {
		s.mu.Lock()
		// "Fresh" means a read that started a refresh interval after fresh: long enough for a pause
		// another instance was told about at about the same moment to have been published.
		ok := s.degraded || !stale && (fresh.IsZero() || s.viewFrom.After(fresh.Add(s.cfg.Refresh)))
		until, n, ch := s.view.pausedUntil, s.view.instances, s.synced
		s.mu.Unlock()
		if ok {
			return until, n
		}
		if timeout == nil {
			t := time.NewTimer(syncTimeout)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-ch:
			stale = false
		case <-ctx.Done():
			return until, n
		case <-timeout:
			return until, n
		}
	}
}

// Throttled publishes a pause the server asked for. It returns at once; Run writes it.
func (s *Shared) Throttled(until time.Time) {
	s.mu.Lock()
	if until.After(s.pending) {
		s.pending = until
	}
	s.mu.Unlock()
	s.poke()
}

func (s *Shared) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Stats returns the operation counts so far.
func (s *Shared) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Degraded, st.Instances = s.degraded, s.view.instances
	return st
}

// Run keeps the view fresh until ctx ends: a refresh every Refresh while the client is active, at
// once when a 429 is to be published or a request waits after a quiet spell. On the way out it
// gives its share back (removes its membership), bounded by a short timeout.
func (s *Shared) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.leave()
			return ctx.Err()
		case <-t.C:
			if s.idle() {
				continue
			}
		case <-s.kick:
		}
		s.refresh(ctx)
	}
}

func (s *Shared) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Since(s.lastUse) > s.cfg.Idle && s.pending.IsZero()
}

// refresh reads the document, applies it, and writes when a pause is to be published or the
// heartbeat is due.
func (s *Shared) refresh(ctx context.Context) {
	defer s.signal()
	// A store that hangs (retrying a refused connection) must count as unreachable, not stall the view.
	ctx, cancel := context.WithTimeout(ctx, max(syncTimeout, 2*s.cfg.Refresh))
	defer cancel()
	for attempt := 0; attempt < writeAttempts; attempt++ {
		start := time.Now()
		doc, etag, err := s.read(ctx)
		if err != nil {
			s.fail(err)
			return
		}
		s.apply(doc, start)
		next, write := s.merge(doc)
		if !write {
			return
		}
		err = s.write(ctx, next, etag)
		switch {
		case err == nil:
			if next.PausedBy == s.cfg.Instance && !next.PausedUntil.Equal(doc.PausedUntil) {
				s.cfg.Log.Debug().Time("until", next.PausedUntil).Msg("shared pause published")
			}
			s.wrote(next)
			return
		case errors.Is(err, checkpoint.ErrConflict), errors.Is(err, checkpoint.ErrNotFound):
			s.count(func(st *Stats) { st.Conflicts++ })
			continue // someone wrote in between: merge into theirs
		default:
			s.fail(err)
			return
		}
	}
}

func (s *Shared) read(ctx context.Context) (*document, checkpoint.ETag, error) {
	s.count(func(st *Stats) { st.Reads++ })
	data, etag, err := s.cfg.Store.Get(ctx, s.name)
	if errors.Is(err, checkpoint.ErrNotFound) {
		return &document{Version: 1, Members: map[string]time.Time{}}, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	var doc document
	if err := json.Unmarshal(data, &doc); err != nil || doc.Version != 1 {
		// A document this build cannot read is replaced rather than trusted or left to block every
		// instance; the next write carries the pause and the members again.
		s.cfg.Log.Warn().Str("doc", s.name).Msg("shared service-protection state unreadable; rewriting it")
		return &document{Version: 1, Members: map[string]time.Time{}}, etag, nil
	}
	if doc.Members == nil {
		doc.Members = map[string]time.Time{}
	}
	return &doc, etag, nil
}

func (s *Shared) write(ctx context.Context, doc *document, etag checkpoint.ETag) error {
	s.count(func(st *Stats) { st.Writes++ })
	doc.Nonce = randomHex(8)
	data, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	if etag == "" {
		_, err = s.cfg.Store.Create(ctx, s.name, data)
	} else {
		_, err = s.cfg.Store.Update(ctx, s.name, data, etag)
	}
	return err
}

// apply turns a document into the view: others' pauses get the skew margin, members whose lease
// ran out do not count, this instance always does.
func (s *Shared) apply(doc *document, readStart time.Time) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.degraded {
		s.degraded = false
		s.cfg.Log.Info().Int("instances", s.known).Msg("shared service-protection state readable again; sharing the budget")
	}
	n := 1
	for id, until := range doc.Members {
		if id != s.cfg.Instance && until.After(now) {
			n++
		}
	}
	pause := doc.PausedUntil
	if !pause.IsZero() && doc.PausedBy != s.cfg.Instance {
		pause = pause.Add(s.cfg.Skew)
	}
	if pause.After(s.view.pausedUntil) || s.view.pausedUntil.Before(now) {
		if pause.After(now) && !pause.Equal(s.view.pausedUntil) {
			s.cfg.Log.Debug().Str("by", doc.PausedBy).Time("until", pause).Msg("shared pause seen")
		}
		s.view.pausedUntil = pause
	}
	s.view.instances, s.known = n, n
	s.viewAt, s.viewFrom = now, readStart
	if own, ok := doc.Members[s.cfg.Instance]; ok && own.After(s.beatUntil) {
		s.beatUntil = own
	}
	if !s.pending.IsZero() && !s.pending.After(doc.PausedUntil) {
		s.pending = time.Time{} // someone published this pause or a longer one
	}
}

// merge returns the document to write, if a write is due: a pause longer than the stored one, or a
// heartbeat (our lease has less than two heartbeats left). Expired members are dropped on the way.
func (s *Shared) merge(doc *document) (*document, bool) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	publish := s.pending.After(doc.PausedUntil)
	own, member := doc.Members[s.cfg.Instance]
	beat := !member || own.Before(now.Add(2*s.cfg.Heartbeat))
	if !publish && !beat {
		return nil, false
	}
	next := &document{Version: 1, PausedUntil: doc.PausedUntil, PausedBy: doc.PausedBy, Members: map[string]time.Time{}}
	for id, until := range doc.Members {
		if until.Add(s.cfg.Skew).After(now) {
			next.Members[id] = until
		}
	}
	next.Members[s.cfg.Instance] = now.Add(3 * s.cfg.Heartbeat).UTC()
	if publish {
		next.PausedUntil, next.PausedBy = s.pending.UTC(), s.cfg.Instance
	}
	return next, true
}

func (s *Shared) wrote(doc *document) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.beatUntil = doc.Members[s.cfg.Instance]
	if !s.pending.After(doc.PausedUntil) {
		s.pending = time.Time{}
	}
}

// fail enters degraded mode (logged once): the view keeps the last known state.
func (s *Shared) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Failures++
	if !s.degraded {
		s.degraded = true
		s.cfg.Log.Warn().Err(err).Int("instances", s.known).
			Msg("shared service-protection state unreachable; throttling locally with the last known instance count's share of the hint")
	}
	s.view.instances = max(s.view.instances, s.known)
}

func (s *Shared) signal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.synced)
	s.synced = make(chan struct{})
}

func (s *Shared) count(f func(*Stats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

// leave removes this instance's membership so its share returns to the others at their next read.
func (s *Shared) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
	defer cancel()
	for attempt := 0; attempt < writeAttempts; attempt++ {
		data, etag, err := s.cfg.Store.Get(ctx, s.name)
		if err != nil {
			return
		}
		var doc document
		if json.Unmarshal(data, &doc) != nil {
			return
		}
		if _, ok := doc.Members[s.cfg.Instance]; !ok {
			return
		}
		delete(doc.Members, s.cfg.Instance)
		if err := s.write(ctx, &doc, etag); !errors.Is(err, checkpoint.ErrConflict) {
			return
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
