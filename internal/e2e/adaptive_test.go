package e2e

import (
	"context"
	"testing"
	"time"

	"dvbulk/internal/enrich/enrichsim"
)

// TestDefaultsFindTheEnrichmentCapacity (issue 15): two instances with the shipped enrichment and
// Dataverse concurrency settings against a queueing enrichment service of 24 slots taking at most
// 10 records per request, neither of which they are told. Together they keep at least 75% of the
// slots busy at their peak, learn the records per request and lose no record. Counts and peaks
// are asserted, not timings.
func TestDefaultsFindTheEnrichmentCapacity(t *testing.T) {
	const capacity, maxRecords, accounts = 24, 10, 3000
	r := newRig(t, rigOptions{accounts: accounts, inactive: 100, instances: 2, defaults: true,
		en: func(c *enrichsim.Config) {
			c.MaxConcurrency, c.QueueDepth, c.MaxRecordsPerRequest = capacity, capacity, maxRecords
			c.TimeScale = 4 // 30 ms + 0.5 ms per record: a latency the limiter can tell from scheduling noise
		}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sum := r.runTimer(ctx)
	checkCounts(t, sum, accounts)
	r.checkEnriched()
	c := r.en.Counters()
	if c.PeakServing*4 < capacity*3 {
		t.Errorf("the enrichment service saw at most %d of its %d slots busy, want at least 75%%", c.PeakServing, capacity)
	}
	if c.DistinctIDs != accounts {
		t.Errorf("%d accounts answered, want %d", c.DistinctIDs, accounts)
	}
	// Learning costs a few refused requests per instance (halving from 50, probing back up to 10),
	// not one per request.
	if c.Rejected > 40 || c.Records < accounts {
		t.Errorf("%d requests refused for their size, %d records answered; want at most 40 and all %d", c.Rejected, c.Records, accounts)
	}
	t.Logf("enrichment: %d requests, %d records, %d throttled, %d refused, peak %d serving of %d",
		c.Requests, c.Records, c.Throttled, c.Rejected, c.PeakServing, capacity)
}
