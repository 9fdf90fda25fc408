package dvsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
)

type writeMode int

const (
	modeCreate writeMode = iota // the record must not exist
	modeUpsert                  // create or update
	modeUpdate                  // the record must exist
)

// change is one applied row write, kept so an all-or-nothing operation can undo it.
type change struct {
	t        *dtable
	k        key
	old, new *drow
}

// put replaces row k (nil removes it), keeping the alternate-key indexes in step.
func (t *dtable) put(k key, old, nu *drow) {
	for i := range t.def.Keys {
		if old != nil {
			if v := t.altValue(i, old.vals); v != "" && t.alt[i][v] == k {
				delete(t.alt[i], v)
			}
		}
	}
	for i := range t.def.Keys {
		if nu != nil {
			if v := t.altValue(i, nu.vals); v != "" {
				t.alt[i][v] = k
			}
		}
	}
	if nu == nil {
		delete(t.rows, k)
	} else {
		t.rows[k] = nu
	}
}

func undo(cs []change) {
	for i := len(cs) - 1; i >= 0; i-- {
		c := cs[i]
		c.t.put(c.k, c.new, c.old)
	}
}

// write applies fields to the record addr names (nil: a new record whose id is in the body or
// generated) under mode. The caller holds s.mu. It returns the record's id and whether it was
// created, or the Web API's error answer.
func (s *Sim) write(t *dtable, addr *keyAddr, fields map[string]any, mode writeMode) (change, *answer) {
	def := t.def
	var k key
	exists := false
	if addr != nil {
		var bad *answer
		if k, exists, bad = t.find(*addr); bad != nil {
			return change{}, bad
		}
		if !addr.isID && !exists {
			k = key{}
		}
	}
	if v, ok := fields[def.PrimaryKey]; ok && v != nil {
		s, isStr := v.(string)
		bk, valid := parseKey(s)
		if !isStr || !valid {
			return change{}, errAnswer(http.StatusBadRequest, "0x0", typeErr(def.PrimaryKey, "Edm.Guid", v).Error())
		}
		switch {
		case addr == nil || !addr.isID && !exists:
			k = bk
			_, exists = t.rows[k]
		case bk != k:
			return change{}, badPayload(def.EntitySet, fmt.Sprintf("the %s in the payload does not match the record's key", def.PrimaryKey))
		}
	}
	switch {
	case mode == modeCreate && exists:
		return change{}, duplicateKey()
	case mode == modeUpdate && !exists:
		if addr != nil && !addr.isID {
			return change{}, noSuchKeyRecord(def.LogicalName)
		}
		return change{}, noSuchRecord(def.LogicalName, k.String())
	}
	if k == (key{}) {
		k, _ = parseKey(uuid.NewString())
	}
	old := t.rows[k]
	nu := &drow{vals: make([]any, len(t.types))}
	now := time.Now().UnixNano()
	if old != nil {
		*nu = *old
		nu.vals = append([]any(nil), old.vals...)
	} else {
		nu.created = now
		if addr != nil && !addr.isID {
			// An upsert by alternate key that creates the record sets the key's columns.
			for i, n := range addr.names {
				nu.vals[t.col[n]] = addr.vals[i]
			}
		}
	}
	for name, v := range fields {
		if name == def.PrimaryKey || strings.HasPrefix(name, "@odata.") {
			continue
		}
		if nav, ok := strings.CutSuffix(name, "@odata.bind"); ok {
			l := t.lookup(nav)
			if l == nil {
				return change{}, errAnswer(http.StatusBadRequest, "0x0", fmt.Sprintf("An undeclared property '%s' which only has property annotations in the payload but no property value was found in the payload. In OData, only declared navigation properties and declared named streams can be represented as properties without values.", nav))
			}
			ref, isStr := v.(string)
			if !isStr {
				return change{}, errAnswer(http.StatusBadRequest, "0x0", fmt.Sprintf("The value of '%s' must be a record reference.", name))
			}
			id, bad := s.resolveRef(ref)
			if bad != nil {
				return change{}, bad
			}
			nu.vals[t.col[l.Column]] = id
			continue
		}
		i, known := t.col[name]
		if !known || strings.HasPrefix(name, "_") {
			return change{}, errAnswer(http.StatusBadRequest, "0x0", fmt.Sprintf("Could not find a property named '%s' on type 'Microsoft.Dynamics.CRM.%s'.", name, def.LogicalName))
		}
		cv, err := convert(def.LogicalName, t.types[i], v)
		if err != nil {
			return change{}, errAnswer(http.StatusBadRequest, "0x0", err.Error())
		}
		nu.vals[i] = cv
	}
	for i, kd := range def.Keys {
		if v := t.altValue(i, nu.vals); v != "" {
			if owner, taken := t.alt[i][v]; taken && owner != k {
				return change{}, duplicateAltKey(kd)
			}
		}
	}
	if s.faults.rejects(k.String()) {
		return change{}, rejected(k.String())
	}
	nu.version = s.nextVersion()
	nu.modified = now
	t.put(k, old, nu)
	return change{t: t, k: k, old: old, new: nu}, nil
}

