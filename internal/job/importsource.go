package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// ErrSourceMissing is returned by an ImportSource for a name that does not exist.
var ErrSourceMissing = errors.New("job: import source not found")

// ImportSource reads the files import jobs take records from: blobs under the configured import
// container and prefix, or a directory for the console.
type ImportSource interface {
	// Open returns the file's bytes from offset on and its version (an ETag), so a file replaced
	// while a run reads it is noticed instead of mixing two files.
	Open(ctx context.Context, name string, offset int64) (io.ReadCloser, string, error)
}

// DirSource reads import files from a directory (dvbulk run --source).
type DirSource struct{ Root string }

// Open opens Root/name; its version is its size and modification time.
func (d DirSource) Open(_ context.Context, name string, offset int64) (io.ReadCloser, string, error) {
	f, err := os.Open(filepath.Join(d.Root, filepath.FromSlash(name)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("%w: %s", ErrSourceMissing, name)
	}
	if err != nil {
		return nil, "", err
	}
	st, err := f.Stat()
	if err == nil && offset > 0 {
		_, err = f.Seek(offset, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, "", err
	}
	return f, strconv.FormatInt(st.Size(), 10) + "-" + strconv.FormatInt(st.ModTime().UnixNano(), 10), nil
}
