package bench

import (
	"math"
	"testing"
	"time"
)

// TestComputeBound pins the bound arithmetic for both profiles (pure arithmetic, no timing).
func TestComputeBound(t *testing.T) {
	near := func(t *testing.T, name string, got time.Duration, want float64) {
		t.Helper()
		if math.Abs(got.Seconds()-want) > 0.0005 {
			t.Errorf("%s = %.4fs, want %.4fs", name, got.Seconds(), want)
		}
	}
	tests := []struct {
		name                       string
		p                          Profile
		c                          int
		enrich, write, read, total float64
		binding                    string
	}{
		// Enrichment: 32·25 records per 170 ms = 4705.88/s -> 50,000 in 10.625 s, plus the first
		// page (90 ms) and the last write (54 ms).
		// Writes at C = 48: 40,000·4 ms/48 = 3.3333 s + 1 round of 50 ms overhead + 90 + 122 ms.
		{"prod hint", Prod(), 48, 10.769, 3.5953, 1.076, 10.769, "enrichment"},
		// At C = 208 the writes need 0.769 s + 50 ms.
		{"prod pure", Prod(), 208, 10.769, 1.0312, 1.076, 10.769, "enrichment"},
		// Sandbox at the hint (C = 4): 40 s of record time + 10 rounds of 50 ms overhead.
		{"sandbox hint", Sandbox(), 4, 10.769, 40.712, 1.076, 40.712, "Dataverse concurrency"},
		{"sandbox pure", Sandbox(), 52, 10.769, 3.3389, 1.076, 10.769, "enrichment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := ComputeBound(tt.p, tt.c)
			near(t, "enrich", b.Enrich, tt.enrich)
			near(t, "write", b.Write, tt.write)
			near(t, "read", b.Read, tt.read)
			near(t, "total", b.Total, tt.total)
			if b.ExecWindow != 0 || b.ReqWindow != 0 {
				t.Errorf("window terms %s, %s; want 0 (160 s of server time fits one window)", b.ExecWindow, b.ReqWindow)
			}
			if b.Binding != tt.binding {
				t.Errorf("binding %q, want %q", b.Binding, tt.binding)
			}
		})
	}
}

// TestComputeBoundsHint checks that the hint caps the effective concurrency and the pure bound uses
// 52 × servers.
func TestComputeBoundsHint(t *testing.T) {
	tests := []struct {
		name       string
		p          Profile
		pure, hint int
	}{
		{"prod", Prod(), 208, 48},
		{"sandbox", Sandbox(), 52, 4},
		{"hint above capacity", func() Profile { p := Sandbox(); p.DOPHint = 100; return p }(), 52, 52},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := ComputeBounds(tt.p)
			if b.Pure.Concurrency != tt.pure || b.Hint.Concurrency != tt.hint {
				t.Errorf("concurrency pure %d hint %d, want %d and %d", b.Pure.Concurrency, b.Hint.Concurrency, tt.pure, tt.hint)
			}
			if b.Hint.Total < b.Pure.Total {
				t.Errorf("hint bound %s below pure bound %s", b.Hint.Total, b.Pure.Total)
			}
		})
	}
}

// TestComputeBoundWindow checks the window term when one server's execution time exceeds a
// window's budget: 1,000,000 changed records on one server need 4,010 s of server time, so the job
// takes at least 300 s·(4010/1200 − 1) = 702.5 s.
func TestComputeBoundWindow(t *testing.T) {
	p := Sandbox()
	p.Active, p.ChangeFraction, p.PageRead = 1_000_000, 1, 0
	b := ComputeBound(p, 52)
	near := math.Abs(b.ExecWindow.Seconds() - 702.5)
	if near > 0.01 {
		t.Errorf("exec window term %.3fs, want 702.5s", b.ExecWindow.Seconds())
	}
	if b.Binding != "execution-time window" {
		t.Errorf("binding %q, want the execution-time window", b.Binding)
	}
}