func (t *dtable) lookup(nav string) *LookupDef {
	for i := range t.def.Lookups {
		if t.def.Lookups[i].Nav == nav {
			return &t.def.Lookups[i]
		}
	}
	return nil
}

// nextVersion hands out row versions shared by all declared tables; the caller holds s.mu.
func (s *Sim) nextVersion() int64 {
	s.rowVersion++
	return 1_000_000_000 + s.rowVersion
}

// routeTable serves the declared tables: POST (create), PATCH (upsert/update), GET and DELETE
// by key, CreateMultiple and UpsertMultiple. It returns nil for a path it does not serve.
func (s *Sim) routeTable(r *http.Request, path string, body []byte, kind func(string, int64)) *answer {
	set, rest, _ := strings.Cut(path, "/")
	if i := strings.IndexByte(set, '('); i >= 0 {
		set = set[:i]
	}
	t := s.tables[set]
	if t == nil {
		return nil
	}
	switch {
	case path == set && r.Method == http.MethodPost:
		kind("create", 1)
		return s.createOne(r, t, body)
	case rest == "Microsoft.Dynamics.CRM.CreateMultiple" && r.Method == http.MethodPost:
		return s.multiple(t, body, modeCreate, kind)
	case rest == "Microsoft.Dynamics.CRM.UpsertMultiple" && r.Method == http.MethodPost:
		return s.multiple(t, body, modeUpsert, kind)
	case rest == "" && strings.HasPrefix(path, set+"(") && strings.HasSuffix(path, ")"):
		a, err := parseSegment(t.def.PrimaryKey, path[len(set)+1:len(path)-1])
		if err != nil {
			return errAnswer(http.StatusBadRequest, "0x0", "Bad Request - Error in query syntax.")
		}
		switch r.Method {
		case http.MethodGet:
			kind("get", 1)
			return s.getRow(t, a)
		case http.MethodPatch:
			kind("patch", 1)
			return s.patchRow(r, t, a, body)
		case http.MethodDelete:
			kind("delete", 1)
			s.mu.Lock()
			defer s.mu.Unlock()
			k, exists, bad := t.find(a)
			if bad != nil {
				return bad
			}
			if !exists {
				return noSuchRecord(t.def.LogicalName, k.String())
			}
			t.put(k, t.rows[k], nil)
			return &answer{status: http.StatusNoContent, header: http.Header{}, cost: s.cfg.Cost.Patch}
		}
		return errAnswer(http.StatusMethodNotAllowed, "", "The requested resource does not support http method '"+r.Method+"'.")
	}
	return nil
}

func entityID(r *http.Request, set string, k key) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + apiPrefix + set + "(" + k.String() + ")"
}

// journalKey carries, on a change set's operation, the log its declared-table writes go to so
// that a failing change set can undo them.
type journalKey struct{}

