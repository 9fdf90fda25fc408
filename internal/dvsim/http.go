package dvsim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const apiPrefix = "/api/data/v9.2/"

// answer is a response before the shared headers, latency and cost are applied.
type answer struct {
	status  int
	header  http.Header
	body    []byte
	cost    time.Duration // server time
	writes  []string      // records written and kept (for OnWrite and the counters)
	creates int           // records an upsert created
}

func jsonAnswer(status int, v any, cost time.Duration) *answer {
	b, _ := json.Marshal(v)
	return &answer{status: status, header: http.Header{"Content-Type": {"application/json; odata.metadata=minimal"}}, body: b, cost: cost}
}

func errAnswer(status int, code, msg string) *answer {
	return jsonAnswer(status, map[string]any{"error": map[string]string{"code": code, "message": msg}}, 0)
}

// Handler serves the Web API.
func (s *Sim) Handler() http.Handler { return http.HandlerFunc(s.serve) }

func userOf(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if a == "" {
		return "anonymous"
	}
	h := sha256.Sum256([]byte(a))
	return hex.EncodeToString(h[:8])
}

// pick routes by the ARRAffinity cookie when the client sends one, else round robin.
func (s *Sim) pick(r *http.Request) *server {
	if c, err := r.Cookie("ARRAffinity"); err == nil {
		for _, sv := range s.servers {
			if c.Value == affinityToken(sv.idx) {
				return sv
			}
		}
	}
	return s.servers[int(s.rr.Add(1))%len(s.servers)]
}

func affinityToken(i int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("dvsim-server-%d", i)))
	return hex.EncodeToString(h[:16])
}

func (s *Sim) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	user := userOf(r)
	s.c.requests.Add(1)
	s.c.inFlight.Add(1)
	defer s.c.inFlight.Add(-1)
	client := r.Header.Get("x-ms-client-session-id")
	if client == "" {
		client = user
	}
	s.noteArrival(client, now)
	sv := s.pick(r)
	drop, errStatus, storm, left, slow := s.faults.take(now)
	latency := s.scale(s.cfg.Latency) + slow
	if drop {
		s.c.dropped.Add(1)
		abort(w)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 128<<20))
	if err != nil {
		return
	}
	if storm != "" {
		s.reply(w, sv, user, client, latency, s.throttledAnswer(&throttled{code: storm, msg: s.message(storm), after: max(left, s.scale(time.Second))}))
		return
	}
	if errStatus != 0 {
		s.c.errors5xx.Add(1)
		s.reply(w, sv, user, client, latency, errAnswer(errStatus, "0x80040216", "An unexpected error occurred (simulated outage)."))
		return
	}
	th, done := s.admit(sv, user, now)
	if th != nil {
		s.reply(w, sv, user, client, latency, s.throttledAnswer(th))
		return
	}
	a := s.route(r, body, true)
	for _, id := range a.writes {
		s.c.wrote(id)
	}
	s.c.creates.Add(int64(a.creates))
	time.Sleep(s.scale(a.cost))
	done(s.scale(a.cost))
	s.c.execTotal.Add(int64(s.scale(a.cost)))
	if len(a.writes) > 0 && s.cfg.OnWrite != nil {
		s.cfg.OnWrite(a.writes)
	}
	if len(a.writes) > 0 && s.faults.loseAnswer() {
		s.c.dropped.Add(1)
		abort(w)
		return
	}
	s.reply(w, sv, user, client, latency, a)
}

func (s *Sim) throttledAnswer(t *throttled) *answer {
	s.c.throttle(t.code)
	a := errAnswer(http.StatusTooManyRequests, t.code, t.msg)
	a.header.Set("Retry-After", s.retryAfter(t.after))
	return a
}

