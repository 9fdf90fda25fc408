package job

import (
	"context"
	"sync"
	"testing"
	"time"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/enrich"
)

// sizedFake reports limits and records how the engine calls it. Each call holds until as
// many calls as the concurrency ceiling are in flight (or a generous timeout passes), so the
// peak shows whether one chunk alone can fill the ceiling.
type sizedFake struct {
	fakeEnricher
	batch, conc int

	mu       sync.Mutex
	inFlight int
	peak     int
	largest  int
	full     chan struct{}
	fullOnce sync.Once
}

func (s *sizedFake) Limits() (int, int) { return s.batch, s.conc }

func (s *sizedFake) Enrich(ctx context.Context, recs []enrich.Record) ([]enrich.Result, error) {
	s.mu.Lock()
	s.inFlight++
	s.peak, s.largest = max(s.peak, s.inFlight), max(s.largest, len(recs))
	if s.inFlight >= s.conc {
		s.fullOnce.Do(func() { close(s.full) })
	}
	s.mu.Unlock()
	select {
	case <-s.full:
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	s.mu.Lock()
	s.inFlight--
	s.mu.Unlock()
	return s.fakeEnricher.Enrich(ctx, recs)
}

// TestTransformSizedFromEnricherLimits: with no transform settings, one chunk sends groups of the
// enricher's batch size, as many at once as its concurrency ceiling.
func TestTransformSizedFromEnricherLimits(t *testing.T) {
	dv := newFakeDV(300, 0)
	en := &sizedFake{batch: 10, conc: 6, full: make(chan struct{})}
	e := testEngine(t, dv, en, checkpoint.NewMem())
	spec := smallSpec(t)
	spec.ChunkSize = 300 // one chunk
	if _, dead := runAll(t, e, spec, StartOptions{Trigger: "test"}); len(dead) != 0 {
		t.Fatalf("dead letters: %v", dead)
	}
	if en.peak != 6 || en.largest != 10 || en.total() != 300 {
		t.Errorf("peak %d calls at once, largest %d records, %d records asked; want 6, 10, 300", en.peak, en.largest, en.total())
	}
}

func TestEnrichSizing(t *testing.T) {
	en := &sizedFake{batch: 25, conc: 64}
	for _, tt := range []struct{ batch, workers, wantB, wantW int }{
		{0, 0, 25, 64}, {5, 0, 5, 64}, {0, 3, 25, 3}, {5, 3, 5, 3},
	} {
		if b, w := enrichSizing(en, tt.batch, tt.workers); b != tt.wantB || w != tt.wantW {
			t.Errorf("enrichSizing(%d, %d) = %d, %d; want %d, %d", tt.batch, tt.workers, b, w, tt.wantB, tt.wantW)
		}
	}
	if b, w := enrichSizing(&fakeEnricher{}, 0, 0); b != 0 || w != 0 {
		t.Errorf("an enricher without limits: %d, %d; want the pipeline's defaults (0, 0)", b, w)
	}
}
