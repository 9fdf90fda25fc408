package job

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"time"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/ctxutil"
	"dvbulk/internal/pipeline"
)

// RunState is where a run is (the manifest's state).
type RunState string

// Run states.
const (
	RunPlanning   RunState = "planning"
	RunProcessing RunState = "processing"
	RunDone       RunState = "done"
)

// ChunkState is where a chunk is (its checkpoint's state).
type ChunkState string

// Chunk states.
const (
	ChunkPending      ChunkState = "pending"
	ChunkDone         ChunkState = "done"
	ChunkDeadLettered ChunkState = "deadlettered"
)

// Checkpoint document names. Everything of a run lives under runs/<run>/.
func activeName(job string) string         { return "jobs/" + job + "/active.json" }
func manifestName(run string) string       { return "runs/" + run + "/manifest.json" }
func progressName(run string) string       { return "runs/" + run + "/progress.json" }
func summaryName(run string) string        { return "runs/" + run + "/summary.json" }
func chunkPrefix(run string) string        { return "runs/" + run + "/chunks/" }
func chunkName(run string, seq int) string { return fmt.Sprintf("%s%06d.json", chunkPrefix(run), seq) }

// importActiveName is the active-run marker of one version of an import's source.
func importActiveName(job, source, version string) string {
	h := sha256.Sum256([]byte(source + "\x00" + version))
	return "jobs/" + job + "/imports/" + hex.EncodeToString(h[:8]) + "/active.json"
}

// activeDoc is the active-run marker the run holds.
func (m *Manifest) activeDoc() string {
	if m.Source != "" {
		return importActiveName(m.Job, m.Source, m.SourceVersion)
	}
	return activeName(m.Job)
}

// Active marks the run currently active for a job, so a second timer tick does not start another.
type Active struct {
	Run    string    `json:"run"`
	Since  time.Time `json:"since"`
	Writer string    `json:"w"`
}

// Manifest describes a run: its job (a snapshot of the spec), how far planning has got, and its state.
type Manifest struct {
	Run     string   `json:"run"`
	Job     string   `json:"job"`
	Spec    *Spec    `json:"spec"`
	DryRun  bool     `json:"dryRun,omitempty"`
	RerunOf string   `json:"rerunOf,omitempty"`
	Trigger string   `json:"trigger"`
	State   RunState `json:"state"`

	Cursor         string `json:"cursor,omitempty"` // where the next planning step starts
	NextSeq        int    `json:"nextSeq"`          // the next chunk's sequence number
	PlannedRecords int    `json:"plannedRecords"`
	PlanningDone   bool   `json:"planningDone"`
	// Incremental runs consult and keep the job's fingerprint ledger; Full makes every record
	// eligible (the ledger is still updated); Fresh counts the records planned as fresh (not sent,
	// not written, in no chunk).
	Incremental bool `json:"incremental,omitempty"`
	Full        bool `json:"full,omitempty"`
	Fresh       int  `json:"fresh,omitempty"`
	// Tracking is how the run reads the table: "" pages it with the job's filter; "full" is a
	// change-tracking read of every row (it yields the first delta link); "delta" first scans the
	// ledger for the records due whatever their inputs, then reads the changes since DeltaFrom. DeltaNext is the link a
	// completed run keeps for the next one.
	Tracking  string `json:"tracking,omitempty"`
	DeltaFrom string `json:"deltaFrom,omitempty"`
	DeltaNext string `json:"deltaNext,omitempty"`
	// DeltaFailed says the delta link failed and the run read the whole table instead.
	DeltaFailed bool `json:"deltaFailed,omitempty"`

	// An import's source blob, its version when the run started, the CSV header (a chunk of
	// planning resumes mid-file without it), and why planning stopped early if the rest of the
	// file was unreadable.
	Source        string   `json:"source,omitempty"`
	SourceVersion string   `json:"sourceVersion,omitempty"`
	Header        []string `json:"header,omitempty"`
	PlanError     string   `json:"planError,omitempty"`

	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	Writer  string    `json:"w"`
}

// Record is one record's state inside a chunk checkpoint.
type Record struct {
	ID      string         `json:"id"`
	Row     int64          `json:"row,omitempty"`  // an imported record's number in its file
	Line    int64          `json:"line,omitempty"` // and the line it starts on
	ETag    string         `json:"etag,omitempty"`
	Current map[string]any `json:"cur,omitempty"`
	// Fields are transform results not yet written: a retry writes them without a second call.
	Fields  map[string]any   `json:"fields,omitempty"`
	Outcome pipeline.Outcome `json:"outcome,omitempty"` // "" while pending
	Reason  string           `json:"reason,omitempty"`
	Changed map[string]any   `json:"changed,omitempty"` // what was (or, in a dry run, would be) written
	// FP is the fingerprint (hex) of the job version and the inputs as planned, recorded in the
	// ledger once the outcome is durable; "" when the run does not keep the ledger.
	FP string `json:"fp,omitempty"`
}

