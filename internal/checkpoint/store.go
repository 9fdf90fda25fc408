// Package checkpoint stores small JSON documents ("blobs") with ETag-conditional writes: the run
// manifests, chunk checkpoints, progress counters and summaries that let scaled-out instances share
// work and resume it. Losing a race is an outcome (ErrConflict), not a failure.
package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ETag identifies one version of a document.
type ETag string

var (
	// ErrNotFound means the document does not exist.
	ErrNotFound = errors.New("checkpoint: not found")
	// ErrConflict means a condition was not met: the document exists (Create) or changed (Update).
	ErrConflict = errors.New("checkpoint: condition not met")
	// ErrStoreMissing means the store itself is gone (the blob container was deleted, or storage was
	// wiped). It is deliberately not ErrNotFound: a caller that took every document for absent would
	// redo finished work, so reads and updates fail closed instead. Create recreates the store, so a
	// new run can start.
	ErrStoreMissing = errors.New("checkpoint: store missing (container deleted?)")
)

// Store is a conditional key/value store of small documents.
//
// Ambiguous writes: when a write's answer is lost and the retry then reports a conflict, an
// implementation re-reads the document; if it holds exactly the bytes written, the write was ours and
// succeeds. Callers therefore embed a writer nonce in every document, so equal bytes imply one writer.
type Store interface {
	// Get returns a document and its ETag, or ErrNotFound.
	Get(ctx context.Context, name string) ([]byte, ETag, error)
	// Create writes a document only if it does not exist (If-None-Match: *).
	Create(ctx context.Context, name string, data []byte) (ETag, error)
	// Update replaces a document only if its ETag still equals match (If-Match).
	Update(ctx context.Context, name string, data []byte, match ETag) (ETag, error)
	// Delete removes a document; match "" deletes unconditionally.
	Delete(ctx context.Context, name string, match ETag) error
	// List calls fn with every name under prefix in lexical order, streaming.
	List(ctx context.Context, prefix string, fn func(name string) error) error
}

// MaxDocument bounds a document's size (a 1,000-record chunk checkpoint is well under 1 MiB).
const MaxDocument = 16 << 20

// ValidName checks a document name: slash-separated segments of printable characters, no "." or
// ".." segment, no leading slash, at most 512 bytes.
func ValidName(name string) error {
	if name == "" || len(name) > 512 || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") {
		return fmt.Errorf("checkpoint: invalid name %q", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("checkpoint: invalid name %q", name)
		}
	}
	for _, r := range name {
		if r < 0x21 || r == 0x7f || r == '\\' {
			return fmt.Errorf("checkpoint: invalid name %q", name)
		}
	}
	return nil
}

// emitSorted calls fn with names in lexical order, as List promises, stopping at fn's first error or
// when ctx ends.
func emitSorted(ctx context.Context, names []string, fn func(string) error) error {
	sort.Strings(names)
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(n); err != nil {
			return err
		}
	}
	return nil
}
