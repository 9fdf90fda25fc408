package dvsim_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"dvbulk/internal/dvsim"
)

func wantError(t *testing.T, r raw, status int, code, msgPart string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	c, m := errorOf(t, r)
	if c != code || !strings.Contains(m, msgPart) {
		t.Fatalf("error %s %q, want %s containing %q", c, m, code, msgPart)
	}
}

func TestContactCreateLookupsAndKeys(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 5})
	base, stop := sim.Start()
	defer stop()
	post := func(body string) raw { return send(t, base, http.MethodPost, "contacts", nil, body) }

	r := post(`{"firstname":"Ada","lastname":"Lovelace","emailaddress1":"ada@example.com","dvb_legacyid":"L-1",
		"birthdate":"1815-12-10","numberofchildren":3,"creditlimit":1234.5,"donotemail":true,"accountrolecode":1,
		"lastusedincampaign":"2024-05-01T10:00:00+02:00","parentcustomerid_account@odata.bind":"/accounts(accountnumber='` + dvsim.AccountNumber(2) + `')"}`)
	if r.status != http.StatusNoContent {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	loc := r.header.Get("OData-EntityId")
	id := loc[strings.LastIndexByte(loc, '(')+1 : len(loc)-1]
	row, ok := sim.Row("contacts", id)
	if !ok || row["_parentcustomerid_value"] != dvsim.AccountID(2) || row["lastusedincampaign"] != "2024-05-01T08:00:00Z" || row["numberofchildren"] != int64(3) {
		t.Fatalf("row %v %v", row, ok)
	}
	// Addressed by its alternate key, case-insensitively as SQL collation compares.
	g := send(t, base, http.MethodGet, "contacts(dvb_legacyid='l-1')", nil, "")
	var got map[string]any
	if g.status != 200 || json.Unmarshal([]byte(g.body), &got) != nil || got["contactid"] != id {
		t.Fatalf("get by key: %d %s", g.status, g.body)
	}

	// The documented errors.
	wantError(t, post(`{"contactid":"`+id+`","lastname":"Again"}`), 412, "0x80040237", "Cannot insert duplicate key")
	wantError(t, post(`{"lastname":"Twin","emailaddress1":"ADA@example.com"}`), 412, "0x80060892", "The entity key contact_email_key requires that this set of attributes contains unique values")
	wantError(t, post(`{"lastname":"X","parentcustomerid_account@odata.bind":"/accounts(accountnumber='ACC-999999')"}`), 404, "0x80060891", "A record with the specified key values does not exist in account entity")
	wantError(t, post(`{"lastname":"X","parentcustomerid_account@odata.bind":"/accounts(00000000-0000-4000-8000-000000000009)"}`), 404, "0x80040217", "account With Id = 00000000-0000-4000-8000-000000000009 Does Not Exist")
	wantError(t, post(`{"lastname":"X","parentcustomerid_account@odata.bind":"/accounts(name='Contoso')"}`), 400, "0x80060888", "The specified key attributes are not a defined key for the account entity")
	wantError(t, send(t, base, http.MethodGet, "contacts(firstname='Ada')", nil, ""), 400, "0x80060888", "not a defined key for the contact entity")
	wantError(t, post(`{"lastname":"X","nosuchcolumn":1}`), 400, "0x0", "Could not find a property named 'nosuchcolumn' on type 'Microsoft.Dynamics.CRM.contact'")
	wantError(t, post(`{"lastname":"X","numberofchildren":"three"}`), 400, "0x0", "Edm.Int32")
	wantError(t, post(`{"lastname":"X","accountrolecode":9}`), 400, "0x0", "outside the valid range")
	wantError(t, post(`{"lastname":"`+strings.Repeat("x", 51)+`"}`), 400, "0x0", "exceeded the maximum allowed length of '50'")
	wantError(t, post(`{"lastname":"X","nosuch_account@odata.bind":"/accounts(`+dvsim.AccountID(1)+`)"}`), 400, "0x0", "An undeclared property 'nosuch_account'")
	if n := sim.RowCount("contacts"); n != 1 {
		t.Fatalf("%d contacts after the refused creates, want 1", n)
	}
}

func TestContactUpsertByAlternateKey(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 1})
	base, stop := sim.Start()
	defer stop()
	patch := func(path string, hdr map[string]string, body string) raw {
		return send(t, base, http.MethodPatch, path, hdr, body)
	}
	if r := patch("contacts(dvb_legacyid='L-7')", nil, `{"lastname":"First"}`); r.status != 204 {
		t.Fatalf("upsert create: %d %s", r.status, r.body)
	}
	if r := patch("contacts(dvb_legacyid='L-7')", nil, `{"lastname":"Second"}`); r.status != 204 {
		t.Fatalf("upsert update: %d %s", r.status, r.body)
	}
	rows := sim.Rows("contacts")
	if len(rows) != 1 || rows[0]["lastname"] != "Second" || rows[0]["dvb_legacyid"] != "L-7" {
		t.Fatalf("rows %v", rows)
	}
	if c := sim.Counters(); c.Creates != 1 {
		t.Errorf("creates %d, want 1", c.Creates)
	}
	wantError(t, patch("contacts(dvb_legacyid='L-7')", map[string]string{"If-None-Match": "*"}, `{"lastname":"Third"}`), 412, "0x80040237", "already exists")
	wantError(t, patch("contacts(dvb_legacyid='L-8')", map[string]string{"If-Match": "*"}, `{"lastname":"Nobody"}`), 404, "0x80060891", "does not exist in contact entity")
}

