// Package checkpointtest is the one contract suite every checkpoint.Store implementation must pass.
package checkpointtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"dvbulk/internal/checkpoint"
)

// Run runs the contract suite against stores made by newStore (each call a fresh, empty store).
func Run(t *testing.T, newStore func(t *testing.T) checkpoint.Store) {
	ctx := context.Background()
	t.Run("CreateGetUpdateDelete", func(t *testing.T) {
		st := newStore(t)
		if _, _, err := st.Get(ctx, "a/b.json"); !errors.Is(err, checkpoint.ErrNotFound) {
			t.Fatalf("Get missing = %v, want ErrNotFound", err)
		}
		e1, err := st.Create(ctx, "a/b.json", []byte(`{"v":1}`))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Create(ctx, "a/b.json", []byte(`{"v":9}`)); !errors.Is(err, checkpoint.ErrConflict) {
			t.Fatalf("second Create = %v, want ErrConflict", err)
		}
		data, e, err := st.Get(ctx, "a/b.json")
		if err != nil || string(data) != `{"v":1}` || e != e1 {
			t.Fatalf("Get = %s %s %v, want v1 with etag %s", data, e, err, e1)
		}
		e2, err := st.Update(ctx, "a/b.json", []byte(`{"v":2}`), e1)
		if err != nil || e2 == e1 {
			t.Fatalf("Update = %s %v, want a new etag", e2, err)
		}
		if _, err := st.Update(ctx, "a/b.json", []byte(`{"v":3}`), e1); !errors.Is(err, checkpoint.ErrConflict) {
			t.Fatalf("Update with a stale etag = %v, want ErrConflict", err)
		}
		if _, err := st.Update(ctx, "a/missing.json", []byte(`{}`), e1); !errors.Is(err, checkpoint.ErrNotFound) && !errors.Is(err, checkpoint.ErrConflict) {
			t.Fatalf("Update missing = %v", err)
		}
		if err := st.Delete(ctx, "a/b.json", e1); !errors.Is(err, checkpoint.ErrConflict) {
			t.Fatalf("Delete with a stale etag = %v, want ErrConflict", err)
		}
		if err := st.Delete(ctx, "a/b.json", e2); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.Get(ctx, "a/b.json"); !errors.Is(err, checkpoint.ErrNotFound) {
			t.Fatalf("Get after Delete = %v", err)
		}
	})
	t.Run("OnlyOneOfTwentyCreatesWins", func(t *testing.T) {
		st := newStore(t)
		wins := race(t, 20, func(i int) error {
			_, err := st.Create(ctx, "runs/r/claim.json", fmt.Appendf(nil, `{"owner":%d}`, i))
			return err
		})
		if wins != 1 {
			t.Fatalf("%d creates won, want exactly 1", wins)
		}
	})
	t.Run("OnlyOneOfTwentyUpdatesWins", func(t *testing.T) {
		st := newStore(t)
		e, err := st.Create(ctx, "runs/r/chunk.json", []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		wins := race(t, 20, func(i int) error {
			_, err := st.Update(ctx, "runs/r/chunk.json", fmt.Appendf(nil, `{"owner":%d}`, i), e)
			return err
		})
		if wins != 1 {
			t.Fatalf("%d updates won, want exactly 1", wins)
		}
	})
	// Shared documents that every instance edits (the service-protection budget's) rely on this: a
	// read-modify-write that retries on ErrConflict never loses another writer's change.
	t.Run("ReadModifyWriteLosesNoUpdate", func(t *testing.T) {
		st := newStore(t)
		const name, writers = "budget/env/user.json", 8
		if _, err := st.Create(ctx, name, []byte(`[]`)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for attempt := 0; attempt < 500; attempt++ {
					data, e, err := st.Get(ctx, name)
					if err != nil {
						t.Error(err)
						return
					}
					var ids []int
					if err := json.Unmarshal(data, &ids); err != nil {
						t.Error(err)
						return
					}
					next, _ := json.Marshal(append(ids, i))
					_, err = st.Update(ctx, name, next, e)
					if err == nil {
						return
					}
					if !errors.Is(err, checkpoint.ErrConflict) {
						t.Error(err)
						return
					}
				}
				t.Errorf("writer %d never won", i)
			}()
		}
		wg.Wait()
		data, _, err := st.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int
		if err := json.Unmarshal(data, &ids); err != nil {
			t.Fatal(err)
		}
		slices.Sort(ids)
		if want := []int{0, 1, 2, 3, 4, 5, 6, 7}; !slices.Equal(ids, want) {
			t.Fatalf("document holds %v, want every writer once: %v", ids, want)
		}
	})
	t.Run("ListIsOrderedAndFiltered", func(t *testing.T) {
		st := newStore(t)
		const n = 2500
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for i := range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if _, err := st.Create(ctx, fmt.Sprintf("runs/x/chunks/%06d.json", i), []byte(`{}`)); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if _, err := st.Create(ctx, "runs/xy/manifest.json", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		var got []string
		if err := st.List(ctx, "runs/x/chunks/", func(name string) error { got = append(got, name); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != n {
			t.Fatalf("listed %d, want %d", len(got), n)
		}
		for i, name := range got {
			if want := fmt.Sprintf("runs/x/chunks/%06d.json", i); name != want {
				t.Fatalf("item %d = %s, want %s", i, name, want)
			}
		}
		stop := errors.New("stop")
		count := 0
		err := st.List(ctx, "runs/", func(string) error {
			count++
			if count == 3 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || count != 3 {
			t.Fatalf("List did not stop on the callback's error: %v after %d", err, count)
		}
	})
	t.Run("NamesAreValidated", func(t *testing.T) {
		st := newStore(t)
		for _, bad := range []string{"", "/abs", "a/../b", "a//b", "a/", "with space", "back\\slash"} {
			if _, err := st.Create(ctx, bad, []byte(`{}`)); err == nil {
				t.Errorf("Create(%q) accepted", bad)
			}
		}
	})
}

func race(t *testing.T, n int, fn func(int) error) int {
	t.Helper()
	var mu sync.Mutex
	wins := 0
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := fn(i)
			switch {
			case err == nil:
				mu.Lock()
				wins++
				mu.Unlock()
			case !errors.Is(err, checkpoint.ErrConflict):
				t.Errorf("racer %d: %v (losing must be ErrConflict)", i, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	return wins
}
