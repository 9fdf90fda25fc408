package perf

import (
	"testing"
	"time"
)

// TestBoundArithmetic pins the bound formula for both profiles (pure arithmetic, no timing).
func TestBoundArithmetic(t *testing.T) {
	prod := ComputeBound(Prod())
	// Enrichment: 32 × 25 records per 170 ms = 4,705.9 records/s -> 50,000 in 10.625 s.
	if got := prod.Enrich.Seconds(); got < 10.62 || got > 10.63 {
		t.Errorf("prod enrichment term %.3fs, want 10.625s", got)
	}
	// Writes: 40,000 records at min(48, 208) requests of 1,000 in 4.05 s -> 3.375 s; no window term.
	if got := prod.DataverseConcurrency.Seconds(); got < 3.37 || got > 3.38 {
		t.Errorf("prod write term %.3fs, want 3.375s", got)
	}
	if prod.DataverseWindow != 0 {
		t.Errorf("prod window term %s, want 0 (160 s of server time over 4 servers fits one window)", prod.DataverseWindow)
	}
	sand := ComputeBound(Sandbox())
	// Sandbox writes: concurrency min(4, 52) -> 40,000 / (4 × 1000 / 4.05 s) = 40.5 s.
	if got := sand.DataverseConcurrency.Seconds(); got < 40.49 || got > 40.51 {
		t.Errorf("sandbox write term %.3fs, want 40.5s", got)
	}
	if sand.Total < sand.DataverseConcurrency || sand.Total > sand.DataverseConcurrency+time.Second {
		t.Errorf("sandbox bound %s, want the write term plus one page read", sand.Total)
	}
}
