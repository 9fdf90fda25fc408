package bench

import "testing"

// TestDefaultKnobsStayInsideLimits checks that the operator defaults never let the instances
// together exceed the dop hint or the enrichment service's concurrency cap.
func TestDefaultKnobsStayInsideLimits(t *testing.T) {
	for _, p := range []Profile{Prod(), Sandbox()} {
		t.Run(p.Name, func(t *testing.T) {
			k := DefaultKnobs(p)
			if got := k.Instances * k.DVConcurrency; got > p.DOPHint {
				t.Errorf("instances × Dataverse concurrency = %d, above the hint %d", got, p.DOPHint)
			}
			if got := k.Instances * k.EnrichConcurrency; got > p.EnrichConcurrency {
				t.Errorf("instances × enrichment concurrency = %d, above the service's %d", got, p.EnrichConcurrency)
			}
			if k.EnrichBatch > p.EnrichBatch || k.WriteBatch > p.MaxBatch || k.ChunkSize > 1000 {
				t.Errorf("batch sizes %+v exceed the profile's limits", k)
			}
		})
	}
}

func TestKnobsOverride(t *testing.T) {
	base := DefaultKnobs(Prod()) // 4 instances × (12 Dataverse, 8 enrichment)
	tests := []struct {
		name             string
		o                Knobs
		inst, dv, en, cs int
	}{
		{"nothing", Knobs{}, 4, 12, 8, base.ChunkSize},
		{"two instances re-split the allowances", Knobs{Instances: 2}, 2, 24, 16, base.ChunkSize},
		{"explicit values win", Knobs{Instances: 2, DVConcurrency: 5, ChunkSize: 250}, 2, 5, 16, 250},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := base.Override(tt.o)
			if k.Instances != tt.inst || k.DVConcurrency != tt.dv || k.EnrichConcurrency != tt.en || k.ChunkSize != tt.cs {
				t.Errorf("got instances %d, dv %d, enrichment %d, chunk %d; want %d, %d, %d, %d",
					k.Instances, k.DVConcurrency, k.EnrichConcurrency, k.ChunkSize, tt.inst, tt.dv, tt.en, tt.cs)
			}
		})
	}
}