// Chunk is the checkpoint of one chunk: its records with their outcomes, and who owns it.
type Chunk struct {
	Run      string     `json:"run"`
	Seq      int        `json:"seq"`
	State    ChunkState `json:"state"`
	Owner    string     `json:"owner,omitempty"`
	Lease    time.Time  `json:"lease,omitempty"` // the owner's claim expires then
	Attempts int        `json:"attempts"`
	Reason   string     `json:"reason,omitempty"` // why it was dead-lettered
	Records  []Record   `json:"records"`
	Stats    Stats      `json:"stats"`
	Updated  time.Time  `json:"updated"`
	Writer   string     `json:"w"`
}

// Stats are per-chunk counters that add up into the run summary.
type Stats struct {
	Transformed     int   `json:"transformed,omitempty"` // records the transform answered for (enrichment results)
	DroppedFields   int   `json:"droppedFields,omitempty"`
	Throttled       int64 `json:"throttled,omitempty"`
	Retries         int64 `json:"retries,omitempty"`
	ProcessingMilli int64 `json:"processingMs,omitempty"`
}

func (s *Stats) add(o Stats) {
	s.Transformed += o.Transformed
	s.DroppedFields += o.DroppedFields
	s.Throttled += o.Throttled
	s.Retries += o.Retries
	s.ProcessingMilli += o.ProcessingMilli
}

// Progress counts finished chunks of a run; each chunk is counted once however often it finishes.
type Progress struct {
	Run          string                   `json:"run"`
	DoneBits     []byte                   `json:"done"` // bit seq set once chunk seq has finished
	Chunks       int                      `json:"chunks"`
	Records      int                      `json:"records"`
	Outcomes     map[pipeline.Outcome]int `json:"outcomes"`
	DeadLettered []string                 `json:"deadLettered,omitempty"`
	// Stats sums the finished chunks' stats; Notable lists the chunks with a record the summary
	// names (failed, skipped, would-update) or that were dead-lettered, so completing a run reads
	// only those chunks back, not all of them.
	Stats   Stats     `json:"stats"`
	Notable []int     `json:"notable,omitempty"`
	Updated time.Time `json:"updated"`
	Writer  string    `json:"w"`
}

func (p *Progress) has(seq int) bool {
	i := seq / 8
	return i < len(p.DoneBits) && p.DoneBits[i]&(1<<(seq%8)) != 0
}

func (p *Progress) set(seq int) {
	for len(p.DoneBits) <= seq/8 {
		p.DoneBits = append(p.DoneBits, 0)
	}
	p.DoneBits[seq/8] |= 1 << (seq % 8)
}

func (p *Progress) count() int {
	n := 0
	for _, b := range p.DoneBits {
		n += bits.OnesCount8(b)
	}
	return n
}

// nonce returns a fresh writer id. Every document carries one, so identical bytes imply the same
// writer and the store can resolve an ambiguous write (answer lost, retry sees a conflict).
func nonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// errNoChange lets a mutate function of modify say that nothing needs writing.
var errNoChange = errors.New("job: no change")

// load reads and decodes a document.
func load[T any](ctx context.Context, st checkpoint.Store, name string) (*T, checkpoint.ETag, error) {
	data, etag, err := st.Get(ctx, name)
	if err != nil {
		return nil, "", err
	}
	v := new(T)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // column values keep their integer-ness
	if err := dec.Decode(v); err != nil {
		return nil, "", fmt.Errorf("job: decode %s: %w", name, err)
	}
	return v, etag, nil
}

// create writes a new document; checkpoint.ErrConflict means it already exists.
func create(ctx context.Context, st checkpoint.Store, name string, v any) (checkpoint.ETag, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("job: encode %s: %w", name, err)
	}
	return st.Create(ctx, name, data)
}

// save replaces a document if it still has the given ETag.
func save(ctx context.Context, st checkpoint.Store, name string, v any, match checkpoint.ETag) (checkpoint.ETag, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("job: encode %s: %w", name, err)
	}
	return st.Update(ctx, name, data, match)
}

// modify applies mutate to a document with optimistic concurrency, retrying on conflicts. mutate sees
// nil when the document does not exist yet (and must then return a new one). Returning errNoChange
// leaves the document as it is.
func modify[T any](ctx context.Context, st checkpoint.Store, name string, mutate func(*T) (*T, error)) (*T, error) {
	for attempt := 0; ; attempt++ {
		cur, etag, err := load[T](ctx, st, name)
		if err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
			return nil, err
		}
		next, err := mutate(cur)
		if errors.Is(err, errNoChange) {
			return cur, nil
		}
		if err != nil {
			return nil, err
		}
		if cur == nil {
			_, err = create(ctx, st, name, next)
		} else {
			_, err = save(ctx, st, name, next, etag)
		}
		if err == nil {
			return next, nil
		}
		if !errors.Is(err, checkpoint.ErrConflict) || attempt >= 50 {
			return nil, fmt.Errorf("job: update %s: %w", name, err)
		}
		if err := ctxutil.Sleep(ctx, time.Duration(1+attempt)*5*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// DecodeChunk parses a chunk checkpoint document (for tools and tests that inspect a store).
func DecodeChunk(data []byte) (*Chunk, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var ch Chunk
	if err := dec.Decode(&ch); err != nil {
		return nil, fmt.Errorf("job: decode chunk: %w", err)
	}
	return &ch, nil
}
