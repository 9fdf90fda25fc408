package enrich

import (
	"context"
	"fmt"
	"testing"

	"dvbulk/internal/enrich/enrichsim"
)

// BenchmarkEnrich pushes 5,000 records through the client and the simulator, 25 per request,
// 32 in flight: at the simulator's real latency (120 ms + 2 ms/record) and with latency
// scaled away (what the client and simulator cost in CPU).
func BenchmarkEnrich(b *testing.B) {
	for _, scale := range []float64{1, 1e6} {
		b.Run(fmt.Sprintf("timescale=%g", scale), func(b *testing.B) {
			sim := enrichsim.New(enrichsim.Config{TimeScale: scale})
			url, stop := sim.Start()
			defer stop()
			cfg := Config{URL: url, BatchSize: 25, Concurrency: 32}
			c, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			recs := records(5000)
			b.ResetTimer()
			for b.Loop() {
				res, err := c.Enrich(context.Background(), recs)
				if err != nil || res[len(res)-1].Err != "" {
					b.Fatal(err, res[len(res)-1].Err)
				}
			}
			b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
			if sim.Counters().Throttled != 0 {
				b.Errorf("%d throttled", sim.Counters().Throttled)
			}
		})
	}
}
