package ledger

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"dvbulk/internal/checkpoint"
)

var t0 = time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC)

// idN makes a GUID whose shard byte is shard and whose other bytes encode n.
func idN(shard byte, n int) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%02x%010x", n, shard, n)
}

func TestDecideBoundaries(t *testing.T) {
	r := Rules{RefreshAfter: 720 * time.Hour, NoMatchRetryAfter: 168 * time.Hour}
	id := idN(1, 1)
	due := r.RefreshDue(id, t0)
	if due > r.RefreshAfter || due < time.Duration(float64(r.RefreshAfter)*(1-JitterFraction)) {
		t.Fatalf("refresh due after %s, want within [%s, %s]", due, time.Duration(float64(r.RefreshAfter)*(1-JitterFraction)), r.RefreshAfter)
	}
	ok := Entry{FP: 7, At: t0}
	nm := Entry{FP: 7, At: t0, NoMatch: true}
	cases := []struct {
		name  string
		fp    uint64
		e     Entry
		found bool
		now   time.Time
		want  Reason
	}{
		{"never answered", 7, Entry{}, false, t0, Unseen},
		{"input changed", 8, ok, true, t0.Add(time.Hour), Changed},
		{"same inputs, just before due", 7, ok, true, t0.Add(due - time.Second), Fresh},
		{"same inputs, due", 7, ok, true, t0.Add(due), Refresh},
		{"same inputs, at RefreshAfter", 7, ok, true, t0.Add(r.RefreshAfter), Refresh},
		{"no match, just before retry", 7, nm, true, t0.Add(168*time.Hour - time.Second), Fresh},
		{"no match, at retry", 7, nm, true, t0.Add(168 * time.Hour), NoMatchRetry},
		{"no match, inputs changed", 9, nm, true, t0.Add(time.Hour), Changed},
		{"failed last time", 7, Entry{FP: 7, At: t0, Failed: true}, true, t0.Add(time.Minute), Retry},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := r.Decide(id, c.fp, c.e, c.found, c.now); got != c.want {
				t.Fatalf("Decide = %s, want %s", got, c.want)
			}
		})
	}
	always := Rules{}
	if got := always.Decide(id, 7, ok, true, t0); got != Refresh {
		t.Fatalf("RefreshAfter 0: Decide = %s, want refresh (always)", got)
	}
	if got := always.Decide(id, 7, nm, true, t0); got != NoMatchRetry {
		t.Fatalf("NoMatchRetryAfter 0: Decide = %s, want nomatch-retry (always)", got)
	}
}

// Records answered on the same night fall due over many later nights, never beyond RefreshAfter.
func TestRefreshJitterSpreads(t *testing.T) {
	r := Rules{RefreshAfter: 720 * time.Hour}
	nights := map[int]int{}
	const n = 5000
	for i := 0; i < n; i++ {
		due := r.RefreshDue(idN(byte(i), i), t0)
		if due > r.RefreshAfter || due < 540*time.Hour {
			t.Fatalf("record %d due after %s, outside [540h, 720h]", i, due)
		}
		nights[int(due/(24*time.Hour))]++
	}
	if len(nights) < 7 {
		t.Fatalf("refresh falls on %d nights, want the 7.5-night window used: %v", len(nights), nights)
	}
	for night, c := range nights {
		if c > n/4 {
			t.Fatalf("night %d gets %d of %d refreshes: not spread", night, c, n)
		}
	}
}

func TestDue(t *testing.T) {
	r := Rules{RefreshAfter: 720 * time.Hour, NoMatchRetryAfter: 168 * time.Hour}
	id := idN(2, 2)
	due := r.RefreshDue(id, t0)
	cases := []struct {
		e   Entry
		at  time.Duration
		due bool
	}{
		{Entry{At: t0}, due - time.Second, false},
		{Entry{At: t0}, due, true},
		{Entry{At: t0, NoMatch: true}, 168*time.Hour - time.Second, false},
		{Entry{At: t0, NoMatch: true}, 168 * time.Hour, true},
		{Entry{At: t0, Failed: true}, 0, true},
	}
	for i, c := range cases {
		if got := r.Due(id, c.e, t0.Add(c.at)); got != c.due {
			t.Errorf("case %d: Due(%+v, +%s) = %v, want %v", i, c.e, c.at, got, c.due)
		}
	}
}

func TestFingerprint(t *testing.T) {
	a := Fingerprint("v1", [][]byte{[]byte(`"ab"`), []byte(`"c"`)})
	if b := Fingerprint("v1", [][]byte{[]byte(`"a`), []byte(`b""c"`)}); a == b {
		t.Fatal("values shifted between columns hash alike")
	}
	if b := Fingerprint("v2", [][]byte{[]byte(`"ab"`), []byte(`"c"`)}); a == b {
		t.Fatal("a changed job version hashes alike")
	}
	if b := Fingerprint("v1", [][]byte{[]byte(`"ab"`), []byte(`"c"`)}); a != b {
		t.Fatal("fingerprint not deterministic")
	}
}

