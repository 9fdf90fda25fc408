package dvsim_test

import (
	"runtime"
	"testing"
	"time"

	"dvbulk/internal/dvsim"
)

// TestMillionRecordsFitCompactly seeds 1,000,000 records and reports the heap they take; it
// fails above 120 bytes a record (the table is 64 bytes a record plus slack).
func TestMillionRecordsFitCompactly(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds a million records")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	sim := dvsim.New(dvsim.Config{Accounts: 900_000, InactiveAccounts: 100_000, Seed: 1})
	seeded := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	perRecord := float64(after.HeapAlloc-before.HeapAlloc) / 1e6
	t.Logf("1,000,000 records: %.0f bytes/record (%.0f MB), seeded in %v", perRecord, perRecord, seeded.Round(time.Millisecond))
	if perRecord > 120 {
		t.Errorf("%.0f bytes a record, want at most 120", perRecord)
	}
	id := dvsim.AccountID(999_999)
	if row, ok := sim.Get(id); !ok || row["statecode"] != 1 || row["name"] != "Account 999999" {
		t.Errorf("record 999999: %v %v", row, ok)
	}
	runtime.KeepAlive(sim)
}
