package checkpoint_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"dvbulk/internal/azurite"
	"dvbulk/internal/azurite/azuritetest"
	"dvbulk/internal/checkpoint"
	"dvbulk/internal/checkpoint/checkpointtest"
)

func TestMem(t *testing.T) {
	checkpointtest.Run(t, func(*testing.T) checkpoint.Store { return checkpoint.NewMem() })
}

func TestDir(t *testing.T) {
	checkpointtest.Run(t, func(t *testing.T) checkpoint.Store {
		st, err := checkpoint.NewDir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

func TestBlobOnAzurite(t *testing.T) {
	srv := azuritetest.Start(t, azurite.Options{})
	n := 0
	checkpointtest.Run(t, func(t *testing.T) checkpoint.Store {
		n++
		st, err := checkpoint.NewBlob(context.Background(), checkpoint.BlobConfig{ConnectionString: srv.ConnectionString(), Container: "contract" + strings.Repeat("x", n%3) + string(rune('a'+n))})
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

// dropFirstAnswer performs a write but loses its answer once, as a network failure after the server
// applied it would: the SDK then retries the same conditional write, which now conflicts.
type dropFirstAnswer struct{ dropped atomic.Bool }

func (d *dropFirstAnswer) Do(req *policy.Request) (*http.Response, error) {
	resp, err := req.Next()
	if err == nil && req.Raw().Method == http.MethodPut && strings.Contains(req.Raw().URL.Path, "/ambiguous/") && d.dropped.CompareAndSwap(false, true) {
		resp.Body.Close()
		return nil, errors.New("connection reset after the write (simulated)")
	}
	return resp, err
}

func TestBlobResolvesAmbiguousWrites(t *testing.T) {
	srv := azuritetest.Start(t, azurite.Options{})
	ctx := context.Background()
	for _, op := range []string{"create", "update"} {
		t.Run(op, func(t *testing.T) {
			drop := &dropFirstAnswer{}
			opts := &azblob.ClientOptions{}
			opts.PerRetryPolicies = []policy.Policy{drop}
			st, err := checkpoint.NewBlob(ctx, checkpoint.BlobConfig{ConnectionString: srv.ConnectionString(), Container: "ambig-" + op, ClientOptions: opts})
			if err != nil {
				t.Fatal(err)
			}
			name := "ambiguous/doc.json"
			var tag checkpoint.ETag
			if op == "update" {
				drop.dropped.Store(true)
				if tag, err = st.Create(ctx, name, []byte(`{"w":"first"}`)); err != nil {
					t.Fatal(err)
				}
				drop.dropped.Store(false)
				tag, err = st.Update(ctx, name, []byte(`{"w":"mine"}`), tag)
			} else {
				tag, err = st.Create(ctx, name, []byte(`{"w":"mine"}`))
			}
			if err != nil || tag == "" {
				t.Fatalf("%s whose answer was lost = %q, %v; want success", op, tag, err)
			}
			if !drop.dropped.Load() {
				t.Fatal("the fault was never injected")
			}
			// A genuine conflict still reports ErrConflict.
			if _, err := st.Create(ctx, name, []byte(`{"w":"someone else"}`)); !errors.Is(err, checkpoint.ErrConflict) {
				t.Fatalf("genuine conflict = %v", err)
			}
		})
	}
}

// TestDirAcrossProcesses: child processes race to create one document in a shared directory.
func TestDirAcrossProcesses(t *testing.T) {
	if dir := os.Getenv("DVBULK_TEST_DIR_RACE"); dir != "" {
		st, err := checkpoint.NewDir(dir)
		if err != nil {
			os.Exit(3)
		}
		if _, err := st.Create(context.Background(), "claim.json", []byte(os.Getenv("DVBULK_TEST_ID"))); err == nil {
			os.Exit(0)
		} else if errors.Is(err, checkpoint.ErrConflict) {
			os.Exit(1)
		}
		os.Exit(3)
	}
	dir := t.TempDir()
	const n = 8
	cmds := make([]*exec.Cmd, n)
	for i := range cmds {
		cmds[i] = exec.Command(os.Args[0], "-test.run=^TestDirAcrossProcesses$")
		cmds[i].Env = append(os.Environ(), "DVBULK_TEST_DIR_RACE="+dir, "DVBULK_TEST_ID="+string(rune('a'+i)))
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	wins := 0
	for _, c := range cmds {
		err := c.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			wins++
		case errors.As(err, &ee) && ee.ExitCode() == 1:
		default:
			t.Errorf("child failed: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d processes created the document, want exactly 1", wins)
	}
}

func TestParseConnectionStringAndRedact(t *testing.T) {
	bc, err := checkpoint.ParseConnectionString("UseDevelopmentStorage=true")
	if err != nil || !strings.Contains(bc.ConnectionString, "devstoreaccount1") {
		t.Fatalf("UseDevelopmentStorage=true -> %v %v", bc, err)
	}
	if _, err := checkpoint.ParseConnectionString("AccountName=a;AccountKey=c2VjcmV0"); err != nil {
		t.Fatalf("a good string -> %v", err)
	}
	_, err = checkpoint.ParseConnectionString("AccountKey=c2VjcmV0")
	if err == nil || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Fatalf("bad string -> %v (must fail without echoing the key)", err)
	}
	red := checkpoint.Redact("AccountName=a;AccountKey=c2VjcmV0;BlobEndpoint=https://a/?sv=1&sig=abc%2B")
	if strings.Contains(red, "c2VjcmV0") || strings.Contains(red, "abc") {
		t.Fatalf("Redact left a secret: %s", red)
	}
}

// TestBlobContainerDeleted: when the container is deleted under a running store, reads, updates,
// deletes and listings fail closed with ErrStoreMissing, never ErrNotFound (which would make callers
// redo finished work as if it had never been checkpointed). Create makes the container again, so new
// work can start; the lost documents stay lost.
func TestBlobContainerDeleted(t *testing.T) {
	srv := azuritetest.Start(t, azurite.Options{})
	ctx := context.Background()
	st, err := checkpoint.NewBlob(ctx, checkpoint.BlobConfig{ConnectionString: srv.ConnectionString(), Container: "wiped"})
	if err != nil {
		t.Fatal(err)
	}
	tag, err := st.Create(ctx, "runs/a/manifest.json", []byte(`{"w":"1"}`))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := azblob.NewClientFromConnectionString(srv.ConnectionString(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.DeleteContainer(ctx, "wiped", nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Get(ctx, "runs/a/manifest.json"); !errors.Is(err, checkpoint.ErrStoreMissing) || errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("Get after the container was deleted = %v, want ErrStoreMissing", err)
	}
	if _, err := st.Update(ctx, "runs/a/manifest.json", []byte(`{"w":"2"}`), tag); !errors.Is(err, checkpoint.ErrStoreMissing) {
		t.Errorf("Update = %v, want ErrStoreMissing", err)
	}
	if err := st.Delete(ctx, "runs/a/manifest.json", ""); !errors.Is(err, checkpoint.ErrStoreMissing) {
		t.Errorf("Delete = %v, want ErrStoreMissing", err)
	}
	if err := st.List(ctx, "runs/", func(string) error { return nil }); !errors.Is(err, checkpoint.ErrStoreMissing) {
		t.Errorf("List = %v, want ErrStoreMissing", err)
	}
	// Azure keeps a deleted container's name for a while (ContainerBeingDeleted); Azurite frees it at once.
	if _, err := st.Create(ctx, "runs/b/manifest.json", []byte(`{"w":"3"}`)); err != nil {
		t.Fatalf("Create after the container was deleted = %v, want the container made again", err)
	}
	if _, _, err := st.Get(ctx, "runs/a/manifest.json"); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("the lost document after recreation: %v, want ErrNotFound", err)
	}
}
