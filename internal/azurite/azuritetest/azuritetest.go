// Package azuritetest starts the pinned Azurite for a test and stops it when the test ends.
package azuritetest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"dvbulk/internal/azurite"
)

// Start launches Azurite for t and stops it in t.Cleanup; its log goes to a file in t.TempDir().
// Without Azurite installed the test is skipped, except in CI (the environment variable CI set, as
// .ci/run does), where that is a failure: a CI run must not pass by skipping the storage tests.
func Start(t testing.TB, opts azurite.Options) *azurite.Server {
	t.Helper()
	if opts.LogFile == "" {
		opts.LogFile = filepath.Join(t.TempDir(), "azurite.log")
	}
	s, err := azurite.Launch(opts)
	if errors.Is(err, azurite.ErrNotInstalled) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}
