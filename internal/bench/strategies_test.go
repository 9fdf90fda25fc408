package bench

import (
	"context"
	"testing"
	"time"
)

// TestStrategiesSmall runs every strategy on a small, fast simulated environment and checks the
// data, not the timing: every account processed holds the enrichment, no inactive account is
// touched, and the product never sends inside a Retry-After window.
func TestStrategiesSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts simulators")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := Prod()
	p.Active, p.Inactive = 1200, 120
	const scale = 20

	seq, err := Sequential(ctx, p, scale, 5)
	if err != nil {
		t.Fatal(err)
	}
	if seq.Checked != 5 || seq.Lost != 0 || seq.Touched != 0 || !seq.Extrapolated || seq.Records != p.Active {
		t.Errorf("sequential: %+v", seq)
	}

	seed, err := SeedPattern(ctx, p, scale, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if seed.Checked != p.Active || seed.Lost != 0 || seed.Touched != 0 || seed.Extrapolated {
		t.Errorf("seed pattern: %+v", seed)
	}
	if seed.Requests < int64(p.Active) {
		t.Errorf("seed pattern sent %d Dataverse requests for %d records; it PATCHes one at a time", seed.Requests, p.Active)
	}

	k := DefaultKnobs(p)
	k.ChunkSize = 200
	prod, err := Product(ctx, p, scale, k, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if prod.Checked != p.Active || prod.Lost != 0 || prod.Touched != 0 || prod.DuringRA != 0 {
		t.Errorf("product: %+v", prod)
	}
	if prod.Requests >= seed.Requests/10 {
		t.Errorf("product sent %d Dataverse requests, seed pattern %d: batching should cut them by far more than 10×", prod.Requests, seed.Requests)
	}
}
