package job

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"dvbulk/internal/dataverse"
	"dvbulk/internal/pipeline"
)

// Column types a job may declare. They drive validation of transform output before anything is
// written, and type-checking of recalculation expressions at load time.
const (
	TypeString  = pipeline.TypeString
	TypeInt     = pipeline.TypeInt
	TypeDecimal = pipeline.TypeDecimal
	TypeBool    = pipeline.TypeBool
	TypeGUID    = pipeline.TypeGUID
)

// TransformKind says how a job computes what it writes.
type TransformKind string

// Transform kinds.
const (
	KindEnrich      TransformKind = "enrich"
	KindRecalculate TransformKind = "recalculate"
	KindAction      TransformKind = "action"
)

// Spec is a job definition. It is plain JSON so operators configure jobs without recompiling.
type Spec struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Table       Table             `json:"table"`
	Filter      string            `json:"filter,omitempty"`
	Columns     map[string]string `json:"columns"`  // logical name -> type, for every input and writable column
	Input       []string          `json:"input"`    // columns the transform reads
	Writable    []string          `json:"writable"` // allow-list: nothing else is ever written
	Transform   Transform         `json:"transform"`
	Write       Write             `json:"write"`
	Import      *ImportSpec       `json:"import,omitempty"` // an import job's file and mapping
	ChunkSize   int               `json:"chunkSize,omitempty"`
	PageSize    int               `json:"pageSize,omitempty"`
	// Incremental makes a recalculate job recompute only records whose inputs changed since they were
	// last recomputed (enrich jobs are always incremental; see internal/ledger).
	Incremental bool `json:"incremental,omitempty"`
}

// Table names the Dataverse table a job runs over.
type Table struct {
	EntitySet   string `json:"entitySet"`
	LogicalName string `json:"logicalName"`
	Key         string `json:"key"`
}

// Transform says how new column values are computed.
type Transform struct {
	Kind TransformKind `json:"kind"`
	// Set maps a writable column to an expression over the record's columns (recalculate).
	Set map[string]string `json:"set,omitempty"`
	// Action is the bound action or Custom API called per record (action).
	Action string `json:"action,omitempty"`
	// Parameters are passed to the action as its JSON body (action).
	Parameters map[string]any `json:"parameters,omitempty"`
}

// Write holds the write options of a job.
type Write struct {
	Mode      string `json:"mode,omitempty"`      // bulk (UpdateMultiple, falls back to $batch), batch, single
	BatchSize int    `json:"batchSize,omitempty"` // records per bulk or $batch request
	// Concurrency is "none" (If-Match: *, never create) or "etag" (If-Match: <etag read at planning>,
	// so a record edited by someone else since is not overwritten blindly).
	Concurrency                string `json:"concurrency,omitempty"`
	BypassBusinessLogic        string `json:"bypassBusinessLogic,omitempty"`
	BypassCustomPlugins        bool   `json:"bypassCustomPlugins,omitempty"`
	SuppressDuplicateDetection *bool  `json:"suppressDuplicateDetection,omitempty"`
}

// Limits of the knobs a spec may set.
const (
	DefaultChunkSize = 500  // a job's chunkSize when it does not say
	MaxChunkSize     = 1000 // 1000 GUIDs fit a 64 KiB queue message after base64 with room to spare
	MaxPageSize      = 5000 // Dataverse's maximum odata.maxpagesize
	MaxBatchSize     = 1000 // Dataverse's default $batch limit
)

var (
	identRE  = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,99}$`)
	jobRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	actionRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]{0,127}$`)
	bypassRE = regexp.MustCompile(`^(CustomSync|CustomAsync)(,(CustomSync|CustomAsync))?$`)
)

// FieldError is a validation failure that names the offending field of a job spec.
type FieldError struct {
	Job, Field, Problem string
}

func (e *FieldError) Error() string {
	if e.Job == "" {
		return fmt.Sprintf("job: %s: %s", e.Field, e.Problem)
	}
	return fmt.Sprintf("job %q: %s: %s", e.Job, e.Field, e.Problem)
}

// ErrUnknownJob is returned by Lookup for a name that is neither built in nor a readable file.
var ErrUnknownJob = errors.New("job: unknown job")

// Parse decodes and validates a spec, rejecting unknown fields so a typo is not silently ignored.
func Parse(data []byte) (*Spec, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s Spec
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("job: decode spec: %w", err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Lookup returns the built-in job of that name, or loads the spec from a JSON file when ref ends in
// ".json".
func Lookup(ref string) (*Spec, error) {
	if strings.HasSuffix(ref, ".json") {
		data, err := os.ReadFile(ref)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnknownJob, err)
		}
		return Parse(data)
	}
	raw, ok := builtins[ref]
	if !ok {
		return nil, fmt.Errorf("%w %q (built in: %s; or a path to a .json spec)", ErrUnknownJob, ref, strings.Join(BuiltinNames(), ", "))
	}
	return Parse([]byte(raw))
}

