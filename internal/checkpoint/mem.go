package checkpoint

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
)

// Mem is an in-memory Store for tests and single-process use.
type Mem struct {
	mu   sync.Mutex
	docs map[string]memDoc
	gen  atomic.Int64
}

type memDoc struct {
	data []byte
	etag ETag
}

// NewMem returns an empty in-memory store.
func NewMem() *Mem { return &Mem{docs: map[string]memDoc{}} }

func (m *Mem) next() ETag { return ETag(fmt.Sprintf("\"m%d\"", m.gen.Add(1))) }

// Get implements Store.
func (m *Mem) Get(_ context.Context, name string) ([]byte, ETag, error) {
	if err := ValidName(name); err != nil {
		return nil, "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.docs[name]
	if !ok {
		return nil, "", ErrNotFound
	}
	return append([]byte(nil), d.data...), d.etag, nil
}

// Create implements Store.
func (m *Mem) Create(_ context.Context, name string, data []byte) (ETag, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.docs[name]; ok {
		return "", ErrConflict
	}
	d := memDoc{data: append([]byte(nil), data...), etag: m.next()}
	m.docs[name] = d
	return d.etag, nil
}

// Update implements Store.
func (m *Mem) Update(_ context.Context, name string, data []byte, match ETag) (ETag, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.docs[name]
	if !ok {
		return "", ErrNotFound
	}
	if d.etag != match {
		return "", ErrConflict
	}
	d = memDoc{data: append([]byte(nil), data...), etag: m.next()}
	m.docs[name] = d
	return d.etag, nil
}

// Delete implements Store.
func (m *Mem) Delete(_ context.Context, name string, match ETag) error {
	if err := ValidName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.docs[name]
	if !ok {
		return ErrNotFound
	}
	if match != "" && d.etag != match {
		return ErrConflict
	}
	delete(m.docs, name)
	return nil
}

// List implements Store.
func (m *Mem) List(ctx context.Context, prefix string, fn func(string) error) error {
	m.mu.Lock()
	var names []string
	for n := range m.docs {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	m.mu.Unlock()
	return emitSorted(ctx, names, fn)
}
