package job

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"dvbulk/internal/dataverse"
)

// MessageVersion is the schema version of queue messages this build reads and writes.
const MessageVersion = 1

// MaxMessageBytes is the Storage queue limit for an encoded message (base64 under the default
// messageEncoding).
const MaxMessageBytes = 64 * 1024

// MessageKind says what a chunk-queue message asks for.
type MessageKind string

// Message kinds.
const (
	// KindStart starts an ad-hoc run (dropped on the queue by an operator or a script).
	KindStart MessageKind = "start"
	// KindPlan continues planning a run from a cursor.
	KindPlan MessageKind = "plan"
	// KindChunk asks for one chunk of records to be processed.
	KindChunk MessageKind = "chunk"
)

// Message is everything that travels on the chunk queue. DecodeMessage says how unknown properties
// are treated (refused in start messages, ignored in the app's own chunk and plan messages).
type Message struct {
	V    int         `json:"v"`
	Kind MessageKind `json:"kind"`
	Job  string      `json:"job"`
	Run  string      `json:"run,omitempty"`

	// start
	DryRun  bool   `json:"dryRun,omitempty"`
	RerunOf string `json:"rerunOf,omitempty"` // re-run only the failed records of this run
	Source  string `json:"source,omitempty"`  // an import's blob name under the import container and prefix
	Full    bool   `json:"full,omitempty"`    // every record eligible, whatever the ledger says

	// plan
	Cursor string `json:"cursor,omitempty"` // @odata.nextLink to continue from; "" = the first page

	// plan (next sequence number) and chunk (its sequence number)
	Seq int `json:"seq,omitempty"`

	// chunk
	IDs []string `json:"ids,omitempty"`

	// Ignored lists the properties of a chunk or plan message that this build does not know and
	// skipped (sorted); never encoded.
	Ignored []string `json:"-"`
}

// BadMessageError explains why a message can never be processed; such a message is dead-lettered at
// once rather than retried.
type BadMessageError struct{ Reason string }

func (e *BadMessageError) Error() string { return "bad message: " + e.Reason }

// IsBadMessage reports whether err means the message itself is unprocessable.
func IsBadMessage(err error) bool {
	var b *BadMessageError
	return errors.As(err, &b)
}

var runRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,120}$`)

// RunID derives a run id from the job and the scheduled time, so two firings of one schedule
// occurrence name the same run and cannot start two.
func RunID(job string, at time.Time) string {
	return job + "-" + strings.ToLower(at.UTC().Format("20060102T150405Z"))
}

// DecodeMessage parses and validates a queue message body.
//
// Chunk and plan messages are written by dvbulk itself and are read tolerantly within a schema
// version: a property this build does not know (a newer build's, during a rolling deployment) is
// ignored and listed in Message.Ignored, never a reason to drop work. A message of a newer schema
// version is refused with that reason, as its known properties may have changed meaning. Start
// messages are written by people and scripts and are strict: an unknown property (also one that
// differs from a known one only in case) is refused by name, so a misspelled dryRun never writes.
func DecodeMessage(body []byte) (*Message, error) {
	bad := func(format string, a ...any) error { return &BadMessageError{Reason: fmt.Sprintf(format, a...)} }
	if len(body) > MaxMessageBytes {
		return nil, bad("%d bytes, larger than the %d-byte queue limit", len(body), MaxMessageBytes)
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return nil, bad("not a JSON object (did something enqueue plain text, or base64 twice?)")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, bad("not valid JSON for a dvbulk message: %v", err)
	}
	if dec.More() {
		return nil, bad("trailing data after the JSON object")
	}
	// The version and the kind decide how the rest is read, so they are read first.
	var v int
	if err := json.Unmarshal(raw["v"], &v); raw["v"] != nil && err != nil {
		return nil, bad("v is not a schema version number: %s", truncate(string(raw["v"]), 40))
	}
	if v > MessageVersion {
		return nil, bad("schema version %d is newer than this build reads (version %d): the message was written by a newer dvbulk; deploy it to every instance and redrive", v, MessageVersion)
	}
	var kind MessageKind
	_ = json.Unmarshal(raw["kind"], &kind) // a non-string kind fails the full decode below
	var unknown []string
	for k := range raw {
		if _, ok := messageFields[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	if kind == KindStart && len(unknown) > 0 {
		return nil, bad("a start message has an unknown property %s (known: %s)", describeUnknown(unknown[0]), strings.Join(messageFieldNames, ", "))
	}
	var m Message
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, bad("not valid JSON for a dvbulk message: %v", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	m.Ignored = unknown
	return &m, nil
}

// messageFields are the JSON property names of Message, exactly as written; messageFieldNames lists
// them in declaration order for error messages.
var messageFields, messageFieldNames = func() (map[string]struct{}, []string) {
	set := map[string]struct{}{}
	var names []string
	t := reflect.TypeFor[Message]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		set[name] = struct{}{}
		names = append(names, name)
	}
	return set, names
}()

// describeUnknown quotes an unknown property and points at the known one it differs from only in
// case ("dryrun" for "dryRun").
func describeUnknown(name string) string {
	q := strconv.Quote(truncate(name, 60))
	for _, k := range messageFieldNames {
		if strings.EqualFold(k, name) {
			return q + " (did you mean " + strconv.Quote(k) + "?)"
		}
	}
	return q
}

// Validate checks a message's fields.
func (m *Message) Validate() error {
	bad := func(format string, a ...any) error { return &BadMessageError{Reason: fmt.Sprintf(format, a...)} }
	if m.V != MessageVersion {
		return bad("schema version %d, this build reads version %d (set \"v\":%d)", m.V, MessageVersion, MessageVersion)
	}
	if !jobRE.MatchString(m.Job) {
		return bad("job %q is not a job name", m.Job)
	}
	if m.Run != "" && !runRE.MatchString(m.Run) {
		return bad("run %q is not a run id", m.Run)
	}
	switch m.Kind {
	case KindStart:
		if m.RerunOf != "" && !runRE.MatchString(m.RerunOf) {
			return bad("rerunOf %q is not a run id", m.RerunOf)
		}
		if len(m.IDs) > 0 || m.Cursor != "" {
			return bad("a start message carries no ids or cursor")
		}
		if m.Source != "" {
			if err := CheckSource(m.Source, ""); err != nil {
				return bad("%v", err)
			}
		}
	case KindPlan:
		if m.Source != "" {
			return bad("only a start message names a source")
		}
		if m.Run == "" {
			return bad("a plan message needs a run")
		}
		if m.Seq < 0 {
			return bad("seq %d is negative", m.Seq)
		}
	case KindChunk:
		if m.Run == "" {
			return bad("a chunk message needs a run")
		}
		if m.Seq < 0 {
			return bad("seq %d is negative", m.Seq)
		}
		if len(m.IDs) == 0 || len(m.IDs) > MaxChunkSize {
			return bad("a chunk carries 1-%d ids, got %d", MaxChunkSize, len(m.IDs))
		}
		seen := make(map[string]bool, len(m.IDs))
		for i, raw := range m.IDs {
			id, err := dataverse.ParseID(raw)
			if err != nil {
				return bad("ids[%d] %q is not a GUID", i, truncate(raw, 60))
			}
			if seen[id] {
				return bad("ids[%d] %s is listed twice", i, id)
			}
			seen[id] = true
			m.IDs[i] = id
		}
	default:
		return bad("kind %q is not start, plan or chunk", m.Kind)
	}
	return nil
}

// Encode renders a message for a queue output binding and checks that it fits the queue once
// base64-encoded.
func (m *Message) Encode() (string, error) {
	m.V = MessageVersion
	data, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("job: encode message: %w", err)
	}
	if n := base64.StdEncoding.EncodedLen(len(data)); n > MaxMessageBytes {
		return "", fmt.Errorf("job: message for %s/%d is %d bytes after base64, over the %d-byte queue limit", m.Run, m.Seq, n, MaxMessageBytes)
	}
	return string(data), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
