package enrichsim

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// maxRequestBytes bounds a request body; 25 records with a name and a URL fit many times over.
const maxRequestBytes = 8 << 20

type request struct {
	Records []struct {
		ID *string `json:"id"`
	} `json:"records"`
}

type result struct {
	ID     string         `json:"id"`
	Fields map[string]any `json:"fields,omitempty"`
	Error  string         `json:"error,omitempty"`
}

func (s *Sim) serve(w http.ResponseWriter, r *http.Request) {
	c := &s.counters
	c.requests.Add(1)
	inFlight := c.enter()
	defer c.inFlight.Add(-1)

	if s.cfg.APIKey != "" &&
		subtle.ConstantTimeCompare([]byte(r.Header.Get(s.cfg.APIKeyHeader)), []byte(s.cfg.APIKey)) != 1 {
		s.reject(w, http.StatusUnauthorized, "missing or invalid API key")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.reject(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	if !s.admit(r, inFlight) {
		s.throttle(w, scaled(time.Second, s.cfg.TimeScale), "too many concurrent requests")
		return
	}
	defer s.leave()
	g := s.faults.takeGate(time.Now())
	switch {
	case g.throttleFor > 0:
		s.throttle(w, g.throttleFor, "throttled")
		return
	case g.fail:
		c.errors.Add(1)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "injected failure"})
		return
	}

	var req request
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBytes)).Decode(&req); err != nil {
		s.reject(w, http.StatusBadRequest, "invalid JSON: "+err.Error())
		return
	}
	if req.Records == nil {
		s.reject(w, http.StatusBadRequest, `body must be {"records":[...]}`)
		return
	}
	if n := len(req.Records); n > s.cfg.MaxRecordsPerRequest {
		s.reject(w, http.StatusBadRequest,
			fmt.Sprintf("%d records in one request; at most %d allowed", n, s.cfg.MaxRecordsPerRequest))
		return
	}
	ids := make([]string, len(req.Records))
	sent := make([]string, len(req.Records))
	for i, rec := range req.Records {
		if rec.ID == nil || *rec.ID == "" {
			s.reject(w, http.StatusBadRequest, fmt.Sprintf("record %d has no id", i))
			return
		}
		sent[i], ids[i] = *rec.ID, strings.ToLower(*rec.ID)
	}

	latency := scaled(s.cfg.BaseLatency+time.Duration(len(ids))*s.cfg.PerRecord, s.cfg.TimeScale) + g.slow
	if !sleep(r, latency) {
		return // the client gave up; nobody reads an answer
	}
	if g.malformed {
		c.malformed.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"results":[{"id":"`))
		return
	}

	faults, unknownID := s.faults.takeRecords(ids)
	results := make([]result, 0, len(ids)+1)
	for i, id := range ids {
		var f recordFault
		if faults != nil {
			f = faults[i]
		}
		switch {
		case f.missing:
			continue
		case f.noMatch:
			results = append(results, result{ID: sent[i], Error: "no match"})
			continue
		}
		fields := Truth(id)
		if f.wrongType {
			fields["numberofemployees"] = fmt.Sprintf("about %v", fields["numberofemployees"])
		}
		if f.extraFields {
			fields["ownerid"] = "00000000-0000-0000-0000-00000000beef"
			fields["_parentaccountid_value"] = "00000000-0000-0000-0000-00000000cafe"
			fields["statecode"] = 1
		}
		results = append(results, result{ID: sent[i], Fields: fields})
		if f.duplicate {
			dup := Truth(id)
			dup["description"] = "duplicate answer"
			results = append(results, result{ID: sent[i], Fields: dup})
		}
	}
	if unknownID != "" {
		results = append(results, result{ID: unknownID, Fields: Truth(unknownID)})
	}
	c.answered.Add(1)
	c.records.Add(int64(len(ids)))
	s.calls.add(ids)
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}

func (s *Sim) reject(w http.ResponseWriter, status int, msg string) {
	s.counters.rejected.Add(1)
	writeJSON(w, status, map[string]string{"error": msg})
}

func (s *Sim) throttle(w http.ResponseWriter, wait time.Duration, msg string) {
	s.counters.throttled.Add(1)
	w.Header().Set("Retry-After", retryAfter(wait))
	writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// sleep waits d unless the client goes away first.
func sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return r.Context().Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// admit decides whether a request is served: at once while fewer than MaxConcurrency are, else
// (queueing mode) after waiting its turn in a queue of QueueDepth. It counts the request as served.
func (s *Sim) admit(r *http.Request, inFlight int64) bool {
	c := &s.counters
	if s.slots == nil {
		if inFlight > int64(s.cfg.MaxConcurrency) {
			return false
		}
		c.serve()
		return true
	}
	select {
	case s.slots <- struct{}{}:
		c.serve()
		return true
	default:
	}
	if c.queued.Add(1) > int64(s.cfg.QueueDepth) {
		c.queued.Add(-1)
		return false
	}
	defer c.queued.Add(-1)
	t := time.NewTimer(scaled(s.cfg.QueueTimeout, s.cfg.TimeScale))
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		c.serve()
		return true
	case <-t.C:
		return false
	case <-r.Context().Done():
		return false
	}
}

func (s *Sim) leave() {
	s.counters.serving.Add(-1)
	if s.slots != nil {
		<-s.slots
	}
}
