package importsrc_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"dvbulk/internal/azurite"
	"dvbulk/internal/azurite/azuritetest"
	"dvbulk/internal/checkpoint"
	"dvbulk/internal/importsrc"
	"dvbulk/internal/job"
)

func TestBlobOpenAtOffsets(t *testing.T) {
	srv := azuritetest.Start(t, azurite.Options{})
	ctx := context.Background()
	cfg := checkpoint.BlobConfig{ConnectionString: srv.ConnectionString(), Container: "imports-test"}
	// The checkpoint store creates the container and writes the file, as an upload would.
	st, err := checkpoint.NewBlob(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := "id,name\n1,a\n2,b\n"
	if _, err := st.Create(ctx, "imports/f.csv", []byte(data)); err != nil {
		t.Fatal(err)
	}
	src, err := importsrc.NewBlob(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var first string
	for _, off := range []int64{0, 8, int64(len(data))} {
		rc, version, err := src.Open(ctx, "imports/f.csv", off)
		if err != nil {
			t.Fatalf("offset %d: %v", off, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(b) != data[off:] {
			t.Fatalf("offset %d: %q %v, want %q", off, b, err, data[off:])
		}
		if first == "" {
			first = version
		}
		if version == "" || version != first {
			t.Errorf("offset %d: version %q, want %q", off, version, first)
		}
	}
	if _, _, err := src.Open(ctx, "imports/none.csv", 0); !errors.Is(err, job.ErrSourceMissing) {
		t.Errorf("missing blob: %v", err)
	}
}