func TestCreateAndUpsertMultipleAreAllOrNothing(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 3})
	base, stop := sim.Start()
	defer stop()
	target := func(extra string) string {
		return `{"@odata.type":"Microsoft.Dynamics.CRM.contact",` + extra + `}`
	}
	post := func(action string, targets ...string) raw {
		return send(t, base, http.MethodPost, "contacts/Microsoft.Dynamics.CRM."+action, nil, `{"Targets":[`+strings.Join(targets, ",")+`]}`)
	}
	r := post("CreateMultiple", target(`"lastname":"A","emailaddress1":"a@x"`), target(`"lastname":"B","emailaddress1":"b@x"`))
	var ids struct{ Ids []string }
	if r.status != 200 || json.Unmarshal([]byte(r.body), &ids) != nil || len(ids.Ids) != 2 {
		t.Fatalf("CreateMultiple: %d %s", r.status, r.body)
	}
	// One bad target (a repeated e-mail key) fails the whole request.
	wantError(t, post("CreateMultiple", target(`"lastname":"C","emailaddress1":"c@x"`), target(`"lastname":"D","emailaddress1":"a@x"`)), 412, "0x80060892", "contact_email_key")
	if n := sim.RowCount("contacts"); n != 2 {
		t.Fatalf("%d contacts after a failed CreateMultiple, want 2", n)
	}
	wantError(t, post("CreateMultiple", `{"lastname":"no type"}`), 400, "0x80048d19", "@odata.type")

	up := func(key, name string) string {
		return target(`"@odata.id":"contacts(dvb_legacyid='` + key + `')","lastname":"` + name + `"`)
	}
	if r := post("UpsertMultiple", up("L-1", "One"), up("L-2", "Two")); r.status != 204 {
		t.Fatalf("UpsertMultiple: %d %s", r.status, r.body)
	}
	if r := post("UpsertMultiple", up("L-1", "One again"), up("L-3", "Three")); r.status != 204 {
		t.Fatalf("UpsertMultiple: %d %s", r.status, r.body)
	}
	if n := sim.RowCount("contacts"); n != 5 {
		t.Fatalf("%d contacts, want 5", n)
	}
	wantError(t, post("UpsertMultiple", up("L-4", "Four"), target(`"@odata.id":"contacts(dvb_legacyid='L-5')","parentcustomerid_account@odata.bind":"/accounts(accountnumber='nope')"`)), 404, "0x80060891", "account entity")
	if n := sim.RowCount("contacts"); n != 5 {
		t.Fatalf("%d contacts after a failed UpsertMultiple, want 5", n)
	}
}

func TestMultipleProbeAndUnavailable(t *testing.T) {
	for _, off := range []bool{false, true} {
		sim := dvsim.New(dvsim.Config{Accounts: 1, NoCreateMultiple: off, NoUpsertMultiple: off})
		base, stop := sim.Start()
		probe := send(t, base, http.MethodGet, "sdkmessagefilters?$select=sdkmessagefilterid&$filter="+
			strings.ReplaceAll("sdkmessageid/name eq 'CreateMultiple' and primaryobjecttypecode eq 'contact'", " ", "%20"), nil, "")
		if found := strings.Contains(probe.body, "sdkmessagefilterid\":"); found == off {
			t.Errorf("off=%v: probe %s", off, probe.body)
		}
		r := send(t, base, http.MethodPost, "contacts/Microsoft.Dynamics.CRM.CreateMultiple", nil, `{"Targets":[{"@odata.type":"Microsoft.Dynamics.CRM.contact","lastname":"A"}]}`)
		if (r.status == 404) != off {
			t.Errorf("off=%v: CreateMultiple %d %s", off, r.status, r.body)
		}
		stop()
	}
}

func TestChangeSetUndoesContactWrites(t *testing.T) {
	sim := dvsim.New(dvsim.Config{Accounts: 1})
	base, stop := sim.Start()
	defer stop()
	create := func(body string) string {
		return "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n" +
			"POST /api/data/v9.2/contacts HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n" + body + "\r\n"
	}
	r := postBatch(t, base, batchBody(changeSet(create(`{"lastname":"A","emailaddress1":"dup@x"}`), create(`{"lastname":"B","emailaddress1":"dup@x"}`))), false)
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "0x80060892") {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	if n := sim.RowCount("contacts"); n != 0 {
		t.Fatalf("%d contacts after a failed change set, want 0", n)
	}
	r = postBatch(t, base, batchBody(create(`{"lastname":"A","emailaddress1":"dup@x"}`), create(`{"lastname":"B","emailaddress1":"dup@x"}`), create(`{"lastname":"C"}`)), true)
	if n := sim.RowCount("contacts"); n != 2 || strings.Count(r.body, "HTTP/1.1 204") != 2 {
		t.Fatalf("independent operations: %d contacts, body %s", n, r.body)
	}
}
