package job

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"path"
	"strings"
	"unicode"

	"dvbulk/internal/importfile"
	"dvbulk/internal/pipeline"
)

// KindImport is the transform kind of an import job: records come from a file, not from a query.
const KindImport = "import"

// Import modes.
const (
	ImportCreate = "create"
	ImportUpsert = "upsert"
)

// Outcomes of imported records (beside pipeline.Failed, and pipeline.WouldUpdate in a dry run).
const (
	OutcomeCreated  pipeline.Outcome = "created"
	OutcomeUpserted pipeline.Outcome = "upserted"
)

// ImportSpec says how an import job reads its file and writes its records.
type ImportSpec struct {
	// Format is csv or ndjson; empty means the source name's extension decides.
	Format string `json:"format,omitempty"`
	// Encoding is the file's character set: utf-8 (the default, with or without BOM) or a
	// single-byte set such as windows-1252 or iso-8859-1, transcoded while reading.
	Encoding string `json:"encoding,omitempty"`
	// Mode is create or upsert.
	Mode string `json:"mode"`
	// Key lists the mapped target columns that form the table's alternate key. An upsert
	// addresses each record by it (contacts(dvb_legacyid='L-1')); in both modes a record that
	// repeats another record's key in the file fails, naming the first.
	Key     []string           `json:"key,omitempty"`
	Mapping importfile.Mapping `json:"mapping"`
}

// validateImport checks an import job's spec. An import has no query, input or transform
// columns: what may be written is exactly the mapping's targets.
func (s *Spec) validateImport(bad func(string, string, ...any) error) error {
	im := s.Import
	if im == nil {
		return bad("import", "an import job needs an import section (mode, mapping)")
	}
	if s.Filter != "" || len(s.Input) > 0 || len(s.Writable) > 0 || len(s.Columns) > 0 {
		return bad("transform.kind", "an import job takes no filter, columns, input or writable: its mapping says what is written")
	}
	if im.Format != "" {
		if _, err := importfile.ParseFormat(im.Format); err != nil {
			return bad("import.format", "must be csv or ndjson, got %q", im.Format)
		}
	}
	if _, err := importfile.LookupEncoding(im.Encoding); err != nil {
		return bad("import.encoding", "%v", strings.TrimPrefix(err.Error(), "importfile: "))
	}
	if im.Mode != ImportCreate && im.Mode != ImportUpsert {
		return bad("import.mode", "must be create or upsert, got %q", im.Mode)
	}
	if err := im.Mapping.Validate(); err != nil {
		return bad("import.mapping", "%v", strings.TrimPrefix(err.Error(), "mapping: "))
	}
	targets := map[string]importfile.Column{}
	for _, c := range im.Mapping.Columns {
		if c.Target == s.Table.Key {
			return bad("import.mapping", "column %q maps onto the primary key %s: the import chooses record ids itself; use an alternate key", c.Source, s.Table.Key)
		}
		targets[c.Target] = c
	}
	if im.Mode == ImportUpsert && len(im.Key) == 0 {
		return bad("import.key", "an upsert needs the alternate key's columns, to address each record by")
	}
	for _, k := range im.Key {
		c, ok := targets[k]
		switch {
		case !ok:
			return bad("import.key", "column %q is not a target of the mapping", k)
		case c.Type == importfile.Lookup:
			return bad("import.key", "column %q is a lookup; key on plain columns", k)
		case !c.Required:
			return bad("import.key", "column %q must be required in the mapping: a record without its key cannot be addressed", k)
		}
	}
	if s.Write.Concurrency == "etag" {
		return bad("write.concurrency", "an import writes new records: etag concurrency does not apply")
	}
	return nil
}

// format is the file format for a source name.
func (im *ImportSpec) format(source string) (importfile.Format, error) {
	if im.Format != "" {
		return importfile.ParseFormat(im.Format)
	}
	if f, ok := importfile.FormatOf(source); ok {
		return f, nil
	}
	return "", fmt.Errorf("source %q: cannot tell csv from ndjson by its name; set import.format", source)
}

// CheckSource validates an import's source blob name: a relative name under prefix, never a URL,
// an absolute path, a backslash, a dot segment or a control character.
func CheckSource(name, prefix string) error {
	switch {
	case name == "":
		return fmt.Errorf("source is empty")
	case len(name) > 1024:
		return fmt.Errorf("source is longer than 1024 characters")
	case strings.Contains(name, "://") || strings.Contains(name, ":"):
		return fmt.Errorf("source %q: a blob name, not a URL", truncate(name, 80))
	case strings.HasPrefix(name, "/") || strings.Contains(name, "\\"):
		return fmt.Errorf("source %q: a relative blob name with forward slashes", truncate(name, 80))
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("source %q: contains a control character", truncate(name, 80))
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("source %q: empty, '.' or '..' path segment", truncate(name, 80))
		}
	}
	if path.Clean(name) != name {
		return fmt.Errorf("source %q: not a clean name", truncate(name, 80))
	}
	if prefix != "" && !strings.HasPrefix(name, strings.TrimSuffix(prefix, "/")+"/") {
		return fmt.Errorf("source %q is not under the import prefix %q", truncate(name, 80), prefix)
	}
	return nil
}

// recordID is the primary key an import gives record number n of a run: derived from both, so a
// redelivered chunk (or a replanned one) creates the same record again, which Dataverse refuses
// as a duplicate key instead of creating it twice. It has the version-4 layout.
func recordID(run string, n int64) string {
	h := sha256.New()
	h.Write([]byte("dvbulk-import\x00" + run + "\x00"))
	_ = binary.Write(h, binary.BigEndian, n)
	var b [16]byte
	copy(b[:], h.Sum(nil))
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// keyHash is a 64-bit digest of a record's alternate-key values (case-folded, as the service's
// collation compares them), for finding keys repeated in a file in 8 bytes a record.
func keyHash(fields map[string]any, key []string) (uint64, bool) {
	h := sha256.New()
	for _, k := range key {
		v, ok := fields[k]
		if !ok || v == nil {
			return 0, false
		}
		fmt.Fprintf(h, "%s\x00", strings.ToLower(fmt.Sprint(v)))
	}
	return binary.BigEndian.Uint64(h.Sum(nil)), true
}

// keyValues returns the alternate-key values of a mapped record.
func keyValues(fields map[string]any, key []string) map[string]any {
	alt := make(map[string]any, len(key))
	for _, k := range key {
		v := fields[k]
		if n, ok := v.(int64); ok {
			alt[k] = n
		} else {
			alt[k] = fmt.Sprint(v)
		}
	}
	return alt
}
