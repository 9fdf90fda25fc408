package dataverse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// BatchOp is one operation of a $batch, or, when ChangeSet is non-nil, an atomic change set of
// those operations (Method, Path, Header and Body are then ignored).
type BatchOp struct {
	Method    string      // GET, PATCH, POST, DELETE
	Path      string      // relative to the Web API root ("accounts(<id>)"), or a "$1" reference
	Header    http.Header // inner headers such as If-Match; written in sorted order
	Body      []byte      // JSON, sent as application/json; type=entry
	ContentID string      // change-set members only; defaults to the 1-based position
	ChangeSet []BatchOp
}

// BatchResponse is one response part, in wire order. Part is the index of the top-level BatchOp
// (or change set) it answers: responses come back in request order, and change-set members are
// matched by ContentID, which the server echoes.
type BatchResponse struct {
	Part      int
	ContentID string
	Status    int
	Header    http.Header
	Body      []byte
}

// Err returns the part's *APIError, or nil for a success.
func (r BatchResponse) Err() error {
	if r.Status >= 200 && r.Status < 400 {
		return nil
	}
	return newAPIError(r.Status, r.Header, r.Body)
}

// Batch sends ops as one $batch and returns the parsed response parts. With continueOnError
// (Prefer: odata.continue-on-error) every operation runs and reports in its own part; without
// it the server stops at the first failure and answers 400 with the parts so far, which is
// returned as parts too. The error is non-nil only when there are no parts to return: the
// request could not be completed or the server refused the batch as a whole (an *APIError; a
// size refusal matches ErrBatchTooLarge and MaxBatchSize tells the limit).
func (c *Client) Batch(ctx context.Context, ops []BatchOp, continueOnError bool) ([]BatchResponse, error) {
	if n := countOps(ops); n == 0 {
		return nil, nil
	} else if n > maxOpsPerBatch {
		return nil, fmt.Errorf("dataverse: batch of %d operations: %w (limit %d)", n, ErrBatchTooLarge, maxOpsPerBatch)
	}
	boundary := c.newBoundary("batch")
	body, err := c.encodeBatch(boundary, ops)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	if continueOnError {
		h["Prefer"] = []string{"odata.continue-on-error"}
	}
	epoch := c.thr.currentEpoch()
	resp, err := c.do(ctx, &request{
		op:          "batch of " + strconv.Itoa(countOps(ops)),
		method:      http.MethodPost,
		url:         c.api + "$batch",
		header:      h,
		body:        body,
		contentType: `multipart/mixed; boundary="` + boundary + `"`,
	})
	if err != nil {
		return nil, err
	}
	ct := resp.header.Get("Content-Type")
	if mt, _, _ := mime.ParseMediaType(ct); mt != "multipart/mixed" {
		if ae := resp.apiError(); ae != nil {
			if n := MaxBatchSize(ae); n > 0 {
				c.noteBatchLimit(n)
			}
			return nil, fmt.Errorf("dataverse: batch: %w", ae)
		}
		return nil, fmt.Errorf("dataverse: batch: HTTP %d with content type %q, want multipart/mixed", resp.status, ct)
	}
	parts, err := parseBatchResponse(ct, resp.body)
	if err != nil {
		return nil, fmt.Errorf("dataverse: batch: %w", err)
	}
	c.throttledParts(ctx, epoch, parts)
	return parts, nil
}

// throttledParts treats 429 answers inside a $batch exactly like a top-level 429: the service
// protection limit applies to the user, not to the operation, so the gate closes for every caller
// for the longest Retry-After among the parts (exponential backoff when none is given) and the
// adaptive limit is halved (once per epoch: the batch was admitted under epoch).
func (c *Client) throttledParts(ctx context.Context, epoch uint64, parts []BatchResponse) {
	n, pause, code := 0, time.Duration(-1), ""
	for _, p := range parts {
		if p.Status != http.StatusTooManyRequests {
			continue
		}
		n++
		if d, ok := retryAfter(p.Header.Get("Retry-After"), time.Now()); ok && d > pause {
			pause = d
		}
		code = newAPIError(p.Status, nil, p.Body).Code
		c.st.throttled(code)
		if t := tallyOf(ctx); t != nil {
			t.throttled.Add(1)
		}
	}
	if n == 0 {
		return
	}
	c.thr.decrease(epoch)
	wait := c.thr.pause(pause)
	c.log.Warn().Int("parts", n).Str("code", code).Dur("pause", wait).
		Msg("dataverse service protection limit hit inside a batch; pausing all requests")
}

