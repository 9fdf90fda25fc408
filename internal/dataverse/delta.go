package dataverse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// ErrNoChangeTracking means the table answered a change-tracking read without applying it (Track
// changes is off): there is no token to keep, and the caller pages the table normally.
var ErrNoChangeTracking = errors.New("dataverse: change tracking not applied")

// DeltaPage is one page of a change-tracking read: changed (or, on the first read, all) rows, the
// ids deleted since the token, and either NextLink (more pages) or DeltaLink (the token for the next
// read, on the last page).
type DeltaPage struct {
	Records   []Record
	Deleted   []string
	NextLink  string
	DeltaLink string
}

// ChangeTrackingEnabled reports whether the table has Track changes on
// (EntityDefinitions(LogicalName='...')?$select=ChangeTrackingEnabled).
func (c *Client) ChangeTrackingEnabled(ctx context.Context, t Table) (bool, error) {
	if err := t.validate(); err != nil {
		return false, err
	}
	u := c.api + "EntityDefinitions(LogicalName=" + Literal(t.LogicalName) + ")?$select=ChangeTrackingEnabled"
	resp, err := c.do(ctx, &request{op: "read metadata of " + t.LogicalName, method: http.MethodGet, url: u})
	if err != nil {
		return false, err
	}
	if ae := resp.apiError(); ae != nil {
		return false, fmt.Errorf("dataverse: read metadata of %s: %w", t.LogicalName, ae)
	}
	var body struct {
		ChangeTrackingEnabled *bool `json:"ChangeTrackingEnabled"`
	}
	if err := json.Unmarshal(resp.body, &body); err != nil || body.ChangeTrackingEnabled == nil {
		return false, fmt.Errorf("dataverse: read metadata of %s: no ChangeTrackingEnabled in the answer", t.LogicalName)
	}
	return *body.ChangeTrackingEnabled, nil
}

// QueryDelta reads one page of changes. link "" starts a full read with Prefer: odata.track-changes
// (every row, then a delta link); otherwise link is a nextLink or deltaLink of an earlier page, sent
// unmodified after checking it points at this environment. Dataverse refuses $filter, $orderby,
// $expand and $top with change tracking, so q.Filter and q.OrderBy must be empty: the caller filters
// the rows itself.
func (c *Client) QueryDelta(ctx context.Context, q Query, link string) (DeltaPage, error) {
	if q.Filter != "" || q.OrderBy != "" {
		return DeltaPage{}, fmt.Errorf("dataverse: delta query %s: $filter and $orderby are not supported with change tracking", q.Table.EntitySet)
	}
	target := link
	if target == "" {
		if err := q.Table.validate(); err != nil {
			return DeltaPage{}, err
		}
		target = c.api + q.Table.EntitySet
		if sel := withKey(q.Select, q.Table.Key); len(sel) > 0 {
			for _, s := range sel {
				if !nameRE.MatchString(s) {
					return DeltaPage{}, fmt.Errorf("dataverse: delta query %s: invalid column %q", q.Table.EntitySet, s)
				}
			}
			target += "?$select=" + escapeQuery(strings.Join(sel, ","))
		}
	} else if u, err := url.Parse(link); err != nil || !c.sameOrigin(u) {
		return DeltaPage{}, fmt.Errorf("dataverse: delta query %s: refusing link outside %s%s", q.Table.EntitySet, c.root.Host, c.apiPath)
	}
	op := "delta query " + q.Table.EntitySet
	body, header, err := c.readPage(ctx, op, target, "odata.track-changes,odata.maxpagesize="+strconv.Itoa(pageSize(q)))
	if err != nil {
		return DeltaPage{}, err
	}
	if !strings.Contains(header.Get("Preference-Applied"), "odata.track-changes") {
		// Without Preference-Applied the table does not track changes: there is no token to keep.
		return DeltaPage{}, fmt.Errorf("dataverse: %s: %w", op, ErrNoChangeTracking)
	}
	p := DeltaPage{NextLink: body.NextLink, DeltaLink: body.DeltaLink}
	for _, r := range body.Value {
		if ctx, _ := r["@odata.context"].(string); strings.HasSuffix(ctx, "/$deletedEntity") {
			id, _ := r["id"].(string)
			if id, err := ParseID(id); err == nil {
				p.Deleted = append(p.Deleted, id)
			}
			continue
		}
		p.Records = append(p.Records, r)
	}
	return p, nil
}
