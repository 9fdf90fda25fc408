package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"dvbulk/internal/checkpoint"
)

// Read returns every instance's telemetry document of run, ordered by instance. A run without
// telemetry (sampling off, or an older build) has none; that is not an error.
func Read(ctx context.Context, st checkpoint.Store, run string) ([]*Doc, error) {
	var names []string
	err := st.List(ctx, Prefix(run), func(name string) error {
		if strings.HasSuffix(name, ".json") {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("telemetry: list %s: %w", Prefix(run), err)
	}
	var docs []*Doc
	for _, name := range names {
		data, _, err := st.Get(ctx, name)
		if errors.Is(err, checkpoint.ErrNotFound) {
			continue // pruned meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("telemetry: read %s: %w", name, err)
		}
		var d Doc
		if err := json.Unmarshal(data, &d); err != nil {
			return nil, fmt.Errorf("telemetry: decode %s: %w", name, err)
		}
		docs = append(docs, &d)
	}
	sort.Slice(docs, func(i, j int) bool { return docs[i].Instance < docs[j].Instance })
	return docs, nil
}

// Point is the whole cluster at one moment: every instance's latest sample at T, summed. Gauges count
// only instances alive at T (a sample within Stale of T).
type Point struct {
	T                           time.Time
	Done                        map[string]int64
	Records                     int64
	DVReq                       int64
	Throttled                   map[string]int64
	EnReq                       int64
	EnThrottl                   int64
	DVInFlight, DVLimit, DVHint int
	EnInFlight, EnLimit         int
	Alive                       int
}

// Stale is how old an instance's latest sample may be for the instance to count as alive: three
// intervals, and at least 15 seconds.
func Stale(d *Doc) time.Duration {
	return max(15*time.Second, time.Duration(3*d.Interval*float64(time.Second)))
}

// Cluster merges the instances' series into one, with a point at every sample time of any instance.
func Cluster(docs []*Doc) []Point {
	var times []int64
	for _, d := range docs {
		for _, s := range d.Samples {
			times = append(times, s.T)
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	pos := make([]int, len(docs)) // per doc: index of its latest sample at or before the current time
	for i := range pos {
		pos[i] = -1
	}
	var out []Point
	for i, t := range times {
		if i > 0 && times[i-1] == t {
			continue
		}
		out = append(out, At(docs, time.UnixMilli(t), pos))
	}
	return out
}

// At is the cluster's state at t. pos, if not nil, carries each document's sample index between calls
// with increasing t (Cluster's sweep); nil searches.
func At(docs []*Doc, t time.Time, pos []int) Point {
	p := Point{T: t}
	ms := t.UnixMilli()
	for i, d := range docs {
		j := -1
		if pos != nil {
			j = pos[i]
			for j+1 < len(d.Samples) && d.Samples[j+1].T <= ms {
				j++
			}
			pos[i] = j
		} else {
			j = sort.Search(len(d.Samples), func(k int) bool { return d.Samples[k].T > ms }) - 1
		}
		if j < 0 {
			continue
		}
		s := d.Samples[j]
		p.Done = addTo(p.Done, s.Done)
		p.Records += s.Records()
		p.DVReq += s.DVRequests
		p.Throttled = addTo(p.Throttled, s.DVThrottled)
		p.EnReq += s.EnRequests
		p.EnThrottl += s.EnThrottled
		if t.Sub(s.Time()) <= Stale(d) && j == len(d.Samples)-1 || j < len(d.Samples)-1 {
			// alive: a later sample exists, or the latest is recent enough
			p.Alive++
			p.DVInFlight += s.DVInFlight
			p.DVLimit += s.DVLimit
			p.DVHint = max(p.DVHint, s.DVHint)
			p.EnInFlight += s.EnInFlight
			p.EnLimit += s.EnLimit
		}
	}
	return p
}

// ThrottledTotal is the number of Dataverse 429s at the point, whatever the limit.
func (p Point) ThrottledTotal() int64 { return total(p.Throttled) }

// Delete removes a run's telemetry documents (retention).
func Delete(ctx context.Context, st checkpoint.Store, run string) (int, error) {
	var names []string
	if err := st.List(ctx, Prefix(run), func(name string) error { names = append(names, name); return nil }); err != nil {
		return 0, fmt.Errorf("telemetry: list %s: %w", Prefix(run), err)
	}
	for i, name := range names {
		if err := st.Delete(ctx, name, ""); err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
			return i, fmt.Errorf("telemetry: delete %s: %w", name, err)
		}
	}
	return len(names), nil
}
