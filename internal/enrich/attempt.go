package enrich

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
)

const (
	// maxResponseBytes bounds a 2xx body we decode; far above what any batch size produces.
	maxResponseBytes = 16 << 20
	// excerptBytes is how much of an error body we read to explain a failure.
	excerptBytes = 1 << 10
	// excerptRunes is how much of it ends up in a reason.
	excerptRunes = 200
	// drainBytes is how much of an unread body we discard so the connection can be reused.
	drainBytes = 64 << 10
)

type outcomeKind int

const (
	answered  outcomeKind = iota // results matched to the records
	permanent                    // fail the request's records for good (4xx); 400 and 413 are split first
	transient                    // retry with backoff (5xx, network, timeout, malformed answer)
	throttled                    // 429/503: wait Retry-After if given, else like transient
	canceled                     // the caller's ctx ended
)

type outcome struct {
	kind    outcomeKind
	results []Result // answered: one per sent record, in order
	reason  string
	wait    time.Duration // throttled: Retry-After
	hasWait bool
	// tooLarge marks a 400 or 413: the request may hold more records than the service takes
	// (or a record it refuses), so a request of several records is retried in halves.
	tooLarge bool
	quota    quota // what the answer's rate-limit headers said
}

// attempt sends one request and classifies what came back.
func (c *Client) attempt(ctx context.Context, body []byte, sent []Record) outcome {
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, c.cfg.URL, bytes.NewReader(body))
	if err != nil { // the URL was validated by New, so this is a programming error
		return outcome{kind: permanent, reason: "cannot build enrichment request: " + c.redact(err.Error())}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if c.cfg.APIKey != "" {
		req.Header.Set(c.cfg.APIKeyHeader, c.cfg.APIKey)
	}

	c.stats.requests.Add(1)
	c.stats.records.Add(int64(len(sent)))
	c.stats.enter()
	defer c.stats.leave()

	resp, err := c.http.Do(req)
	if err != nil {
		return c.transportFailure(ctx, actx, err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainBytes))
		_ = resp.Body.Close()
	}()
	o := c.classify(ctx, actx, resp, sent)
	o.quota = parseQuota(resp.Header, time.Now())
	if o.kind == throttled && !o.hasWait {
		// No Retry-After: a RateLimit reset says how long the quota is gone.
		if d, ok := o.quota.exhausted(); ok {
			o.wait, o.hasWait = d, true
		}
	}
	return o
}

func (c *Client) classify(ctx, actx context.Context, resp *http.Response, sent []Record) outcome {
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
		if err != nil {
			return c.transportFailure(ctx, actx, err)
		}
		if len(data) > maxResponseBytes {
			return outcome{kind: transient, reason: MalformedPrefix + fmt.Sprintf("body exceeds %d bytes", maxResponseBytes)}
		}
		m, err := matchResponse(data, sent)
		if err != nil {
			return outcome{kind: transient, reason: MalformedPrefix + c.redact(err.Error())}
		}
		c.stats.unknown.Add(int64(m.unknown))
		c.stats.duplicates.Add(int64(m.duplicates))
		for i := range m.results {
			m.results[i].Err = c.redact(m.results[i].Err)
		}
		return outcome{kind: answered, results: m.results}
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		wait, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now())
		return outcome{kind: throttled, reason: c.statusReason(resp), wait: wait, hasWait: ok}
	case code >= 500 || code == http.StatusRequestTimeout:
		// 408 is the server's own timeout: as transient as ours.
		return outcome{kind: transient, reason: c.statusReason(resp)}
	default:
		return outcome{kind: permanent, reason: c.statusReason(resp),
			tooLarge: code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge}
	}
}

// transportFailure classifies an error from sending or reading: canceled if the caller's ctx
// ended, otherwise transient (our per-attempt timeout included).
func (c *Client) transportFailure(ctx, actx context.Context, err error) outcome {
	if ctx.Err() != nil {
		return outcome{kind: canceled, reason: ReasonCanceled}
	}
	if errors.Is(actx.Err(), context.DeadlineExceeded) {
		return outcome{kind: transient, reason: fmt.Sprintf("enrichment request timed out after %s", c.cfg.Timeout)}
	}
	// url.Error repeats the URL, which may carry secrets in its query; keep only the cause.
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	return outcome{kind: transient, reason: "enrichment request failed: " + c.redact(err.Error())}
}

// statusReason describes a non-2xx answer: status plus a short, single-line excerpt of the body.
func (c *Client) statusReason(resp *http.Response) string {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, excerptBytes))
	reason := "enrichment service returned " + resp.Status
	if ex := excerpt(c.redact(string(data))); ex != "" {
		reason += ": " + ex
	}
	return reason
}

// excerpt folds s onto one line of printable text and cuts it to excerptRunes.
func excerpt(s string) string {
	s = strings.ToValidUTF8(s, "?")
	var b strings.Builder
	n := 0
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			space = b.Len() > 0
			continue
		}
		if n == excerptRunes {
			b.WriteString("…")
			break
		}
		if space {
			b.WriteByte(' ')
			n++
			space = false
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// redact removes the API key from text that came from the service or the network, in case a
// service echoes it back ("invalid key abc…").
func (c *Client) redact(s string) string {
	if c.cfg.APIKey == "" {
		return s
	}
	return strings.ReplaceAll(s, c.cfg.APIKey, "[REDACTED]")
}
