package dataverse

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sync/errgroup"
)

// Record is a row as decoded JSON: numbers are json.Number (no float rounding of money or ids),
// annotations such as "@odata.etag" are kept.
type Record map[string]any

// Table names a Dataverse table three ways, e.g. {"accounts", "account", "accountid"}.
type Table struct {
	EntitySet   string // URL segment
	LogicalName string // for @odata.type and sdkmessagefilters
	Key         string // primary key column
}

// Query is a read of one table. Filter is an OData expression; build literals with Literal.
type Query struct {
	Table    Table
	Select   []string
	Filter   string
	OrderBy  string // default: the key, which makes paging stable while records are updated
	PageSize int    // Prefer: odata.maxpagesize; default and maximum 5000
}

// Page is one page of results; NextLink is "" on the last page.
type Page struct {
	Records  []Record
	NextLink string
}

const maxPageSize = 5000

var nameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (t Table) validate() error {
	for _, n := range []string{t.EntitySet, t.LogicalName, t.Key} {
		if !nameRE.MatchString(n) {
			return fmt.Errorf("dataverse: table %+v: invalid name %q", t, n)
		}
	}
	return nil
}

// withKey returns sel plus the key column when sel is non-empty and lacks it (callers match
// records by key).
func withKey(sel []string, key string) []string {
	if len(sel) == 0 || slices.Contains(sel, key) {
		return sel
	}
	return append(slices.Clip(sel), key)
}

// firstPageURL builds <api><set>?$select=..&$filter=..&$orderby=..
func (c *Client) firstPageURL(q Query) (string, error) {
	if err := q.Table.validate(); err != nil {
		return "", err
	}
	var opts []string
	if sel := withKey(q.Select, q.Table.Key); len(sel) > 0 {
		for _, s := range sel {
			if !nameRE.MatchString(s) {
				return "", fmt.Errorf("dataverse: query %s: invalid column %q", q.Table.EntitySet, s)
			}
		}
		opts = append(opts, "$select="+escapeQuery(strings.Join(sel, ",")))
	}
	if q.Filter != "" {
		opts = append(opts, "$filter="+escapeQuery(q.Filter))
	}
	order := q.OrderBy
	if order == "" {
		order = q.Table.Key
	}
	opts = append(opts, "$orderby="+escapeQuery(order))
	return c.api + q.Table.EntitySet + "?" + strings.Join(opts, "&"), nil
}

// escapeQuery percent-encodes a query option value. Spaces become %20 (not '+', which OData
// servers may keep literally); characters common in OData expressions stay readable.
func escapeQuery(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9',
			strings.IndexByte("-_.~,'()*:@/$", ch) >= 0:
			b.WriteByte(ch)
		default:
			fmt.Fprintf(&b, "%%%02X", ch)
		}
	}
	return b.String()
}

// QueryPage reads one page: the first when nextLink is "", else the page nextLink points at. The
// link is sent unmodified (the docs forbid editing it) but only after checking it points at this
// environment's Web API, so a token is never sent elsewhere.
func (c *Client) QueryPage(ctx context.Context, q Query, nextLink string) (Page, error) {
	target := nextLink
	if target == "" {
		u, err := c.firstPageURL(q)
		if err != nil {
			return Page{}, err
		}
		target = u
	} else {
		u, err := url.Parse(nextLink)
		if err != nil || !c.sameOrigin(u) {
			return Page{}, fmt.Errorf("dataverse: query %s: refusing nextLink outside %s%s", q.Table.EntitySet, c.root.Host, c.apiPath)
		}
	}
	// The same maxpagesize on every page, as the paging docs require.
	body, _, err := c.readPage(ctx, "query "+q.Table.EntitySet, target, "odata.maxpagesize="+strconv.Itoa(pageSize(q)))
	if err != nil {
		return Page{}, err
	}
	return Page{Records: body.Value, NextLink: body.NextLink}, nil
}

func pageSize(q Query) int {
	if q.PageSize <= 0 || q.PageSize > maxPageSize {
		return maxPageSize
	}
	return q.PageSize
}

// pageBody is a page of a collection read.
type pageBody struct {
	Value     []Record `json:"value"`
	NextLink  string   `json:"@odata.nextLink"`
	DeltaLink string   `json:"@odata.deltaLink"`
}

// readPage GETs one page of a collection with the given Prefer header and decodes it.
func (c *Client) readPage(ctx context.Context, op, target, prefer string) (*pageBody, http.Header, error) {
	resp, err := c.do(ctx, &request{op: op, method: http.MethodGet, url: target, header: http.Header{"Prefer": {prefer}}})
	if err != nil {
		return nil, nil, err
	}
	if ae := resp.apiError(); ae != nil {
		return nil, nil, fmt.Errorf("dataverse: %s: %w", op, ae)
	}
	var body pageBody
	dec := json.NewDecoder(bytes.NewReader(resp.body))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		return nil, nil, fmt.Errorf("dataverse: %s: decode page: %w", op, err)
	}
	return &body, resp.header, nil
}

// Query streams every page of q to fn, in order. fn's error stops the read and is returned.
func (c *Client) Query(ctx context.Context, q Query, fn func(Page) error) error {
	next := ""
	for {
		p, err := c.QueryPage(ctx, q, next)
		if err != nil {
			return err
		}
		if err := fn(p); err != nil {
			return err
		}
		if p.NextLink == "" {
			return nil
		}
		next = p.NextLink
	}
}

// inGroup is the number of ids per Microsoft.Dynamics.CRM.In filter (keeps URLs far below 32 KB).
const inGroup = 100

// GetByIDs reads the records with the given ids (missing ones are simply absent). Every id is
// validated before any request; duplicates are read once.
func (c *Client) GetByIDs(ctx context.Context, t Table, ids []string, sel []string) ([]Record, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(ids))
	var canon []string
	for _, s := range ids {
		id, err := ParseID(s)
		if err != nil {
			return nil, fmt.Errorf("dataverse: get %s: %w", t.EntitySet, err)
		}
		if !seen[id] {
			seen[id] = true
			canon = append(canon, id)
		}
	}
	groups := slices.Collect(slices.Chunk(canon, inGroup))
	out := make([][]Record, len(groups))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.cfg.MaxConcurrency)
	for i, grp := range groups {
		g.Go(func() error {
			vals := make([]string, len(grp))
			for j, id := range grp {
				vals[j] = Literal(id)
			}
			q := Query{
				Table:  t,
				Select: sel,
				Filter: "Microsoft.Dynamics.CRM.In(PropertyName=" + Literal(t.Key) +
					",PropertyValues=[" + strings.Join(vals, ",") + "])",
			}
			return c.Query(gctx, q, func(p Page) error {
				out[i] = append(out[i], p.Records...)
				return nil
			})
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return slices.Concat(out...), nil
}
