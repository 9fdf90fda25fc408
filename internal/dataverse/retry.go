package dataverse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"

	"dvbulk/internal/backoff"
	"dvbulk/internal/ctxutil"
)

// request is one logical Web API call; do may send it several times.
type request struct {
	op          string // "query accounts", "patch accounts(<id>)": for errors and logs
	method, url string
	header      http.Header
	body        []byte
	contentType string
	// bisected: the caller narrows a failure down itself (UpdateMultiple), so a permanent 5xx is
	// returned at once instead of being repeated.
	bisected bool
}

// response is a complete answer, body already read (bounded).
type response struct {
	status int
	header http.Header
	body   []byte
}

// apiError returns the decoded error of a non-2xx/3xx response, or nil.
func (r *response) apiError() *APIError {
	if r.status < 400 {
		return nil
	}
	return newAPIError(r.status, r.header, r.body)
}

// do sends r until it gets an answer that is not worth retrying and returns it (any status,
// including 4xx: callers decide what those mean). Retries:
//   - 429: the gate (closed by sendPolicy for Retry-After) paces the retry for every caller;
//     bounded by MaxThrottleRetries.
//   - 401: once, after the bearer policy has dropped its cached token.
//   - 408/502/503/504, a 500 with a transient Dataverse code (transientAPIError), timeouts,
//     resets: capped exponential backoff with full jitter, bounded by MaxRetries (a 503
//     Retry-After is honoured as a minimum).
//   - any other 5xx: once (a one-off fault looks the same); then returned like a 4xx.
//
// When a budget runs out the error wraps ErrUnavailable and the last cause.
func (c *Client) do(ctx context.Context, r *request) (*response, error) {
	var transient, throttles, auths, permanent int
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("dataverse: %s: %w", r.op, err)
		}
		s, err := c.thr.acquire(ctx)
		if err != nil {
			return nil, fmt.Errorf("dataverse: %s: %w", r.op, err)
		}
		resp, err := c.attempt(ctx, r)
		o := neutral
		if err == nil {
			switch {
			case resp.status == http.StatusTooManyRequests:
				o = throttled
			case resp.status < 500:
				o = succeeded // served without complaint about load
			}
		}
		c.thr.release(s, o)

		var cause error
		switch {
		case errors.Is(err, errGateClosed):
			continue
		case err != nil:
			if ctx.Err() != nil {
				return nil, fmt.Errorf("dataverse: %s: %w", r.op, ctx.Err())
			}
			if !transientErr(err) {
				return nil, fmt.Errorf("dataverse: %s: %w", r.op, err)
			}
			cause = err
		case resp.status == http.StatusTooManyRequests:
			throttles++
			if throttles > c.cfg.MaxThrottleRetries {
				return nil, fmt.Errorf("dataverse: %s: %w: throttled %d times: %w", r.op, ErrUnavailable, throttles, resp.apiError())
			}
			c.retried(ctx, 1)
			continue
		case resp.status == http.StatusUnauthorized && c.hasCred && auths == 0:
			auths++
			c.retried(ctx, 1)
			c.log.Info().Str("op", r.op).Msg("dataverse 401; retrying once with a fresh token")
			continue
		case resp.status >= 500 || resp.status == http.StatusRequestTimeout:
			ae := resp.apiError()
			if permanentServerError(ae) {
				// Repeating gives the same answer; one retry covers a one-off fault. The caller
				// then fails the record with the server's code and message.
				if permanent++; permanent > 1 || r.bisected {
					return resp, nil
				}
			}
			cause = ae
		default:
			return resp, nil
		}

		transient++
		if transient > c.cfg.MaxRetries {
			return nil, fmt.Errorf("dataverse: %s: %w after %d attempts: %w", r.op, ErrUnavailable, transient, cause)
		}
		c.retried(ctx, 1)
		delay := backoff.Wait(c.cfg.RetryBaseDelay, c.cfg.RetryMaxDelay, transient-1)
		var ae *APIError
		if errors.As(cause, &ae) && ae.RetryAfter > delay {
			delay = ae.RetryAfter
		}
		c.log.Debug().Str("op", r.op).Int("attempt", transient).Dur("backoff", delay).AnErr("cause", cause).
			Msg("dataverse transient failure; retrying")
		if err := ctxutil.Sleep(ctx, delay); err != nil {
			return nil, fmt.Errorf("dataverse: %s: %w", r.op, err)
		}
	}
}

// attempt sends r once with its own deadline and reads the whole (bounded) body inside it.
func (c *Client) attempt(ctx context.Context, r *request) (*response, error) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	req, err := runtime.NewRequest(actx, r.method, r.url)
	if err != nil {
		return nil, err
	}
	for k, v := range r.header {
		req.Raw().Header[k] = v
	}
	if r.body != nil {
		if err := req.SetBody(streaming.NopCloser(bytes.NewReader(r.body)), r.contentType); err != nil {
			return nil, err
		}
	}
	runtime.SkipBodyDownload(req) // we read it ourselves, inside the attempt deadline
	resp, err := c.pl.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// transientErr: failures that say nothing about the request itself (the network or an attempt
// deadline), worth repeating. Credential failures and oversize bodies are not.
func transientErr(err error) bool {
	if errors.Is(err, errBodyTooLarge) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}