// BuiltinNames lists the jobs shipped in the binary.
func BuiltinNames() []string {
	names := make([]string, 0, len(builtins))
	for n := range builtins {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Validate applies defaults and checks every field, naming the first that is wrong.
func (s *Spec) Validate() error {
	bad := func(field, format string, a ...any) error {
		return &FieldError{Job: s.Name, Field: field, Problem: fmt.Sprintf(format, a...)}
	}
	if !jobRE.MatchString(s.Name) {
		return bad("name", "must be 1-63 lowercase letters, digits or '-', got %q", s.Name)
	}
	if !identRE.MatchString(s.Table.EntitySet) {
		return bad("table.entitySet", "must be a Dataverse entity set name, got %q", s.Table.EntitySet)
	}
	if !identRE.MatchString(s.Table.LogicalName) {
		return bad("table.logicalName", "must be a Dataverse logical name, got %q", s.Table.LogicalName)
	}
	if !identRE.MatchString(s.Table.Key) {
		return bad("table.key", "must be the table's primary key column, got %q", s.Table.Key)
	}
	if len(s.Filter) > 4096 {
		return bad("filter", "longer than 4096 characters")
	}
	if i := strings.IndexFunc(s.Filter, func(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError }); i >= 0 {
		return bad("filter", "control character or invalid UTF-8 at byte %d; an OData filter is one line of text", i)
	}
	for col, typ := range s.Columns {
		if !identRE.MatchString(col) {
			return bad("columns", "%q is not a column logical name", col)
		}
		switch typ {
		case TypeString, TypeInt, TypeDecimal, TypeBool, TypeGUID:
		default:
			return bad("columns."+col, "type %q is not one of string, int, decimal, bool, guid", typ)
		}
	}
	if err := s.checkColumns("input", s.Input); err != nil {
		return err
	}
	if err := s.checkColumns("writable", s.Writable); err != nil {
		return err
	}
	for _, c := range s.Writable {
		if c == s.Table.Key {
			return bad("writable", "the key column %q cannot be written", c)
		}
	}
	if err := s.validateTransform(bad); err != nil {
		return err
	}
	if err := s.validateWrite(bad); err != nil {
		return err
	}
	if s.ChunkSize == 0 {
		s.ChunkSize = DefaultChunkSize
	}
	if s.ChunkSize < 1 || s.ChunkSize > MaxChunkSize {
		return bad("chunkSize", "must be 1-%d, got %d", MaxChunkSize, s.ChunkSize)
	}
	if s.PageSize == 0 {
		s.PageSize = MaxPageSize
	}
	if s.PageSize < 1 || s.PageSize > MaxPageSize {
		return bad("pageSize", "must be 1-%d, got %d", MaxPageSize, s.PageSize)
	}
	return nil
}

func (s *Spec) checkColumns(field string, cols []string) error {
	seen := map[string]bool{}
	for _, c := range cols {
		if _, ok := s.Columns[c]; !ok {
			return &FieldError{Job: s.Name, Field: field, Problem: fmt.Sprintf("column %q has no type in columns", c)}
		}
		if seen[c] {
			return &FieldError{Job: s.Name, Field: field, Problem: fmt.Sprintf("column %q listed twice", c)}
		}
		seen[c] = true
	}
	return nil
}

func (s *Spec) validateTransform(bad func(string, string, ...any) error) error {
	t := &s.Transform
	switch t.Kind {
	case KindEnrich:
		if len(s.Writable) == 0 {
			return bad("writable", "an enrich job needs at least one writable column")
		}
	case KindRecalculate:
		if len(t.Set) == 0 {
			return bad("transform.set", "a recalculate job needs at least one column expression")
		}
		if _, err := compileSet(s); err != nil {
			return err
		}
	case KindAction:
		if s.Incremental {
			return bad("incremental", "an action job cannot be incremental (the action is the write; nothing tells its inputs apart)")
		}
		if !actionRE.MatchString(t.Action) {
			return bad("transform.action", "must be an action or Custom API unique name, got %q", t.Action)
		}
	case KindImport:
		return s.validateImport(bad)
	default:
		return bad("transform.kind", "must be enrich, recalculate, action or import, got %q", t.Kind)
	}
	if s.Import != nil {
		return bad("import", "only an import job (transform.kind import) has an import section")
	}
	return nil
}

func (s *Spec) validateWrite(bad func(string, string, ...any) error) error {
	w := &s.Write
	if w.Mode == "" {
		w.Mode = "bulk"
	}
	switch w.Mode {
	case "bulk", "batch", "single":
	default:
		return bad("write.mode", "must be bulk, batch or single, got %q", w.Mode)
	}
	if w.BatchSize == 0 {
		w.BatchSize = dataverse.DefaultWriteBatch
	}
	if w.BatchSize < 1 || w.BatchSize > MaxBatchSize {
		return bad("write.batchSize", "must be 1-%d, got %d", MaxBatchSize, w.BatchSize)
	}
	if w.Concurrency == "" {
		w.Concurrency = "none"
	}
	if w.Concurrency != "none" && w.Concurrency != "etag" {
		return bad("write.concurrency", "must be none or etag, got %q", w.Concurrency)
	}
	if w.BypassBusinessLogic != "" && !bypassRE.MatchString(w.BypassBusinessLogic) {
		return bad("write.bypassBusinessLogic", "must be CustomSync, CustomAsync or both comma-separated, got %q", w.BypassBusinessLogic)
	}
	return nil
}

// SelectColumns are the columns the planner reads: the key, the transform's input and the writable
// columns (whose current values decide whether a write is needed).
func (s *Spec) SelectColumns() []string {
	seen := map[string]bool{s.Table.Key: true}
	cols := []string{s.Table.Key}
	for _, group := range [][]string{s.Input, s.Writable} {
		for _, c := range group {
			if !seen[c] {
				seen[c] = true
				cols = append(cols, c)
			}
		}
	}
	return cols
}

// IsWritable reports whether col is on the job's allow-list.
func (s *Spec) IsWritable(col string) bool {
	for _, c := range s.Writable {
		if c == col {
			return true
		}
	}
	return false
}