func journal(r *http.Request, c change) {
	if j, ok := r.Context().Value(journalKey{}).(*[]change); ok {
		*j = append(*j, c)
	}
}

func (s *Sim) createOne(r *http.Request, t *dtable, body []byte) *answer {
	fields, err := decodeBody(body)
	if err != nil {
		return badPayload(t.def.EntitySet, err.Error())
	}
	s.mu.Lock()
	c, bad := s.write(t, nil, fields, modeCreate)
	if bad == nil {
		journal(r, c)
	}
	s.mu.Unlock()
	if bad != nil {
		bad.cost = s.cfg.Cost.Patch
		return bad
	}
	id := c.k.String()
	return &answer{status: http.StatusNoContent, header: http.Header{"OData-EntityId": {entityID(r, t.def.EntitySet, c.k)}}, cost: s.cfg.Cost.Patch, writes: []string{id}, creates: 1}
}

// patchRow is an upsert (no precondition), an update (If-Match: *) or a create (If-None-Match: *).
func (s *Sim) patchRow(r *http.Request, t *dtable, a keyAddr, body []byte) *answer {
	fields, err := decodeBody(body)
	if err != nil {
		return badPayload(t.def.EntitySet, err.Error())
	}
	mode := modeUpsert
	switch {
	case r.Header.Get("If-Match") == "*":
		mode = modeUpdate
	case r.Header.Get("If-None-Match") == "*":
		mode = modeCreate
	}
	s.mu.Lock()
	c, bad := s.write(t, &a, fields, mode)
	if bad == nil {
		journal(r, c)
	}
	s.mu.Unlock()
	if bad != nil {
		if mode == modeCreate && bad.status == http.StatusPreconditionFailed && strings.Contains(string(bad.body), "0x80040237") {
			bad = errAnswer(http.StatusPreconditionFailed, "0x80040237", "A record with matching key values already exists.")
		}
		bad.cost = s.cfg.Cost.Patch
		return bad
	}
	return &answer{status: http.StatusNoContent, header: http.Header{"OData-EntityId": {entityID(r, t.def.EntitySet, c.k)}}, cost: s.cfg.Cost.Patch, writes: []string{c.k.String()}, creates: b2i(c.old == nil)}
}

func (s *Sim) getRow(t *dtable, a keyAddr) *answer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, exists, bad := t.find(a)
	if bad != nil {
		return bad
	}
	if !exists {
		if a.isID {
			return noSuchRecord(t.def.LogicalName, k.String())
		}
		return noSuchKeyRecord(t.def.LogicalName)
	}
	row := t.rows[k]
	m := t.toMap(k, row)
	m["@odata.etag"] = etag(row.version)
	return jsonAnswer(http.StatusOK, m, s.cfg.Cost.PageRead/10)
}

