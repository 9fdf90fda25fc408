package dataverse

import (
	"context"
	"strings"
	"testing"
)

func TestWriteInputsFailAlone(t *testing.T) {
	f := newFakeDV(t)
	c := newTestClient(t, f.start().URL, nil)
	tbl := Table{EntitySet: "contacts", LogicalName: "contact", Key: "contactid"}
	id := "00000000-0000-4000-8000-000000000001"
	ws := []Write{
		{Key: Key{Alt: map[string]any{"emailaddress1": "a@x"}}, Fields: map[string]any{"lastname": "A"}},
		{Key: Key{ID: "not-a-guid"}},
		{Fields: map[string]any{"contactid": id}},
		{Fields: map[string]any{"bad name": 1}},
	}
	rs, err := c.Create(context.Background(), tbl, ws, WriteOptions{Mode: ModeSingle})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"not an alternate key", "invalid id", `field "contactid" not allowed`, `field "bad name" not allowed`} {
		if rs[i].Status != NotWritten || rs[i].Err == nil || !strings.Contains(rs[i].Err.Error(), want) {
			t.Errorf("write %d: %v %v, want failed with %q", i, rs[i].Status, rs[i].Err, want)
		}
	}
	rs, _ = c.Upsert(context.Background(), tbl, []Write{{Key: Key{ID: id}}, {Key: Key{ID: strings.ToUpper(id)}}}, WriteOptions{Mode: ModeSingle})
	if rs[1].Status != NotWritten || !strings.Contains(rs[1].Err.Error(), "repeated in one call") {
		t.Errorf("repeated key: %v %v", rs[1].Status, rs[1].Err)
	}
	if len(f.log) != 1 {
		t.Errorf("%d requests, want only the one valid upsert", len(f.log))
	}
}

func TestEntityIDOf(t *testing.T) {
	for loc, want := range map[string]string{
		"https://org.crm.dynamics.com/api/data/v9.2/contacts(0F1D2E3C-0000-4000-8000-000000000001)": "0f1d2e3c-0000-4000-8000-000000000001",
		"https://org/api/data/v9.2/contacts(emailaddress1='x')":                                     "",
		"": "",
	} {
		if got := entityIDOf(loc); got != want {
			t.Errorf("%q: %q, want %q", loc, got, want)
		}
	}
}
