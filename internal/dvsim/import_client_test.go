package dvsim_test

import (
	"context"
	"fmt"
	"testing"

	"dvbulk/internal/dataverse"
	"dvbulk/internal/dvsim"
)

var contacts = dataverse.Table{EntitySet: "contacts", LogicalName: "contact", Key: "contactid"}

func contactWrites(n int, withIDs bool) []dataverse.Write {
	ws := make([]dataverse.Write, n)
	for i := range ws {
		ws[i].Fields = map[string]any{
			"lastname": fmt.Sprintf("Contact %d", i), "emailaddress1": fmt.Sprintf("c%d@example.com", i),
			"parentcustomerid_account@odata.bind": "/accounts(accountnumber=" + dataverse.KeyString(dvsim.AccountNumber(i%3)) + ")",
		}
		if withIDs {
			ws[i].Key.ID = fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1)
		}
	}
	return ws
}

func simClient(t *testing.T, cfg dvsim.Config) (*dvsim.Sim, *dataverse.Client) {
	sim := dvsim.New(cfg)
	base, stop := sim.Start()
	t.Cleanup(stop)
	return sim, client(t, base)
}

func countStatus(rs []dataverse.WriteResult) map[dataverse.WriteStatus]int {
	m := map[dataverse.WriteStatus]int{}
	for _, r := range rs {
		m[r.Status]++
	}
	return m
}

// TestCreateIsIdempotentWithChosenIDs writes the same records twice in every mode, as a
// redelivered chunk would: the second pass finds them (Existed) and creates nothing.
func TestCreateIsIdempotentWithChosenIDs(t *testing.T) {
	for _, mode := range []dataverse.WriteMode{dataverse.ModeBulk, dataverse.ModeBatch, dataverse.ModeSingle} {
		t.Run(string(mode), func(t *testing.T) {
			sim, c := simClient(t, dvsim.Config{Accounts: 3})
			ws := contactWrites(120, true)
			o := dataverse.WriteOptions{Mode: mode, BatchSize: 50}
			rs, err := c.Create(context.Background(), contacts, ws, o)
			if err != nil || countStatus(rs)[dataverse.Created] != 120 {
				t.Fatalf("first pass: %v %v", countStatus(rs), err)
			}
			for i, r := range rs {
				if r.ID != ws[i].Key.ID {
					t.Fatalf("result %d id %q, want %q", i, r.ID, ws[i].Key.ID)
				}
			}
			rs, err = c.Create(context.Background(), contacts, ws, o)
			if err != nil || countStatus(rs)[dataverse.Existed] != 120 {
				t.Fatalf("second pass: %v %v", countStatus(rs), err)
			}
			if n := sim.RowCount("contacts"); n != 120 {
				t.Fatalf("%d contacts, want 120", n)
			}
			row, _ := sim.Row("contacts", ws[4].Key.ID)
			if row["_parentcustomerid_value"] != dvsim.AccountID(1) {
				t.Errorf("lookup: %v", row)
			}
			kinds := sim.Counters().ByKind
			switch mode {
			case dataverse.ModeBulk:
				if kinds["createMultiple"] == 0 {
					t.Errorf("bulk mode sent no CreateMultiple: %v", kinds)
				}
			case dataverse.ModeBatch:
				if kinds["batch"] == 0 || kinds["createMultiple"] != 0 {
					t.Errorf("batch mode: %v", kinds)
				}
			}
		})
	}
}

// TestCreateBadRecordsFailAlone mixes records that break an alternate key, a lookup and a type
// into a bulk create: each fails with the service's own error, every other record lands once.
func TestCreateBadRecordsFailAlone(t *testing.T) {
	for _, noMultiple := range []bool{false, true} {
		t.Run(fmt.Sprint("noCreateMultiple=", noMultiple), func(t *testing.T) {
			sim, c := simClient(t, dvsim.Config{Accounts: 3, NoCreateMultiple: noMultiple})
			ws := contactWrites(100, true)
			ws[10].Fields["emailaddress1"] = "c3@example.com" // repeats record 3's key
			ws[50].Fields["parentcustomerid_account@odata.bind"] = "/accounts(accountnumber='ACC-999999')"
			ws[77].Fields["numberofchildren"] = "many"
			rs, err := c.Create(context.Background(), contacts, ws, dataverse.WriteOptions{BatchSize: 40})
			if err != nil {
				t.Fatal(err)
			}
			// Records 3 and 10 share an e-mail key: whichever is written second (concurrent
			// chunks race) fails; telling the file's repeats apart is the importer's job.
			want := map[int]string{50: "0x80060891", 77: "0x0"}
			dup := 0
			for i, r := range rs {
				code, bad := want[i]
				switch {
				case (i == 3 || i == 10) && r.Status == dataverse.NotWritten:
					if !dataverse.IsCode(r.Err, dataverse.CodeDuplicateAltKey) {
						t.Errorf("record %d: %v, want a duplicate alternate key", i, r.Err)
					}
					dup++
				case bad && (r.Status != dataverse.NotWritten || !dataverse.IsCode(r.Err, code)):
					t.Errorf("record %d: %v %v, want failed with %s", i, r.Status, r.Err, code)
				case !bad && r.Status != dataverse.Created:
					t.Errorf("record %d: %v %v", i, r.Status, r.Err)
				}
			}
			if dup != 1 {
				t.Errorf("%d of the two records sharing a key failed, want 1", dup)
			}
			if n := sim.RowCount("contacts"); n != 97 {
				t.Errorf("%d contacts, want 97", n)
			}
			if kinds := sim.Counters().ByKind; noMultiple && kinds["createMultiple"] != 0 {
				t.Errorf("CreateMultiple used although unavailable: %v", kinds)
			}
		})
	}
}

func TestUpsertByAlternateKeyEveryMode(t *testing.T) {
	for _, mode := range []dataverse.WriteMode{dataverse.ModeBulk, dataverse.ModeBatch, dataverse.ModeSingle} {
		t.Run(string(mode), func(t *testing.T) {
			sim, c := simClient(t, dvsim.Config{Accounts: 3})
			ws := contactWrites(60, false)
			for i := range ws {
				ws[i].Key.Alt = map[string]any{"dvb_legacyid": fmt.Sprintf("L'%d", i)}
			}
			for pass := 0; pass < 2; pass++ {
				rs, err := c.Upsert(context.Background(), contacts, ws, dataverse.WriteOptions{Mode: mode, BatchSize: 25})
				if err != nil || countStatus(rs)[dataverse.Upserted] != 60 {
					t.Fatalf("pass %d: %v %v", pass, countStatus(rs), err)
				}
			}
			if n := sim.RowCount("contacts"); n != 60 {
				t.Fatalf("%d contacts, want 60", n)
			}
			if c := sim.Counters(); c.Creates != 60 {
				t.Errorf("creates %d, want 60", c.Creates)
			}
			if mode == dataverse.ModeBulk && sim.Counters().ByKind["upsertMultiple"] == 0 {
				t.Errorf("no UpsertMultiple sent")
			}
		})
	}
}
