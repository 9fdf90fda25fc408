package checkpoint

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Dir is a Store in a local directory, safe across processes: every check-and-write holds an
// exclusive flock on the directory's lock file, and documents are replaced by rename so a reader never
// sees half a write. Each document's ETag lives in a sidecar file and is fresh random bytes per write
// (never a content hash, so an old ETag can never match a newer document with equal content).
type Dir struct {
	root string
}

const etagSuffix = ".etag"

// NewDir opens (creating if needed) a directory store.
func NewDir(path string) (*Dir, error) {
	if path == "" {
		return nil, errors.New("checkpoint: empty directory path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint: create %s: %w", abs, err)
	}
	return &Dir{root: abs}, nil
}

// Root returns the directory.
func (d *Dir) Root() string { return d.root }

func (d *Dir) path(name string) string {
	return filepath.Join(d.root, "data", filepath.FromSlash(name))
}

// lock holds an exclusive lock across processes for the duration of fn. One lock for the whole store
// keeps it simple; checkpoint writes are small and infrequent.
func (d *Dir) lock(fn func() error) error {
	f, err := os.OpenFile(filepath.Join(d.root, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("checkpoint: lock: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("checkpoint: lock: %w", err)
	}
	defer func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }()
	return fn()
}

func (d *Dir) read(name string) ([]byte, ETag, error) {
	p := d.path(name)
	tag, err := os.ReadFile(p + etagSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", ErrNotFound
	}
	if err != nil {
		return nil, "", fmt.Errorf("checkpoint: read %s: %w", name, err)
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", ErrNotFound
	}
	if err != nil {
		return nil, "", fmt.Errorf("checkpoint: read %s: %w", name, err)
	}
	return data, ETag(tag), nil
}

func (d *Dir) write(name string, data []byte) (ETag, error) {
	if len(data) > MaxDocument {
		return "", fmt.Errorf("checkpoint: %s is %d bytes, over %d", name, len(data), MaxDocument)
	}
	p := d.path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", fmt.Errorf("checkpoint: write %s: %w", name, err)
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	tag := ETag(`"` + hex.EncodeToString(b[:]) + `"`)
	if err := atomicWrite(p, data); err != nil {
		return "", fmt.Errorf("checkpoint: write %s: %w", name, err)
	}
	// The ETag file is written last: a document whose ETag file is missing does not exist yet.
	if err := atomicWrite(p+etagSuffix, []byte(tag)); err != nil {
		return "", fmt.Errorf("checkpoint: write %s: %w", name, err)
	}
	return tag, nil
}

func atomicWrite(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Get implements Store.
func (d *Dir) Get(ctx context.Context, name string) ([]byte, ETag, error) {
	if err := ValidName(name); err != nil {
		return nil, "", err
	}
	var data []byte
	var tag ETag
	err := d.lock(func() (err error) {
		data, tag, err = d.read(name)
		return err
	})
	return data, tag, err
}

// Create implements Store.
func (d *Dir) Create(ctx context.Context, name string, data []byte) (ETag, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	var tag ETag
	err := d.lock(func() error {
		if _, _, err := d.read(name); err == nil {
			return ErrConflict
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		var err error
		tag, err = d.write(name, data)
		return err
	})
	return tag, err
}

// Update implements Store.
func (d *Dir) Update(ctx context.Context, name string, data []byte, match ETag) (ETag, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	var tag ETag
	err := d.lock(func() error {
		_, cur, err := d.read(name)
		if err != nil {
			return err
		}
		if cur != match {
			return ErrConflict
		}
		tag, err = d.write(name, data)
		return err
	})
	return tag, err
}

// Delete implements Store.
func (d *Dir) Delete(ctx context.Context, name string, match ETag) error {
	if err := ValidName(name); err != nil {
		return err
	}
	return d.lock(func() error {
		_, cur, err := d.read(name)
		if err != nil {
			return err
		}
		if match != "" && cur != match {
			return ErrConflict
		}
		p := d.path(name)
		if err := os.Remove(p + etagSuffix); err != nil {
			return fmt.Errorf("checkpoint: delete %s: %w", name, err)
		}
		_ = os.Remove(p)
		return nil
	})
}

// List implements Store. Names come from a directory walk (sorted), then are filtered by prefix.
func (d *Dir) List(ctx context.Context, prefix string, fn func(string) error) error {
	base := filepath.Join(d.root, "data")
	// Walk only the deepest directory the prefix names, so listing one run does not read them all.
	start := base
	if i := strings.LastIndex(prefix, "/"); i > 0 {
		start = filepath.Join(base, filepath.FromSlash(prefix[:i]))
	}
	var names []string
	err := filepath.WalkDir(start, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() || !strings.HasSuffix(p, etagSuffix) {
			return nil
		}
		rel, err := filepath.Rel(base, strings.TrimSuffix(p, etagSuffix))
		if err != nil {
			return err
		}
		if name := filepath.ToSlash(rel); strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("checkpoint: list %s: %w", prefix, err)
	}
	return emitSorted(ctx, names, fn)
}
