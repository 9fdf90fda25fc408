package dvsim_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"dvbulk/internal/dataverse"
	"dvbulk/internal/dvsim"
)

// readDelta follows a change-tracking read to its delta link, collecting rows and deletions.
func readDelta(t *testing.T, c *dataverse.Client, link string) (rows map[string]dataverse.Record, deleted []string, next string, pages int) {
	t.Helper()
	rows = map[string]dataverse.Record{}
	q := dataverse.Query{Table: accounts, Select: []string{"name", "statecode"}, PageSize: 700}
	for {
		p, err := c.QueryDelta(context.Background(), q, link)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range p.Records {
			rows[r["accountid"].(string)] = r
		}
		deleted = append(deleted, p.Deleted...)
		if p.DeltaLink != "" {
			if p.NextLink != "" {
				t.Fatal("a page with both a nextLink and a deltaLink")
			}
			return rows, deleted, p.DeltaLink, pages
		}
		link = p.NextLink
	}
}

func TestChangeTrackingAsDocumented(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 2000, InactiveAccounts: 100, ChangeTracking: true})
	url, stop := sim.Start()
	defer stop()
	c := client(t, url)
	ctx := context.Background()
	if on, err := c.ChangeTrackingEnabled(ctx, accounts); err != nil || !on {
		t.Fatalf("ChangeTrackingEnabled = %v, %v; want true", on, err)
	}
	rows, deleted, link, pages := readDelta(t, c, "")
	if len(rows) != 2100 || len(deleted) != 0 || pages != 3 || !strings.Contains(link, "$deltatoken=") {
		t.Fatalf("first read: %d rows, %d deleted, %d pages, link %q; want every row (2100) in 3 pages and a delta token", len(rows), len(deleted), pages, link)
	}
	if rows, deleted, next, _ := readDelta(t, c, link); len(rows) != 0 || len(deleted) != 0 || next == "" {
		t.Fatalf("no changes: %d rows, %d deleted", len(rows), len(deleted))
	}

	ids := sim.IDs(true)
	edited := []string{ids[1], ids[50], ids[1999]}
	for _, id := range edited {
		sim.Edit(id, map[string]any{"name": "Edited " + id[:4]})
	}
	sim.Edit(ids[7], map[string]any{"statecode": 1})
	sim.Delete(ids[8])
	sim.Delete(ids[9])
	added := "0000abcd-0000-4000-8000-00000000abcd"
	if err := sim.Add(added, map[string]any{"name": "New"}); err != nil {
		t.Fatal(err)
	}
	rows, deleted, link2, _ := readDelta(t, c, link)
	var got []string
	for id := range rows {
		got = append(got, id)
	}
	sort.Strings(got)
	want := append([]string{ids[7], added}, edited...)
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("changed rows %v, want %v", got, want)
	}
	sort.Strings(deleted)
	if fmt.Sprint(deleted) != fmt.Sprint([]string{ids[8], ids[9]}) {
		t.Errorf("deleted %v, want %v", deleted, []string{ids[8], ids[9]})
	}
	if rows[ids[7]]["statecode"] == nil || fmt.Sprint(rows[ids[7]]["statecode"]) != "1" {
		t.Errorf("deactivated row: %v", rows[ids[7]])
	}

	// Unsupported options are refused, as Dataverse does.
	if _, err := c.QueryDelta(ctx, dataverse.Query{Table: accounts, Filter: "statecode eq 0"}, ""); err == nil {
		t.Error("the client sent $filter with change tracking")
	}
	// An expired token fails; the caller then reads afresh.
	sim.ExpireDeltaTokens()
	if _, err := c.QueryDelta(ctx, dataverse.Query{Table: accounts}, link2); err == nil {
		t.Error("an expired delta token was accepted")
	}
	// Track changes off: metadata says so, and a tracked read is not applied.
	sim.SetChangeTracking(false)
	if on, err := c.ChangeTrackingEnabled(ctx, accounts); err != nil || on {
		t.Errorf("ChangeTrackingEnabled = %v, %v; want false", on, err)
	}
	if _, err := c.QueryDelta(ctx, dataverse.Query{Table: accounts}, ""); !errors.Is(err, dataverse.ErrNoChangeTracking) {
		t.Errorf("tracked read with Track changes off: %v, want ErrNoChangeTracking", err)
	}
}