func stores(t *testing.T) map[string]checkpoint.Store {
	dir, err := checkpoint.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return map[string]checkpoint.Store{"mem": checkpoint.NewMem(), "dir": dir}
}

func TestApplyLookupScan(t *testing.T) {
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			l := New(st, "nightly")
			a, b, c := idN(3, 1), idN(3, 2), idN(200, 3)
			if got, err := l.Lookup(ctx, []string{a, b, c}); err != nil || len(got) != 0 {
				t.Fatalf("empty ledger: %v, %v", got, err)
			}
			err := l.Apply(ctx, []Update{{ID: a, Entry: Entry{FP: 1, At: t0.Add(500 * time.Millisecond)}},
				{ID: c, Entry: Entry{FP: 3, At: t0, NoMatch: true}}, {ID: a, Entry: Entry{FP: 11, At: t0}}})
			if err != nil {
				t.Fatal(err)
			}
			got, err := l.Lookup(ctx, []string{a, b, c})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]Entry{a: {FP: 11, At: t0}, c: {FP: 3, At: t0, NoMatch: true}}
			if len(got) != 2 || got[a] != want[a] || got[c] != want[c] {
				t.Fatalf("Lookup = %v, want %v", got, want)
			}
			if err := l.Apply(ctx, []Update{{ID: a, Remove: true}, {ID: b, Entry: Entry{FP: 2, At: t0}}}); err != nil {
				t.Fatal(err)
			}
			var seen []string
			if err := l.Scan(ctx, func(id string, e Entry) error { seen = append(seen, id); return nil }); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(seen) != fmt.Sprint([]string{b, c}) {
				t.Fatalf("Scan = %v, want [%s %s]", seen, b, c)
			}
			data, _, err := st.Get(ctx, ShardName("nightly", 3))
			if err != nil || len(data) != headerSize+EntrySize {
				t.Fatalf("shard 03: %d bytes (%v), want one %d-byte entry", len(data), err, EntrySize)
			}
		})
	}
}

// 20 instances updating the same shard at once: no update is lost.
func TestApplyConcurrentNoLostUpdates(t *testing.T) {
	st := checkpoint.NewMem()
	l := New(st, "nightly")
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for w := 0; w < 20; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ups []Update
			for i := 0; i < 10; i++ {
				ups = append(ups, Update{ID: idN(9, w*100+i), Entry: Entry{FP: uint64(w), At: t0}})
			}
			errs <- New(st, "nightly").Apply(ctx, ups)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	if err := l.Scan(ctx, func(string, Entry) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 200 {
		t.Fatalf("%d entries after 20×10 concurrent updates, want 200", n)
	}
}

// A corrupt shard reads as empty (re-ask), and the next update replaces it.
func TestUnreadableShardMeansReask(t *testing.T) {
	st := checkpoint.NewMem()
	ctx := context.Background()
	l := New(st, "nightly")
	a, b := idN(5, 1), idN(6, 1)
	if err := l.Apply(ctx, []Update{{ID: a, Entry: Entry{FP: 1, At: t0}}, {ID: b, Entry: Entry{FP: 1, At: t0}}}); err != nil {
		t.Fatal(err)
	}
	_, etag, _ := st.Get(ctx, ShardName("nightly", 5))
	for _, junk := range [][]byte{[]byte("garbage"), []byte(magic + "12345678\x00\x00\x00\x09short")} {
		if _, err := st.Update(ctx, ShardName("nightly", 5), junk, etag); err != nil {
			t.Fatal(err)
		}
		got, err := l.Lookup(ctx, []string{a, b})
		if err != nil {
			t.Fatalf("corrupt shard failed the lookup: %v", err)
		}
		if _, ok := got[a]; ok || len(got) != 1 {
			t.Fatalf("Lookup over a corrupt shard = %v, want only %s", got, b)
		}
		_, etag, _ = st.Get(ctx, ShardName("nightly", 5))
	}
	if err := l.Apply(ctx, []Update{{ID: a, Entry: Entry{FP: 2, At: t0}}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Lookup(ctx, []string{a}); got[a].FP != 2 {
		t.Fatalf("after rewrite: %v", got)
	}
	if _, err := l.Lookup(ctx, []string{"not-a-guid"}); err == nil {
		t.Fatal("a bad id was accepted")
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	var rows []row
	for i := 0; i < 100; i++ {
		id, _ := parseID(idN(1, i))
		rows = append(rows, row{id: id, Entry: Entry{FP: uint64(i) * 977, At: t0.Add(time.Duration(i) * time.Hour), NoMatch: i%3 == 0, Failed: i%5 == 0}})
	}
	got, err := decodeShard(encodeShard(rows))
	if err != nil || len(got) != len(rows) {
		t.Fatalf("decode: %d rows, %v", len(got), err)
	}
	for i := range rows {
		if got[i] != rows[i] {
			t.Fatalf("row %d: %+v, want %+v", i, got[i], rows[i])
		}
	}
}