// multiple runs CreateMultiple or UpsertMultiple: all targets or none, as on standard tables.
// An UpsertMultiple target names its record with @odata.id (an alternate key or id reference)
// or its primary key column; without either it creates a record.
func (s *Sim) multiple(t *dtable, body []byte, mode writeMode, kind func(string, int64)) *answer {
	name := map[writeMode]string{modeCreate: "createMultiple", modeUpsert: "upsertMultiple"}[mode]
	if (mode == modeCreate && s.cfg.NoCreateMultiple) || (mode == modeUpsert && s.cfg.NoUpsertMultiple) {
		msg := map[writeMode]string{modeCreate: "CreateMultiple", modeUpsert: "UpsertMultiple"}[mode]
		return errAnswer(http.StatusNotFound, "0x8006088a", "Resource not found for the segment 'Microsoft.Dynamics.CRM."+msg+"'.")
	}
	kind(name, 1)
	var req struct {
		Targets []map[string]any `json:"Targets"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil || len(req.Targets) == 0 {
		return badPayload(t.def.EntitySet, "Targets is required.")
	}
	if len(req.Targets) > s.cfg.MaxBatchSize {
		return badPayload(t.def.EntitySet, fmt.Sprintf("The number of Targets (%d) exceeds the maximum of %d.", len(req.Targets), s.cfg.MaxBatchSize))
	}
	kind(name+"Records", int64(len(req.Targets)))
	cost := s.cfg.Cost.BulkBase + time.Duration(len(req.Targets))*s.cfg.Cost.BulkPerRecord
	wantType := "Microsoft.Dynamics.CRM." + t.def.LogicalName
	s.mu.Lock()
	defer s.mu.Unlock()
	var done []change
	fail := func(a *answer) *answer {
		undo(done)
		a.cost = cost
		return a
	}
	for i, tg := range req.Targets {
		if tg["@odata.type"] != wantType {
			return fail(badPayload(t.def.EntitySet, fmt.Sprintf("the property '@odata.type' of Targets[%d] must be '%s'.", i, wantType)))
		}
		var addr *keyAddr
		if ref, ok := tg["@odata.id"].(string); ok && mode == modeUpsert {
			set, seg, ok := splitRef(ref)
			if !ok || set != t.def.EntitySet {
				return fail(badPayload(t.def.EntitySet, fmt.Sprintf("Targets[%d]: '@odata.id' %q does not name a record of %s.", i, ref, t.def.EntitySet)))
			}
			a, err := parseSegment(t.def.PrimaryKey, seg)
			if err != nil {
				return fail(errAnswer(http.StatusBadRequest, "0x0", "Bad Request - Error in query syntax."))
			}
			addr = &a
		}
		c, bad := s.write(t, addr, tg, mode)
		if bad != nil {
			return fail(bad)
		}
		done = append(done, c)
	}
	ids := make([]string, len(done))
	creates := 0
	for i, c := range done {
		ids[i] = c.k.String()
		creates += b2i(c.old == nil)
	}
	if mode == modeUpsert {
		return &answer{status: http.StatusNoContent, header: http.Header{}, cost: cost, writes: ids, creates: creates}
	}
	a := jsonAnswer(http.StatusOK, map[string]any{"@odata.context": "https://sim/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse", "Ids": ids}, cost)
	a.writes, a.creates = ids, creates
	return a
}

// Row returns a copy of a declared table's record by id, or false.
func (s *Sim) Row(set, id string) (map[string]any, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.tables[set]
	k, ok := parseKey(id)
	if t == nil || !ok {
		return nil, false
	}
	r := t.rows[k]
	if r == nil {
		return nil, false
	}
	return t.toMap(k, r), true
}

// Rows returns copies of all records of a declared table (in no particular order).
func (s *Sim) Rows(set string) []map[string]any {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.tables[set]
	if t == nil {
		return nil
	}
	out := make([]map[string]any, 0, len(t.rows))
	for k, r := range t.rows {
		out = append(out, t.toMap(k, r))
	}
	return out
}

// RowCount is the number of records in a declared table.
func (s *Sim) RowCount(set string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if t := s.tables[set]; t != nil {
		return len(t.rows)
	}
	return 0
}

// Seed inserts records into a declared table directly (no request, no cost), as existing data.
func (s *Sim) Seed(set string, rows []map[string]any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tables[set]
	if t == nil {
		return fmt.Errorf("dvsim: no declared table %q", set)
	}
	for i, r := range rows {
		if _, bad := s.write(t, nil, r, modeCreate); bad != nil {
			return fmt.Errorf("dvsim: seed %s row %d: %s", set, i, bad.body)
		}
	}
	return nil
}

// tableSupports answers the sdkmessagefilters probe for CreateMultiple and UpsertMultiple on a
// declared table.
func (s *Sim) tableSupports(filter string) bool {
	for _, t := range s.tables {
		if !strings.Contains(filter, "'"+t.def.LogicalName+"'") {
			continue
		}
		switch {
		case strings.Contains(filter, "'CreateMultiple'"):
			return !s.cfg.NoCreateMultiple
		case strings.Contains(filter, "'UpsertMultiple'"):
			return !s.cfg.NoUpsertMultiple
		}
	}
	return false
}
