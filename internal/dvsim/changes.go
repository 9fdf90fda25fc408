package dvsim

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// changeTracking is the simulator's Track changes for accounts, as "Use change tracking to
// synchronize data with external systems" describes it: a read with Prefer: odata.track-changes
// returns every row and then an @odata.deltaLink; GETting that link returns the rows changed since
// (new and updated first, then deletions as $deletedEntity entries) and a new link. $filter,
// $orderby, $expand and $top are refused. A token is the time it was issued; ExpireDeltaTokens makes
// every token issued so far fail, like one older than ExpireChangeTrackingInDays.
type changeTracking struct {
	on       atomic.Bool
	minToken atomic.Int64 // tokens issued before this are expired
	reads    atomic.Int64 // delta reads answered (first pages of a tracked read)
}

// SetChangeTracking switches Track changes for accounts on or off.
func (s *Sim) SetChangeTracking(on bool) { s.ct.on.Store(on) }

// ExpireDeltaTokens makes every delta token issued so far fail.
func (s *Sim) ExpireDeltaTokens() { s.ct.minToken.Store(time.Now().UnixNano() + 1) }

// DeltaReads counts the change-tracking reads started (first pages, full or delta).
func (s *Sim) DeltaReads() int64 { return s.ct.reads.Load() }

// Add creates an active account as a person would (values are the writable columns).
func (s *Sim) Add(id string, fields map[string]any) error {
	if _, ok := parseKey(id); !ok {
		return fmt.Errorf("dvsim: %q is not a GUID", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tab.lookup(id) != nil {
		return fmt.Errorf("dvsim: %s exists", id)
	}
	r := s.tab.create(id)
	if err := r.apply(fields); err != nil {
		s.tab.remove(id)
		return err
	}
	r.version = 1
	r.modified = time.Now().UnixNano()
	return nil
}

func (s *Sim) entityDefinition(path string) *answer {
	if path != "EntityDefinitions(LogicalName='account')" {
		return errAnswer(http.StatusNotFound, "0x80060888", "Could not find the entity definition "+path+".")
	}
	return jsonAnswer(http.StatusOK, map[string]any{"@odata.context": "https://sim/api/data/v9.2/$metadata#EntityDefinitions(ChangeTrackingEnabled)/$entity",
		"ChangeTrackingEnabled": s.ct.on.Load(), "MetadataId": "70816501-edb9-4740-a16c-6a5efbc05d84"}, s.cfg.Cost.PageRead)
}

var deltaCookieRE = regexp.MustCompile(`^<cookie phase="([12])" after="([0-9a-f-]*)" issued="(\d+)" since="(\d*)" />$`)

// delta answers a tracked read of accounts: the first read (no $deltatoken) pages every row, a read
// with a token pages the rows changed since it. Paging is by key within each phase (1: live rows,
// 2: deletions), so a record changed between pages is never skipped; a row may appear twice.
func (s *Sim) delta(r *http.Request) *answer {
	q := r.URL.Query()
	for _, opt := range []string{"$filter", "$orderby", "$expand", "$top"} {
		if q.Has(opt) {
			return errAnswer(http.StatusBadRequest, "0x80048d19", fmt.Sprintf("The %q query parameter isn't supported when Change Tracking is enabled.", opt))
		}
	}
	sel, bad := parseSelect(q.Get("$select"))
	if bad != nil {
		return bad
	}
	size := 5000
	pref := strings.Join(r.Header.Values("Prefer"), ",")
	if i := strings.Index(pref, "odata.maxpagesize="); i >= 0 {
		if n, err := strconv.Atoi(strings.TrimSpace(strings.Split(pref[i+len("odata.maxpagesize="):], ",")[0])); err == nil && n > 0 {
			size = min(n, 5000)
		}
	}
	phase, after, issued, since := 1, "", time.Now().UnixNano(), int64(-1)
	if tok := q.Get("$deltatoken"); tok != "" {
		n, err := strconv.ParseInt(strings.SplitN(tok, "!", 2)[0], 10, 64)
		if err != nil || n < s.ct.minToken.Load() {
			return errAnswer(http.StatusBadRequest, "0x80072491", "The delta token is invalid or has expired.")
		}
		since = n
	}
	if c := q.Get("$skiptoken"); c != "" {
		m := deltaCookieRE.FindStringSubmatch(c)
		if m == nil {
			return errAnswer(http.StatusBadRequest, "0x0", "Invalid $skiptoken.")
		}
		phase, _ = strconv.Atoi(m[1])
		after = m[2]
		issued, _ = strconv.ParseInt(m[3], 10, 64)
		since = -1
		if m[4] != "" {
			since, _ = strconv.ParseInt(m[4], 10, 64)
		}
	} else {
		s.ct.reads.Add(1)
	}
	var rows []map[string]any
	last, more := "", false
	s.mu.RLock()
	start := 0
	if after != "" {
		if k, ok := parseKey(after); ok {
			start = s.tab.search(k)
			if start < len(s.tab.keys) && s.tab.keys[start] == k {
				start++
			}
		}
	}
scan:
	for {
		for i := start; i < len(s.tab.keys); i++ {
			rec := &s.tab.recs[i]
			if (phase == 2) != rec.has(deleted) || since >= 0 && rec.modified < since || phase == 2 && since < 0 {
				continue
			}
			if len(rows) == size {
				more = true
				break scan
			}
			id := s.tab.keys[i].String()
			if phase == 1 {
				rows = append(rows, selectCols(withETag(id, rec.toMap(id)), sel))
			} else {
				rows = append(rows, map[string]any{"@odata.context": "https://sim/api/data/v9.2/$metadata#accounts/$deletedEntity", "id": id, "reason": "deleted"})
			}
			last = id
		}
		if phase == 2 || since < 0 {
			break
		}
		phase, start, last = 2, 0, ""
	}
	s.mu.RUnlock()
	if rows == nil {
		rows = []map[string]any{}
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	base := scheme + "://" + r.Host + r.URL.Path + "?"
	keep := url.Values{}
	if v := q.Get("$select"); v != "" {
		keep.Set("$select", v)
	}
	out := map[string]any{"@odata.context": "https://sim/api/data/v9.2/$metadata#accounts/$delta", "value": rows}
	if more {
		nq := url.Values{}
		for k, v := range keep {
			nq[k] = v
		}
		sinceText := ""
		if since >= 0 {
			sinceText = strconv.FormatInt(since, 10)
		}
		nq.Set("$skiptoken", fmt.Sprintf(`<cookie phase="%d" after="%s" issued="%d" since="%s" />`, phase, last, issued, sinceText))
		out["@odata.nextLink"] = base + linkQuery(nq)
	} else {
		keep.Set("$deltatoken", strconv.FormatInt(issued, 10)+"!"+time.Unix(0, issued).UTC().Format("01/02/2006 15:04:05"))
		out["@odata.deltaLink"] = base + linkQuery(keep)
	}
	a := jsonAnswer(http.StatusOK, out, s.cfg.Cost.PageRead)
	a.header.Set("Preference-Applied", "odata.track-changes")
	return a
}

// linkQuery encodes link options as Dataverse writes them: "$" and "," kept, spaces as %20.
func linkQuery(v url.Values) string {
	return strings.NewReplacer("+", "%20", "%24", "$", "%2C", ",").Replace(v.Encode())
}