func countOps(ops []BatchOp) int {
	n := 0
	for _, op := range ops {
		if op.ChangeSet != nil {
			n += len(op.ChangeSet)
		} else {
			n++
		}
	}
	return n
}

// noteBatchLimit remembers the largest batch the server will take, so later calls split first.
func (c *Client) noteBatchLimit(n int) {
	for {
		cur := c.batchLimit.Load()
		if cur != 0 && cur <= int64(n) {
			return
		}
		if c.batchLimit.CompareAndSwap(cur, int64(n)) {
			c.log.Info().Int("limit", n).Msg("dataverse batch size limit learned")
			return
		}
	}
}

// batchCap is the most operations to put in one $batch right now.
func (c *Client) batchCap(want int) int {
	n := min(want, maxOpsPerBatch)
	if l := int(c.batchLimit.Load()); l > 0 {
		n = min(n, l)
	}
	return max(n, 1)
}

// encodeBatch writes the multipart body exactly as the Web API documents it: CRLF after every
// line including the last, application/http parts with binary transfer encoding, path-absolute
// inner URLs, and change sets as nested multipart/mixed parts with Content-ID on each member.
func (c *Client) encodeBatch(boundary string, ops []BatchOp) ([]byte, error) {
	var b bytes.Buffer
	for i, op := range ops {
		b.WriteString("--" + boundary + "\r\n")
		if op.ChangeSet == nil {
			if err := c.encodeOp(&b, op, ""); err != nil {
				return nil, fmt.Errorf("dataverse: batch operation %d: %w", i, err)
			}
			continue
		}
		if len(op.ChangeSet) == 0 {
			return nil, fmt.Errorf("dataverse: batch operation %d: empty change set", i)
		}
		cs := c.newBoundary("changeset")
		b.WriteString("Content-Type: multipart/mixed; boundary=" + cs + "\r\n\r\n")
		for j, m := range op.ChangeSet {
			if m.ChangeSet != nil {
				return nil, fmt.Errorf("dataverse: batch operation %d: nested change set", i)
			}
			if strings.EqualFold(m.Method, http.MethodGet) {
				return nil, fmt.Errorf("dataverse: batch operation %d: GET is not allowed in a change set", i)
			}
			id := m.ContentID
			if id == "" {
				id = strconv.Itoa(j + 1)
			}
			b.WriteString("--" + cs + "\r\n")
			if err := c.encodeOp(&b, m, id); err != nil {
				return nil, fmt.Errorf("dataverse: batch operation %d.%d: %w", i, j, err)
			}
		}
		b.WriteString("--" + cs + "--\r\n")
	}
	b.WriteString("--" + boundary + "--\r\n")
	return b.Bytes(), nil
}

func (c *Client) encodeOp(b *bytes.Buffer, op BatchOp, contentID string) error {
	method := strings.ToUpper(op.Method)
	if method == "" || strings.ContainsAny(method, " \r\n") {
		return fmt.Errorf("invalid method %q", op.Method)
	}
	if op.Path == "" || strings.ContainsAny(op.Path, " \r\n") {
		return fmt.Errorf("invalid path %q", op.Path)
	}
	target := op.Path
	if !strings.HasPrefix(target, "/") && !strings.HasPrefix(target, "$") {
		target = c.apiPath + target
	}
	b.WriteString("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n")
	if contentID != "" {
		b.WriteString("Content-ID: " + contentID + "\r\n")
	}
	b.WriteString("\r\n" + method + " " + target + " HTTP/1.1\r\n")
	if op.Body != nil {
		b.WriteString("Content-Type: application/json; type=entry\r\n")
	}
	keys := make([]string, 0, len(op.Header))
	for k := range op.Header {
		if !strings.EqualFold(k, "Content-Type") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range op.Header[k] {
			if strings.ContainsAny(k+v, "\r\n") {
				return fmt.Errorf("invalid header %q", k)
			}
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	if op.Body != nil {
		if bytes.ContainsAny(op.Body, "\r\n") {
			// JSON never needs raw newlines; one could fake a boundary line.
			return errors.New("body contains a line break")
		}
		b.Write(op.Body)
		b.WriteString("\r\n")
	}
	return nil
}

// randomBoundary returns prefix_<16 hex digits>; it only has to be unique within the body.
func randomBoundary(prefix string) string {
	return fmt.Sprintf("%s_%016x", prefix, rand.Uint64())
}
