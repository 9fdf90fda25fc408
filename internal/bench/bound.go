package bench

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Bound is the shortest possible wall time of the nightly job under a profile's limits alone, for
// a given effective Dataverse concurrency C. Every term is a lower bound on its own; the job takes
// at least the largest.
//
//	enrich  = page + N / (Ce·be / (t0 + be·t1)) + w1     every account must be asked (no one knows which
//	                                                     change), nothing can be asked before the first
//	                                                     page arrives, the last answer must still be written
//	write   = page + e1 + W·tr/C + max(1, W/(C·B))·(lat + tb)
//	                                                     W changed records in UpdateMultiple requests of at
//	                                                     most B, C at a time; the first write needs one
//	                                                     enrichment answer
//	read    = pages·page + e1 + w1                       pages are chained by their paging cookie
//	window  = Window·(need/limit − 1) when a server's execution time (or request count) exceeds one
//	          window's budget; in T seconds a server accepts at most limit·(1 + T/Window)
//
// with page = lat + page read, e1 = t0 + t1 (one record's enrichment), w1 = lat + tb + tr (one
// record's write).
type Bound struct {
	Concurrency int // effective Dataverse concurrency C
	Enrich      time.Duration
	Write       time.Duration
	Read        time.Duration
	ExecWindow  time.Duration
	ReqWindow   time.Duration
	Total       time.Duration
	Binding     string // which term is the largest
}

// Bounds holds the pure-limits bound (C = 52 × servers) and the hint-respecting bound
// (C = min(x-ms-dop-hint, 52 × servers)). The product never exceeds the hint, so its ratio is
// computed against the latter.
type Bounds struct {
	Pure, Hint Bound
}

// ComputeBounds derives both bounds of p.
func ComputeBounds(p Profile) Bounds {
	capacity := p.Concurrency * p.Servers
	return Bounds{Pure: ComputeBound(p, capacity), Hint: ComputeBound(p, min(p.DOPHint, capacity))}
}

// ComputeBound derives the bound for an effective Dataverse concurrency c.
func ComputeBound(p Profile, c int) Bound {
	s := func(d time.Duration) float64 { return d.Seconds() }
	n, w := float64(p.Active), float64(p.Changed())
	batch := float64(p.MaxBatch)
	page := s(p.Latency + p.PageRead)
	e1 := s(p.EnrichBase + p.EnrichPerRecord)
	w1 := s(p.Latency + p.BulkBase + p.BulkPerRecord)
	pages := math.Ceil(n / float64(p.PageSize))

	enrichRate := float64(p.EnrichConcurrency*p.EnrichBatch) / s(p.EnrichBase+time.Duration(p.EnrichBatch)*p.EnrichPerRecord)
	tEnrich := page + n/enrichRate + w1

	cf := float64(c)
	tWrite := page + e1 + w*s(p.BulkPerRecord)/cf + math.Max(1, w/(cf*batch))*s(p.Latency+p.BulkBase)
	if w == 0 {
		tWrite = 0
	}
	tRead := pages*page + e1 + w1

	servers := float64(p.Servers)
	writeReqs := math.Ceil(w / batch)
	execNeed := (w*s(p.BulkPerRecord) + writeReqs*s(p.BulkBase) + pages*s(p.PageRead)) / servers
	tExec := math.Max(0, s(p.Window)*(execNeed/s(p.ExecTime)-1))
	reqNeed := (writeReqs + pages) / servers
	tReq := math.Max(0, s(p.Window)*(reqNeed/float64(p.Requests)-1))

	d := func(x float64) time.Duration { return time.Duration(x * float64(time.Second)) }
	b := Bound{Concurrency: c, Enrich: d(tEnrich), Write: d(tWrite), Read: d(tRead), ExecWindow: d(tExec), ReqWindow: d(tReq)}
	b.Total, b.Binding = b.Enrich, "enrichment"
	for _, t := range []struct {
		name string
		v    time.Duration
	}{{"Dataverse concurrency", b.Write}, {"page reads", b.Read}, {"execution-time window", b.ExecWindow}, {"request-count window", b.ReqWindow}} {
		if t.v > b.Total {
			b.Total, b.Binding = t.v, t.name
		}
	}
	return b
}

// Formula renders the bound's derivation with p's numbers.
func (b Bound) Formula(p Profile) string {
	s := func(d time.Duration) float64 { return d.Seconds() }
	n, w := p.Active, p.Changed()
	var sb strings.Builder
	fmt.Fprintf(&sb, "  enrich = page + N/(Ce·be/(t0+be·t1)) + w1 = %.3f + %d/(%d·%d/%.3fs) + %.3f = %.2fs\n",
		s(p.Latency+p.PageRead), n, p.EnrichConcurrency, p.EnrichBatch, s(p.EnrichBase+time.Duration(p.EnrichBatch)*p.EnrichPerRecord),
		s(p.Latency+p.BulkBase+p.BulkPerRecord), s(b.Enrich))
	fmt.Fprintf(&sb, "  write  = page + e1 + W·tr/C + max(1, W/(C·B))·(lat+tb) = %.3f + %.3f + %d·%.3f/%d + max(1, %.2f)·%.3f = %.2fs\n",
		s(p.Latency+p.PageRead), s(p.EnrichBase+p.EnrichPerRecord), w, s(p.BulkPerRecord), b.Concurrency,
		float64(w)/float64(b.Concurrency*p.MaxBatch), s(p.Latency+p.BulkBase), s(b.Write))
	fmt.Fprintf(&sb, "  read   = pages·page + e1 + w1 = %d·%.3f + %.3f + %.3f = %.2fs\n",
		(n+p.PageSize-1)/p.PageSize, s(p.Latency+p.PageRead), s(p.EnrichBase+p.EnrichPerRecord), s(p.Latency+p.BulkBase+p.BulkPerRecord), s(b.Read))
	writeReqs := (w + p.MaxBatch - 1) / p.MaxBatch
	pages := (n + p.PageSize - 1) / p.PageSize
	fmt.Fprintf(&sb, "  window = %.2fs exec time, %.2fs requests (per server %.1fs of server time of %s, %d requests of %d, per %s)\n",
		s(b.ExecWindow), s(b.ReqWindow),
		(float64(w)*s(p.BulkPerRecord)+float64(writeReqs)*s(p.BulkBase)+float64(pages)*s(p.PageRead))/float64(p.Servers), p.ExecTime,
		(writeReqs+pages+p.Servers-1)/p.Servers, p.Requests, p.Window)
	fmt.Fprintf(&sb, "  bound  = max(...) = %.2fs (%s binds), %.0f records/s", s(b.Total), b.Binding, float64(n)/s(b.Total))
	return sb.String()
}
