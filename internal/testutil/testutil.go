// Package testutil holds helpers shared by several packages' tests.
package testutil

import (
	"bytes"
	"sync"
)

// SyncBuffer is an io.Writer that concurrent writers (instances, requests, goroutines logging at once)
// can share; String returns everything written so far.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
