package dataverse

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

var actionRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)

// InvokeAction calls a bound action or Custom API on one record:
// POST <set>(<id>)/Microsoft.Dynamics.CRM.<action> with params as the JSON body. A name that
// already has a namespace (contains '.') is used as is. It returns the decoded response (nil for
// 204). Like every call it is retried on 429, 5xx and network errors, so the action must be
// idempotent (a timed-out attempt may have run).
func (c *Client) InvokeAction(ctx context.Context, t Table, id, action string, params map[string]any) (Record, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	cid, err := ParseID(id)
	if err != nil {
		return nil, fmt.Errorf("dataverse: action %s: %w", action, err)
	}
	if !actionRE.MatchString(action) {
		return nil, fmt.Errorf("dataverse: action %q: invalid name", truncate(action, 64))
	}
	if !strings.Contains(action, ".") {
		action = "Microsoft.Dynamics.CRM." + action
	}
	if params == nil {
		params = map[string]any{}
	}
	body, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("dataverse: action %s: encode parameters: %w", action, err)
	}
	op := "action " + action + " on " + t.EntitySet + "(" + cid + ")"
	resp, err := c.do(ctx, &request{
		op:          op,
		method:      http.MethodPost,
		url:         c.api + t.EntitySet + "(" + cid + ")/" + action,
		body:        body,
		contentType: "application/json",
	})
	if err != nil {
		return nil, err
	}
	if ae := resp.apiError(); ae != nil {
		return nil, fmt.Errorf("dataverse: %s: %w", op, ae)
	}
	if len(bytes.TrimSpace(resp.body)) == 0 {
		return nil, nil
	}
	var rec Record
	dec := json.NewDecoder(bytes.NewReader(resp.body))
	dec.UseNumber()
	if err := dec.Decode(&rec); err != nil {
		return nil, fmt.Errorf("dataverse: %s: decode response: %w", op, err)
	}
	return rec, nil
}
