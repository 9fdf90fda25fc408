package dvsim_test

import (
	"context"
	"testing"

	"dvbulk/internal/dataverse"
	"dvbulk/internal/dvsim"
)

// BenchmarkWrites pushes records through the real client in each write mode; records/s is the
// simulator's throughput with the cost model scaled away.
func BenchmarkWrites(b *testing.B) {
	for _, mode := range []dataverse.WriteMode{dataverse.ModeBulk, dataverse.ModeBatch, dataverse.ModeSingle} {
		b.Run(string(mode), func(b *testing.B) {
			sim := dvsim.New(dvsim.Config{Accounts: 50_000, TimeScale: 1000})
			base, stop := sim.Start()
			defer stop()
			c := client(b, base)
			ids := sim.IDs(true)[:5000]
			ups := make([]dataverse.Update, len(ids))
			for i, id := range ids {
				ups[i] = dataverse.Update{ID: id, Fields: map[string]any{"description": "bench", "numberofemployees": i}}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Update(context.Background(), accounts, ups, dataverse.WriteOptions{Mode: mode}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(ups))/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkPaging reads 100,000 active records in pages of 5000.
func BenchmarkPaging(b *testing.B) {
	sim := dvsim.New(dvsim.Config{Accounts: 100_000, InactiveAccounts: 10_000, TimeScale: 1000})
	base, stop := sim.Start()
	defer stop()
	c := client(b, base)
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		err := c.Query(context.Background(), dataverse.Query{Table: accounts, Select: []string{"name", "revenue"}, Filter: "statecode eq 0", PageSize: 5000}, func(p dataverse.Page) error {
			n += len(p.Records)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}
