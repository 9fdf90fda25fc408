package dvsim

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

func withETag(id string, row map[string]any) map[string]any {
	row["@odata.etag"] = etag(row["versionnumber"].(int64))
	return row
}

func selectCols(row map[string]any, sel []string) map[string]any {
	if len(sel) == 0 {
		return row
	}
	out := map[string]any{"@odata.etag": row["@odata.etag"], "accountid": row["accountid"]}
	for _, c := range sel {
		out[c] = row[c]
	}
	return out
}

func parseSelect(v string) ([]string, *answer) {
	if v == "" {
		return nil, nil
	}
	cols := strings.Split(v, ",")
	for _, c := range cols {
		if _, ok := columns[c]; !ok {
			return nil, errAnswer(http.StatusBadRequest, "0x0", fmt.Sprintf("Could not find a property named '%s' on type 'Microsoft.Dynamics.CRM.account'.", c))
		}
	}
	return cols, nil
}

var skiptokenRE = regexp.MustCompile(`pagingcookie="([^"]*)"`)

// query answers GET accounts with $select, $filter, $orderby on the key and server-driven paging.
func (s *Sim) query(r *http.Request) *answer {
	q := r.URL.Query()
	if q.Has("$skip") {
		return errAnswer(http.StatusBadRequest, "0x0", "The query parameter $skip is not supported.")
	}
	sel, bad := parseSelect(q.Get("$select"))
	if bad != nil {
		return bad
	}
	if ob := strings.TrimSpace(q.Get("$orderby")); ob != "" && ob != "accountid" && ob != "accountid asc" {
		return errAnswer(http.StatusBadRequest, "0x0", "The simulator orders by accountid only, got '"+ob+"'.")
	}
	pred, err := parseFilter(q.Get("$filter"))
	if err != nil {
		return errAnswer(http.StatusBadRequest, "0x0", "Invalid $filter: "+err.Error())
	}
	var count bool
	switch v := strings.ToLower(q.Get("$count")); v {
	case "", "false":
	case "true":
		count = true
	default:
		return errAnswer(http.StatusBadRequest, "0x0", "Invalid value '"+q.Get("$count")+"' for $count: want true or false.")
	}
	size := 5000
	pref := r.Header.Get("Prefer")
	applied := ""
	if i := strings.Index(pref, "odata.maxpagesize="); i >= 0 {
		n, err := strconv.Atoi(strings.TrimSpace(strings.Split(pref[i+len("odata.maxpagesize="):], ",")[0]))
		if err == nil && n > 0 {
			size = min(n, 5000)
			applied = "odata.maxpagesize=" + strconv.Itoa(size)
		}
	} else if top, err := strconv.Atoi(q.Get("$top")); err == nil && top > 0 {
		size = min(top, 5000)
	}
	after, page := "", 1
	if tok := q.Get("$skiptoken"); tok != "" {
		m := skiptokenRE.FindStringSubmatch(tok)
		if m == nil {
			return errAnswer(http.StatusBadRequest, "0x0", "Invalid $skiptoken.")
		}
		after = strings.ToLower(m[1])
		if pm := regexp.MustCompile(`pagenumber="(\d+)"`).FindStringSubmatch(tok); pm != nil {
			page, _ = strconv.Atoi(pm[1])
		}
	}
	var rows []map[string]any
	last, more := "", false
	// take adds a matching row; it reports false once the page is full and one more matched.
	take := func(id string, rec *record) bool {
		row := rec.toMap(id)
		if !pred(row) {
			return true
		}
		if len(rows) == size {
			more = true
			return false
		}
		rows = append(rows, selectCols(withETag(id, row), sel))
		last = id
		return true
	}
	s.mu.RLock()
	matching := -1
	if count {
		matching = s.countMatching(pred, inIDs(q.Get("$filter")), countLimit+1)
	}
	if ids := inIDs(q.Get("$filter")); ids != nil {
		// A lookup by ids reads just those records, in key order.
		for _, id := range ids {
			if rec := s.tab.lookup(id); rec != nil && id > after && !take(id, rec) {
				break
			}
		}
	} else {
		start := 0
		if after != "" {
			k, ok := parseKey(after)
			if !ok {
				s.mu.RUnlock()
				return errAnswer(http.StatusBadRequest, "0x0", "Invalid $skiptoken.")
			}
			start = s.tab.search(k)
			if start < len(s.tab.keys) && s.tab.keys[start] == k {
				start++
			}
		}
		for i := start; i < len(s.tab.keys); i++ {
			if rec := &s.tab.recs[i]; !rec.has(deleted) && !take(s.tab.keys[i].String(), rec) {
				break
			}
		}
	}
	s.mu.RUnlock()
	out := map[string]any{"@odata.context": "https://sim/api/data/v9.2/$metadata#accounts", "value": rows}
	if rows == nil {
		out["value"] = []any{}
	}
	if count {
		// Every row that matches, whatever the page size, capped as Dataverse caps it.
		out["@odata.count"] = min(matching, countLimit)
		if strings.Contains(pref, "Microsoft.Dynamics.CRM.totalrecordcount") || strings.Contains(pref, `odata.include-annotations="*"`) {
			out["@Microsoft.Dynamics.CRM.totalrecordcount"] = min(matching, countLimit)
			out["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] = matching > countLimit
		}
	}
	if more {
		nq := url.Values{}
		for k, v := range q {
			if k != "$skiptoken" {
				nq[k] = v
			}
		}
		nq.Set("$skiptoken", fmt.Sprintf(`<cookie pagenumber="%d" pagingcookie="%s" istracking="False" />`, page+1, last))
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		out["@odata.nextLink"] = scheme + "://" + r.Host + r.URL.Path + "?" + strings.ReplaceAll(nq.Encode(), "+", "%20")
	}
	a := jsonAnswer(http.StatusOK, out, s.cfg.Cost.PageRead)
	if applied != "" {
		a.header.Set("Preference-Applied", applied)
	}
	return a
}

// countLimit is the most @odata.count reports for a standard table ("Count rows using OData").
const countLimit = 5000

// countMatching counts the live rows pred accepts (only ids, when the filter names them), stopping
// at limit. The caller holds s.mu.
func (s *Sim) countMatching(pred func(map[string]any) bool, ids []string, limit int) int {
	n := 0
	if ids != nil {
		for _, id := range ids {
			if rec := s.tab.lookup(id); rec != nil && pred(rec.toMap(id)) {
				if n++; n >= limit {
					break
				}
			}
		}
		return n
	}
	for i := range s.tab.keys {
		if rec := &s.tab.recs[i]; !rec.has(deleted) && pred(rec.toMap(s.tab.keys[i].String())) {
			if n++; n >= limit {
				break
			}
		}
	}
	return n
}

func (s *Sim) getOne(r *http.Request, id string) *answer {
	sel, bad := parseSelect(r.URL.Query().Get("$select"))
	if bad != nil {
		return bad
	}
	row, ok := s.Get(id)
	if !ok {
		return notFound(id)
	}
	return jsonAnswer(http.StatusOK, selectCols(withETag(id, row), sel), s.cfg.Cost.PageRead/5)
}

// parseFilter supports the forms the product sends (and a little more): comparisons
// `<col> eq|ne|gt|ge|lt|le <literal>` with string (” escaped), number, GUID and null literals,
// `and` / `or` (and binding tighter), parentheses, and
// `Microsoft.Dynamics.CRM.In(PropertyName='<col>',PropertyValues=['v1','v2',...])`.
func parseFilter(f string) (func(map[string]any) bool, error) {
	if strings.TrimSpace(f) == "" {
		return func(map[string]any) bool { return true }, nil
	}
	p := &parser{toks: tokenize(f)}
	pred, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.i != len(p.toks) {
		return nil, fmt.Errorf("unexpected %q", p.toks[p.i])
	}
	return pred, nil
}

var tokRE = regexp.MustCompile(`\s*('(?:[^']|'')*'|\(|\)|\[|\]|,|=|[A-Za-z_][A-Za-z0-9_.]*|-?[0-9][0-9a-fA-F.-]*)`)

func tokenize(s string) []string {
	var out []string
	for _, m := range tokRE.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

type parser struct {
	toks []string
	i    int
}

func (p *parser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

func (p *parser) next() string { t := p.peek(); p.i++; return t }

func (p *parser) expect(t string) error {
	if got := p.next(); got != t {
		return fmt.Errorf("expected %q, got %q", t, got)
	}
	return nil
}

func (p *parser) or() (func(map[string]any) bool, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peek() == "or" {
		p.next()
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		a, b := l, r
		l = func(m map[string]any) bool { return a(m) || b(m) }
	}
	return l, nil
}

func (p *parser) and() (func(map[string]any) bool, error) {
	l, err := p.term()
	if err != nil {
		return nil, err
	}
	for p.peek() == "and" {
		p.next()
		r, err := p.term()
		if err != nil {
			return nil, err
		}
		a, b := l, r
		l = func(m map[string]any) bool { return a(m) && b(m) }
	}
	return l, nil
}

func (p *parser) term() (func(map[string]any) bool, error) {
	switch t := p.next(); {
	case t == "(":
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		return e, p.expect(")")
	case t == "Microsoft.Dynamics.CRM.In":
		return p.in()
	case columns[t] != "":
		op := p.next()
		lit, err := literal(p.next())
		if err != nil {
			return nil, err
		}
		return compare(t, op, lit)
	case strings.Contains(t, "/") || t == "sdkmessageid":
		return nil, fmt.Errorf("navigation in $filter is not supported on accounts")
	default:
		//lint:ignore ST1005 the Web API's own message text
		return nil, fmt.Errorf("Could not find a property named '%s' on type 'Microsoft.Dynamics.CRM.account'", t)
	}
}

func (p *parser) in() (func(map[string]any) bool, error) {
	for _, want := range []string{"(", "PropertyName", "="} {
		if err := p.expect(want); err != nil {
			return nil, err
		}
	}
	col, err := literal(p.next())
	name, _ := col.(string)
	if err != nil || columns[name] == "" {
		//lint:ignore ST1005 the Web API's own message text
		return nil, fmt.Errorf("In: unknown property %v", col)
	}
	for _, want := range []string{",", "PropertyValues", "=", "["} {
		if err := p.expect(want); err != nil {
			return nil, err
		}
	}
	set := map[string]bool{}
	for p.peek() != "]" {
		v, err := literal(p.next())
		if err != nil {
			return nil, err
		}
		set[strings.ToLower(fmt.Sprint(v))] = true
		if p.peek() == "," {
			p.next()
		}
		if p.i >= len(p.toks) {
			//lint:ignore ST1005 the Web API's own message text
			return nil, fmt.Errorf("In: unterminated value list")
		}
	}
	p.next()
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	return func(m map[string]any) bool { return set[strings.ToLower(fmt.Sprint(m[name]))] }, nil
}

func literal(t string) (any, error) {
	switch {
	case strings.HasPrefix(t, "'") && strings.HasSuffix(t, "'") && len(t) >= 2:
		return strings.ReplaceAll(t[1:len(t)-1], "''", "'"), nil
	case t == "null":
		return nil, nil
	case len(t) == 36 && strings.Count(t, "-") == 4:
		return strings.ToLower(t), nil
	}
	if f, err := strconv.ParseFloat(t, 64); err == nil {
		return f, nil
	}
	return nil, fmt.Errorf("bad literal %q", t)
}

func compare(col, op string, lit any) (func(map[string]any) bool, error) {
	cmp := func(m map[string]any) (int, bool) {
		v := m[col]
		if v == nil || lit == nil {
			if v == nil && lit == nil {
				return 0, true
			}
			return 1, false
		}
		switch x := v.(type) {
		case string:
			y := fmt.Sprint(lit)
			return strings.Compare(strings.ToLower(x), strings.ToLower(y)), true
		default:
			a, _ := strconv.ParseFloat(fmt.Sprint(x), 64)
			b, ok := lit.(float64)
			if !ok {
				return 0, false
			}
			switch {
			case a < b:
				return -1, true
			case a > b:
				return 1, true
			}
			return 0, true
		}
	}
	ops := map[string]func(int) bool{"eq": func(c int) bool { return c == 0 }, "ne": func(c int) bool { return c != 0 },
		"gt": func(c int) bool { return c > 0 }, "ge": func(c int) bool { return c >= 0 }, "lt": func(c int) bool { return c < 0 }, "le": func(c int) bool { return c <= 0 }}
	f, ok := ops[op]
	if !ok {
		return nil, fmt.Errorf("unsupported operator %q", op)
	}
	return func(m map[string]any) bool {
		c, ok := cmp(m)
		if !ok {
			return op == "ne"
		}
		return f(c)
	}, nil
}

var inRE = regexp.MustCompile(`^Microsoft\.Dynamics\.CRM\.In\(PropertyName='accountid',PropertyValues=\[([^\]]*)\]\)$`)

// inIDs returns the sorted ids of a filter that is exactly an In on the key, else nil.
func inIDs(f string) []string {
	m := inRE.FindStringSubmatch(strings.TrimSpace(f))
	if m == nil {
		return nil
	}
	var ids []string
	for _, v := range strings.Split(m[1], ",") {
		ids = append(ids, strings.ToLower(strings.Trim(strings.TrimSpace(v), "'")))
	}
	sort.Strings(ids)
	return slices.Compact(ids)
}
