package dataverse

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/google/uuid"
)

// errGateClosed is returned by sendPolicy when a 429 elsewhere closed the gate after this request
// was admitted; the retry loop gives the slot back and queues again without counting an attempt.
var errGateClosed = errors.New("dataverse: paused by service protection")

// headerPolicy sets the headers every Web API request needs. Keys are written in their
// documented spelling (Go would canonicalise OData-MaxVersion to Odata-Maxversion).
func (c *Client) headerPolicy(req *policy.Request) (*http.Response, error) {
	h := req.Raw().Header
	setRaw(h, "Accept", "application/json")
	setRaw(h, "OData-MaxVersion", "4.0")
	setRaw(h, "OData-Version", "4.0")
	if req.Raw().Method == http.MethodGet && h.Get("If-None-Match") == "" {
		setRaw(h, "If-None-Match", "null") // bypass caches, as the docs recommend
	}
	if !c.cfg.AffinityCookie {
		h.Del("Cookie")
	}
	// Correlation ids, as the .NET ServiceClient sends them: one session per client (so the server
	// side can tell this client's requests from another instance's), one id per request.
	setRaw(h, "x-ms-client-session-id", c.session)
	setRaw(h, "x-ms-client-request-id", uuid.NewString())
	return req.Next()
}

// setRaw sets a header under the exact key given, replacing any canonical-form duplicate.
func setRaw(h http.Header, k, v string) {
	h.Del(k)
	h[k] = []string{v}
}

// sendPolicy runs once per attempt, right before the transport: it enforces the gate, counts
// what goes on the wire, reads x-ms-dop-hint from every response and closes the gate on 429.
func (c *Client) sendPolicy(req *policy.Request) (*http.Response, error) {
	if c.thr.remaining(req.Raw().Context()) > 0 {
		return nil, errGateClosed
	}
	c.st.sent()
	start := time.Now()
	resp, err := req.Next()
	c.st.done()
	ev := c.log.Debug().Str("method", req.Raw().Method).Str("path", req.Raw().URL.Path)
	if err != nil {
		c.st.transportErrors.Add(1)
		ev.Err(err).Dur("elapsed", time.Since(start)).Msg("dataverse request failed")
		return nil, err
	}
	if h, convErr := strconv.Atoi(resp.Header.Get("x-ms-dop-hint")); convErr == nil && h > 0 {
		c.thr.setHint(h)
	}
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests:
		ra, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now())
		if !ok {
			ra = -1 // none: exponential
		}
		wait := c.thr.pause(ra)
		code := throttleCode(resp)
		c.st.throttled(code)
		if t := tallyOf(req.Raw().Context()); t != nil {
			t.throttled.Add(1)
		}
		c.log.Warn().Str("path", req.Raw().URL.Path).Str("code", code).Dur("pause", wait).
			Msg("dataverse service protection limit hit; pausing all requests")
	case s >= 500:
		c.st.serverErrors.Add(1)
	}
	// The x-ms-ratelimit-* headers are logged for support, at debug only, and never pace anything:
	// Microsoft's "Service protection API limits" page says not to depend on them to control how
	// many requests are sent (each web server counts its own); the 429s and Retry-After do that.
	if v := resp.Header.Get("x-ms-ratelimit-burst-remaining-xrm-requests"); v != "" {
		ev = ev.Str("ratelimit_burst_remaining", v)
	}
	if v := resp.Header.Get("x-ms-ratelimit-time-remaining-xrm-requests"); v != "" {
		ev = ev.Str("ratelimit_time_remaining", v)
	}
	ev.Int("status", resp.StatusCode).Dur("elapsed", time.Since(start)).Msg("dataverse request")
	return resp, nil
}

// throttleCode extracts error.code from a 429 (the body was downloaded by azcore, bounded by
// limitedTransport).
func throttleCode(resp *http.Response) string {
	b, err := runtime.Payload(resp)
	if err != nil {
		return ""
	}
	var env struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &env) != nil {
		return ""
	}
	return env.Error.Code
}

// errBodyTooLarge: a response exceeded maxResponseBytes; not retried (it would be as large again).
var errBodyTooLarge = errors.New("dataverse: response body too large")

// limitedTransport bounds every response body, including the error bodies azcore downloads.
type limitedTransport struct{ c *http.Client }

func (t limitedTransport) Do(req *http.Request) (*http.Response, error) {
	resp, err := t.c.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: maxResponseBytes}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Distinguish "exactly at the limit" from "more to come".
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
