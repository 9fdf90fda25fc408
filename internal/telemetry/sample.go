// Package telemetry records how a run progresses on each instance, as compact samples in the
// checkpoint store, and estimates a run's total and time to finish from them.
//
// Every instance keeps one document per run it works on (runs/<run>/telemetry/<instance>.json) and
// rewrites it every interval with a new sample appended. Counters in a sample are cumulative since
// the instance's first sample of the run, so the cluster's progress at any moment is the sum of each
// instance's latest sample, and a document that grows too long can drop every other sample without
// losing any count (only time resolution). Documents are written by one instance only, so they never
// contend with the chunk checkpoints or with each other.
package telemetry

import (
	"sort"
	"strings"
	"time"
)

// MaxSamples bounds the samples kept in one instance's document. When it is reached, every other
// sample is dropped (the interval between kept samples doubles), so a document stays under about
// 150 KB however long the run.
const MaxSamples = 720

// Sample is one instance's state at one moment. Counters (Done, requests, 429s) are cumulative since
// the instance's first sample of the run; gauges (in flight, limits) are the values at T.
type Sample struct {
	T    int64            `json:"t"`           // unix milliseconds
	Done map[string]int64 `json:"d,omitempty"` // records finished, by outcome

	DVRequests  int64            `json:"dr,omitempty"` // Dataverse requests put on the wire
	DVThrottled map[string]int64 `json:"dt,omitempty"` // Dataverse 429s by limit (error code)
	DVInFlight  int              `json:"df,omitempty"` // Dataverse requests in flight
	DVLimit     int              `json:"dl,omitempty"` // the adaptive concurrency limit
	DVHint      int              `json:"dh,omitempty"` // the latest x-ms-dop-hint

	EnRequests  int64 `json:"er,omitempty"` // enrichment requests sent
	EnThrottled int64 `json:"et,omitempty"` // enrichment 429 and 503 answers
	EnInFlight  int   `json:"ef,omitempty"` // enrichment requests in flight
	EnLimit     int   `json:"el,omitempty"` // the instance's enrichment concurrency
}

// Time is the sample's moment.
func (s Sample) Time() time.Time { return time.UnixMilli(s.T) }

// Records is the number of records finished, whatever their outcome.
func (s Sample) Records() int64 { return total(s.Done) }

// Throttled is the number of Dataverse 429s, whatever the limit.
func (s Sample) Throttled() int64 { return total(s.DVThrottled) }

func total(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// ChunkTime is how long one chunk took on an instance (the part of it that ran there).
type ChunkTime struct {
	Seq     int   `json:"seq"`
	Records int   `json:"n"`
	Milli   int64 `json:"ms"`
}

// MaxSlowest is how many of its slowest chunks an instance remembers per run.
const MaxSlowest = 20

// Doc is one instance's telemetry of one run.
type Doc struct {
	V        int               `json:"v"`
	Run      string            `json:"run"`
	Instance string            `json:"instance"`
	Interval float64           `json:"intervalSeconds"` // the sampling interval at the start
	Settings map[string]string `json:"settings,omitempty"`
	Samples  []Sample          `json:"samples"`
	Slowest  []ChunkTime       `json:"slowest,omitempty"` // longest first
	Updated  time.Time         `json:"updated"`
	Writer   string            `json:"w"` // writer nonce (see checkpoint.Store)
}

// Last is the latest sample, or the zero Sample.
func (d *Doc) Last() Sample {
	if len(d.Samples) == 0 {
		return Sample{}
	}
	return d.Samples[len(d.Samples)-1]
}

// add appends a sample, thinning the series when it is full: the first and the last sample stay, and
// every other one in between goes.
func (d *Doc) add(s Sample) {
	d.Samples = append(d.Samples, s)
	if len(d.Samples) <= MaxSamples {
		return
	}
	kept := d.Samples[:0]
	last := d.Samples[len(d.Samples)-1]
	for i := 0; i < len(d.Samples)-1; i += 2 {
		kept = append(kept, d.Samples[i])
	}
	d.Samples = append(kept, last)
}

// noteChunk keeps ct if it is among the MaxSlowest slowest chunks seen. A chunk that ran in several
// invocations on this instance is kept once, with its time summed.
func (d *Doc) noteChunk(ct ChunkTime) {
	for i := range d.Slowest {
		if d.Slowest[i].Seq == ct.Seq {
			d.Slowest[i].Milli += ct.Milli
			d.Slowest[i].Records = max(d.Slowest[i].Records, ct.Records)
			ct.Seq = -1
			break
		}
	}
	if ct.Seq >= 0 {
		d.Slowest = append(d.Slowest, ct)
	}
	sort.SliceStable(d.Slowest, func(i, j int) bool { return d.Slowest[i].Milli > d.Slowest[j].Milli })
	if len(d.Slowest) > MaxSlowest {
		d.Slowest = d.Slowest[:MaxSlowest]
	}
}

// docName is where an instance's telemetry of a run lives.
func docName(run, instance string) string { return Prefix(run) + safeName(instance) + ".json" }

// Prefix is the store prefix of a run's telemetry documents.
func Prefix(run string) string { return "runs/" + run + "/telemetry/" }

// safeName keeps an instance id usable as one segment of a document name.
func safeName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r <= 0x20 || r == 0x7f || r == '/' || r == '\\' {
			return '_'
		}
		return r
	}, s)
	if s == "" || s == "." || s == ".." {
		s = "_" + s
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// sub returns a - b for counter maps (for counters relative to a baseline).
func sub(a, b map[string]int64) map[string]int64 {
	if len(a) == 0 {
		return nil
	}
	out := make(map[string]int64, len(a))
	for k, v := range a {
		if d := v - b[k]; d != 0 {
			out[k] = d
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func addTo(dst, src map[string]int64) map[string]int64 {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = map[string]int64{}
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
}
