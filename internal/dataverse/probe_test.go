package dataverse

import (
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"dvbulk/internal/testutil"
)

// A refused UpdateMultiple probe (403 for a role without prvReadSdkMessage) is cached for the
// process and warned about once, however many writes follow, sequential or concurrent: only writers
// that asked before the first refusal probe (at most one each); the records go via $batch.
func TestRefusedProbeIsCachedAndWarnedOnce(t *testing.T) {
	ids := testIDs(40)
	f := newFakeDV(t, ids...)
	f.bulkSupported, f.probeRefused = true, true
	var logs testutil.SyncBuffer
	c := newTestClient(t, f.start().URL, func(cfg *Config) { cfg.Logger = zerolog.New(&logs).Level(zerolog.WarnLevel) })
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			part := ids[g*10 : (g+1)*10]
			for round := range 3 {
				res, err := c.Update(ctxT(t), accounts, updatesFor(part, "r"+string(rune('0'+round))), WriteOptions{Mode: ModeBulk, BatchSize: 5})
				if err != nil {
					t.Errorf("Update: %v", err)
					return
				}
				for _, r := range res {
					if r.Status != Updated {
						t.Errorf("%s: %v %v", r.ID, r.Status, r.Err)
					}
				}
			}
		}()
	}
	wg.Wait()
	probes := f.count(func(r fakeReq) bool { return strings.Contains(r.URI, "sdkmessagefilters") })
	if probes < 1 || probes > 4 {
		t.Errorf("the refused probe was sent %d times by 4 writers of 3 rounds each; want at most one per writer", probes)
	}
	if n := strings.Count(logs.String(), "probe refused"); n != 1 {
		t.Errorf("the refusal was warned about %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "prvReadSdkMessage") {
		t.Errorf("the warning does not name the privilege:\n%s", logs.String())
	}
	if len(f.bulkSizes) != 0 {
		t.Errorf("UpdateMultiple was used after a refused probe: %v", f.bulkSizes)
	}
	if ok, err := c.SupportsUpdateMultiple(ctxT(t), accounts); ok || err != nil {
		t.Errorf("after the refusal: %v %v, want false and no error (cached)", ok, err)
	}
	for range 3 {
		if _, err := c.Update(ctxT(t), accounts, updatesFor(ids[:5], "again"), WriteOptions{Mode: ModeBulk}); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.count(func(r fakeReq) bool { return strings.Contains(r.URI, "sdkmessagefilters") }); n != probes {
		t.Errorf("%d more probes after the refusal was cached, want none", n-probes)
	}
}
