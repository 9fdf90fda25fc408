package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/dvsim"
	"dvbulk/internal/job"
)

// contactsCSV is a legacy CRM export for the built-in import-contacts job: n rows with quoted
// fields (commas, doubled quotes), a multi-line note every 40th row, lookups to the seeded
// accounts by account number, and 1% bad rows (one in a hundred, of four kinds in turn). It returns the file, the legacy ids
// that must exist afterwards, and the bad rows' record numbers with what their reason must say.
func contactsCSV(n, accounts int) (string, map[string]bool, map[int64]string) {
	var b strings.Builder
	b.WriteString("legacy_id,first_name,last_name,email,phone,city,birthdate,children,credit_limit,do_not_email,role,account_number,notes\r\n")
	good, bad := map[string]bool{}, map[int64]string{}
	for i := 1; i <= n; i++ {
		id, last, children, account := fmt.Sprintf("CRM-%06d", i), fmt.Sprintf(`"Smith, ""%d"""`, i), fmt.Sprint(i%4), dvsim.AccountNumber(i%accounts)
		notes := "called twice"
		if i%40 == 0 {
			notes = "\"met at the fair,\r\nfollow up in spring\""
		}
		switch kind := (i / 100) % 4; {
		case i%100 != 17:
		case kind == 0:
			children, bad[int64(i)] = "lots", `column "children"`
		case kind == 1:
			last, bad[int64(i)] = `""`, `column "last_name": required but empty`
		case kind == 2:
			account, bad[int64(i)] = "ACC-999999", "lookup target not found"
		case kind == 3:
			id, bad[int64(i)] = fmt.Sprintf("CRM-%06d", i-1), "key repeated in the file"
		}
		if _, isBad := bad[int64(i)]; !isBad {
			good[id] = true
		}
		fmt.Fprintf(&b, "%s,Jo,%s,jo%d@example.com,+1 555 %04d,Springfield,1980-02-%02d,%s,1250.50,%v,Employee,%s,%s\r\n",
			id, last, i, i%10000, 1+i%28, children, i%2 == 0, account, notes)
	}
	return b.String(), good, bad
}

// TestImportContactsWithKills imports 20,000 contacts from a CSV dropped in the import container,
// started by a queue message, while an instance is killed mid-chunk: every good row exists exactly
// once, and every bad row is reported with its record and line numbers.
func TestImportContactsWithKills(t *testing.T) {
	const rows, accounts = 20_000, 300
	var once sync.Once
	killed := make(chan struct{})
	var r *rig
	r = newRig(t, rigOptions{accounts: accounts, instances: 2, onLine: func(i int, line string) {
		if i == 0 && strings.Contains(line, "chunk claimed") {
			once.Do(func() {
				go func() {
					time.Sleep(150 * time.Millisecond)
					_ = r.host.Kill(0)
					close(killed)
				}()
			})
		}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	data, good, bad := contactsCSV(rows, accounts)
	imports, err := checkpoint.NewBlob(ctx, checkpoint.BlobConfig{ConnectionString: r.conn, Container: "dvbulk-imports"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := imports.Create(ctx, "imports/contacts.csv", []byte(data)); err != nil {
		t.Fatal(err)
	}
	defer r.serve(ctx)()
	r.host.Enqueue("dvbulk-chunks", `{"v":1,"kind":"start","job":"import-contacts","run":"import-1","source":"imports/contacts.csv"}`, true)
	select {
	case <-killed:
	case <-ctx.Done():
		t.Fatal("instance 0 never claimed a chunk")
	}
	if err := r.host.Restart(0); err != nil {
		t.Fatal(err)
	}
	sum := r.waitSummary(ctx, "import-1")

	seen := map[string]int{}
	for _, row := range r.dv.Rows("contacts") {
		id, _ := row["dvb_legacyid"].(string)
		seen[id]++
		if !good[id] {
			t.Errorf("contact that should not exist: %v", row)
		}
	}
	missing, twice := 0, 0
	for id := range good {
		switch seen[id] {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
	}
	if missing > 0 || twice > 0 {
		t.Errorf("%d good rows missing, %d created more than once", missing, twice)
	}
	if sum.Outcomes[job.OutcomeCreated] != len(good) || sum.Outcomes["failed"] != len(bad) {
		t.Errorf("outcomes %v, want %d created, %d failed", sum.Outcomes, len(good), len(bad))
	}
	for _, f := range sum.Failures {
		line := f.Row + 1 + (f.Row-1)/40 // the header is line 1; every 40th row has a two-line note
		if want, ok := bad[f.Row]; !ok || f.Line != line || !strings.Contains(f.Reason, want) || !strings.HasPrefix(f.Reason, fmt.Sprintf("record %d (line %d)", f.Row, line)) {
			t.Errorf("failure %+v, want record %d on line %d with %q", f, f.Row, line, bad[f.Row])
		}
	}
	if len(sum.Failures) != len(bad) {
		t.Errorf("%d failures listed, want %d", len(sum.Failures), len(bad))
	}
	row := r.dv.Rows("contacts")[0]
	if !strings.HasPrefix(row["lastname"].(string), `Smith, "`) || row["_parentcustomerid_value"] == nil || row["accountrolecode"] != int64(2) {
		t.Errorf("contact %v", row)
	}
	c := r.dv.Counters()
	t.Logf("%d contacts created, %d bad rows reported; %d CreateMultiple requests, %d single creates, killed instance 0 mid-chunk", len(seen), len(sum.Failures), c.ByKind["createMultiple"], c.ByKind["create"])
}