// reply sends an answer after the network latency, with the headers every response carries.
func (s *Sim) reply(w http.ResponseWriter, sv *server, user, client string, latency time.Duration, a *answer) {
	time.Sleep(latency)
	h := w.Header()
	for k, v := range a.header {
		h[k] = v
	}
	burst, secs := s.remaining(sv, user)
	h.Set("OData-Version", "4.0")
	h.Set("x-ms-dop-hint", strconv.Itoa(s.cfg.DOPHint))
	h.Set("x-ms-ratelimit-burst-remaining-xrm-requests", strconv.Itoa(burst))
	h.Set("x-ms-ratelimit-time-remaining-xrm-requests", formatSeconds(secs))
	rid := fmt.Sprintf("%08x-0000-4000-8000-%012x", time.Now().UnixNano()&0xffffffff, s.c.requests.Load())
	h.Set("x-ms-service-request-id", rid)
	h.Set("REQ_ID", rid)
	h.Add("Set-Cookie", "ARRAffinity="+affinityToken(sv.idx)+"; path=/; secure; HttpOnly")
	h.Add("Set-Cookie", "ReqClientId=4fc95009-0b3d-4a19-b223-0d80745636ac; path=/; secure; HttpOnly")
	h.Add("Set-Cookie", "orgId=00aa00aa-bb11-cc22-dd33-44ee44ee44ee; path=/; secure; HttpOnly")
	if a.status == http.StatusTooManyRequests {
		wait, _ := strconv.ParseFloat(a.header.Get("Retry-After"), 64)
		defer s.noteDelivered(client, time.Duration(wait*float64(time.Second)))
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// formatSeconds renders "1,200.00" as Dataverse does.
func formatSeconds(v float64) string {
	s := strconv.FormatFloat(v, 'f', 2, 64)
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String() + "." + frac
}

var (
	singleRE = regexp.MustCompile(`^accounts\(([0-9a-fA-F-]{36})\)$`)
	actionRE = regexp.MustCompile(`^accounts\(([0-9a-fA-F-]{36})\)/Microsoft\.Dynamics\.CRM\.([A-Za-z0-9_]+)$`)
	setRE    = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)`)
)

// route dispatches one request; top is false for the operations inside a $batch, which count
// under batchOps rather than their own kind.
func (s *Sim) route(r *http.Request, body []byte, top bool) *answer {
	kind := func(k string, n int64) {
		if top {
			s.c.kind(k, n)
		}
	}
	path := strings.TrimPrefix(r.URL.Path, apiPrefix)
	if path == r.URL.Path {
		return errAnswer(http.StatusNotFound, "", "No HTTP resource was found that matches the request URI '"+r.URL.Path+"'.")
	}
	switch {
	case path == "$batch" && r.Method == http.MethodPost && top:
		return s.batch(r, body)
	case path == "accounts" && r.Method == http.MethodGet:
		kind("query", 1)
		if s.ct.on.Load() && strings.Contains(strings.Join(r.Header.Values("Prefer"), ","), "odata.track-changes") {
			return s.delta(r)
		}
		return s.query(r)
	case strings.HasPrefix(path, "EntityDefinitions(") && r.Method == http.MethodGet:
		kind("metadata", 1)
		return s.entityDefinition(path)
	case path == "sdkmessagefilters" && r.Method == http.MethodGet:
		kind("probe", 1)
		return s.probe(r)
	case path == "WhoAmI" && r.Method == http.MethodGet:
		return jsonAnswer(http.StatusOK, map[string]string{"UserId": "00000000-0000-0000-0000-0000000000aa"}, s.cfg.Cost.Action)
	case path == "accounts/Microsoft.Dynamics.CRM.UpdateMultiple" && r.Method == http.MethodPost:
		if s.cfg.NoUpdateMultiple {
			return errAnswer(http.StatusNotFound, "0x8006088a", "Resource not found for the segment 'Microsoft.Dynamics.CRM.UpdateMultiple'.")
		}
		kind("updateMultiple", 1)
		return s.updateMultiple(body)
	}
	if m := singleRE.FindStringSubmatch(path); m != nil {
		id := strings.ToLower(m[1])
		switch r.Method {
		case http.MethodGet:
			kind("get", 1)
			return s.getOne(r, id)
		case http.MethodPatch:
			kind("patch", 1)
			return s.patch(r, id, body)
		}
		return errAnswer(http.StatusMethodNotAllowed, "", "The requested resource does not support http method '"+r.Method+"'.")
	}
	if m := actionRE.FindStringSubmatch(path); m != nil && r.Method == http.MethodPost {
		kind("action", 1)
		return s.action(strings.ToLower(m[1]), m[2])
	}
	if a := s.routeTable(r, path, body, kind); a != nil {
		return a
	}
	seg := setRE.FindString(path)
	return errAnswer(http.StatusNotFound, "0x8006088a", fmt.Sprintf("Resource not found for the segment '%s'.", seg))
}

func notFound(id string) *answer {
	return errAnswer(http.StatusNotFound, "0x80040217", fmt.Sprintf("account With Id = %s Does Not Exist", id))
}

// patch is an update with If-Match semantics, or an upsert without.
func (s *Sim) patch(r *http.Request, id string, body []byte) *answer {
	fields, err := decodeBody(body)
	if err != nil {
		return errAnswer(http.StatusBadRequest, "0x80048d19", "Error identified in Payload provided by the user for Entity :'accounts': "+err.Error())
	}
	ifMatch, ifNone := r.Header.Get("If-Match"), r.Header.Get("If-None-Match")
	s.mu.Lock()
	rec := s.tab.lookup(id)
	exists := rec != nil
	switch {
	case ifNone == "*" && exists:
		s.mu.Unlock()
		return errAnswer(http.StatusPreconditionFailed, "0x80040237", "A record with matching key values already exists.")
	case ifMatch == "*" && !exists:
		s.mu.Unlock()
		return notFound(id)
	case ifMatch != "" && ifMatch != "*" && (!exists || ifMatch != etag(rec.version)):
		s.mu.Unlock()
		if !exists {
			return notFound(id)
		}
		return errAnswer(http.StatusPreconditionFailed, "0x80060882", "The version of the existing record doesn't match the RowVersion property provided.")
	}
	if s.faults.rejects(id) {
		s.mu.Unlock()
		return rejected(id)
	}
	next := record{seq: -1}
	if exists {
		next = *rec
	}
	if err := next.apply(fields); err != nil {
		s.mu.Unlock()
		return errAnswer(http.StatusBadRequest, "0x0", err.Error())
	}
	if !exists {
		rec = s.tab.create(id)
		next.version = 0
	}
	next.version++
	next.modified = time.Now().UnixNano()
	*rec = next
	s.mu.Unlock()
	a := &answer{status: http.StatusNoContent, header: http.Header{}, cost: s.cfg.Cost.Patch, writes: []string{id}, creates: b2i(!exists)}
	if strings.Contains(r.Header.Get("Prefer"), "return=representation") {
		row, _ := s.Get(id)
		sel, _ := parseSelect(r.URL.Query().Get("$select"))
		b, _ := json.Marshal(selectCols(withETag(id, row), sel))
		a.status, a.body = http.StatusOK, b
		a.header.Set("Content-Type", "application/json; odata.metadata=minimal")
		a.header.Set("Preference-Applied", "return=representation")
	}
	return a
}

func rejected(id string) *answer {
	return errAnswer(http.StatusBadRequest, "0x80040265", "ISV code aborted the operation: rejected record "+id)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func etag(v int64) string { return `W/"` + strconv.FormatInt(v, 10) + `"` }

func decodeBody(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// updateMultiple applies all targets or none (standard tables are all-or-nothing).
func (s *Sim) updateMultiple(body []byte) *answer {
	var req struct {
		Targets []map[string]any `json:"Targets"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil || len(req.Targets) == 0 {
		return errAnswer(http.StatusBadRequest, "0x80048d19", "Error identified in Payload provided by the user for Entity :'accounts': Targets is required.")
	}
	cost := s.cfg.Cost.BulkBase + time.Duration(len(req.Targets))*s.cfg.Cost.BulkPerRecord
	s.c.kind("updateMultipleRecords", int64(len(req.Targets)))
	fail := func(a *answer) *answer { a.cost = cost; return a }
	s.mu.Lock()
	defer s.mu.Unlock()
	work := map[*record]*record{} // a working copy per record, so repeated targets compose
	ids := make([]string, len(req.Targets))
	for i, t := range req.Targets {
		if t["@odata.type"] != "Microsoft.Dynamics.CRM.account" {
			return fail(errAnswer(http.StatusBadRequest, "0x80048d19", fmt.Sprintf("Error identified in Payload provided by the user for Entity :'accounts': the property '@odata.type' of Targets[%d] must be 'Microsoft.Dynamics.CRM.account'.", i)))
		}
		id, _ := t["accountid"].(string)
		id = strings.ToLower(id)
		rec := s.tab.lookup(id)
		if rec == nil {
			// UpdateMultiple is not an upsert: a missing target fails the whole request, in the
			// wording "Troubleshoot Dataverse bulk operation errors" documents.
			return fail(errAnswer(http.StatusNotFound, "0x80040217", fmt.Sprintf("account With Ids = %s Do Not Exist", id)))
		}
		if s.faults.rejects(id) {
			return fail(rejected(id))
		}
		w := work[rec]
		if w == nil {
			cp := *rec
			w = &cp
			work[rec] = w
		}
		if err := w.apply(t); err != nil {
			return fail(errAnswer(http.StatusBadRequest, "0x0", err.Error()))
		}
		ids[i] = id
	}
	now := time.Now().UnixNano()
	for rec, w := range work {
		w.version = rec.version + 1
		w.modified = now
		*rec = *w
	}
	return &answer{status: http.StatusNoContent, header: http.Header{}, cost: cost, writes: ids}
}

// action runs the bound sample action dvb_RecalculateScore.
func (s *Sim) action(id, name string) *answer {
	if name != "dvb_RecalculateScore" {
		return errAnswer(http.StatusNotFound, "0x8006088a", fmt.Sprintf("Resource not found for the segment 'Microsoft.Dynamics.CRM.%s'.", name))
	}
	if s.faults.rejects(id) {
		return rejected(id)
	}
	s.mu.Lock()
	rec := s.tab.lookup(id)
	if rec != nil {
		rec.setString("description", "recalculated")
		rec.version++
		rec.modified = time.Now().UnixNano()
	}
	s.mu.Unlock()
	if rec == nil {
		return notFound(id)
	}
	return &answer{status: http.StatusNoContent, header: http.Header{}, cost: s.cfg.Cost.Action, writes: []string{id}}
}

func (s *Sim) probe(r *http.Request) *answer {
	value := []map[string]string{}
	f := r.URL.Query().Get("$filter")
	if !s.cfg.NoUpdateMultiple && strings.Contains(f, "'UpdateMultiple'") && strings.Contains(f, "'account'") {
		value = append(value, map[string]string{"sdkmessagefilterid": "6b1c5b4e-0000-4000-8000-00000000f11e"})
	}
	if s.tableSupports(f) {
		value = append(value, map[string]string{"sdkmessagefilterid": "6b1c5b4e-0000-4000-8000-00000000f11f"})
	}
	return jsonAnswer(http.StatusOK, map[string]any{"value": value}, s.cfg.Cost.PageRead/10)
}
