package dataverse

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Sentinels callers branch on. An *APIError matches the sentinel that fits its status through
// APIError.Is, so errors.Is works on wrapped API errors as well as on the sentinels wrapped directly.
var (
	// ErrNotFound: HTTP 404 (record or resource does not exist).
	ErrNotFound = errors.New("dataverse: not found")
	// ErrConflict: HTTP 412 (ETag mismatch or duplicate detection).
	ErrConflict = errors.New("dataverse: precondition failed")
	// ErrThrottled: HTTP 429 (service protection limit).
	ErrThrottled = errors.New("dataverse: throttled")
	// ErrUnavailable: the service could not be reached or kept failing transiently until the retry
	// budget ran out. The work was not (completely) done; retry later.
	ErrUnavailable = errors.New("dataverse: unavailable")
	// ErrNotSupported: the operation is not available for the table (for example UpdateMultiple).
	ErrNotSupported = errors.New("dataverse: not supported")
	// ErrBatchTooLarge: the server (or the client-side guard) refused the number of operations or
	// the size of a request.
	ErrBatchTooLarge = errors.New("dataverse: batch too large")
	// ErrInvalidID: an id is not a canonical, non-nil GUID.
	ErrInvalidID = errors.New("dataverse: invalid id")
	// ErrRolledBack: the record was valid but its change set failed because of another record.
	ErrRolledBack = errors.New("dataverse: rolled back with its change set")
)

// APIError is a non-success answer of the Web API, decoded from the {"error":{"code","message"}}
// envelope. Code is often a hex string such as 0x80040217 and is frequently empty; branch on Status.
type APIError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration // from Retry-After, when the server sent one
	RequestID  string        // x-ms-service-request-id or REQ_ID, for support cases
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dataverse: HTTP %d", e.Status)
	if txt := http.StatusText(e.Status); txt != "" {
		b.WriteString(" " + txt)
	}
	if e.Code != "" {
		b.WriteString(" (" + e.Code + ")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// Is lets errors.Is(err, ErrNotFound) and friends work on API errors.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrConflict:
		return e.Status == http.StatusPreconditionFailed
	case ErrThrottled:
		return e.Status == http.StatusTooManyRequests
	case ErrUnavailable:
		return transientAPIError(e)
	case ErrNotSupported:
		return e.Status == http.StatusNotImplemented
	case ErrBatchTooLarge:
		return e.Status == http.StatusRequestEntityTooLarge || MaxBatchSize(e) > 0
	}
	return false
}

// maxErrorMessage bounds what we keep of a server message; bodies of errors can be huge (trace text).
const maxErrorMessage = 2048

// newAPIError decodes an error response. A body that is not the JSON envelope still yields an
// error carrying the status and a bounded excerpt of the body.
func newAPIError(status int, h http.Header, body []byte) *APIError {
	e := &APIError{Status: status}
	if h != nil {
		e.RequestID = h.Get("x-ms-service-request-id")
		if e.RequestID == "" {
			e.RequestID = h.Get("REQ_ID")
		}
		if d, ok := retryAfter(h.Get("Retry-After"), time.Now()); ok {
			e.RetryAfter = d
		}
	}
	var env struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err == nil && (env.Error.Code != "" || env.Error.Message != "") {
		e.Code, e.Message = env.Error.Code, env.Error.Message
	} else {
		e.Message = strings.TrimSpace(string(body))
	}
	if len(e.Message) > maxErrorMessage {
		e.Message = e.Message[:maxErrorMessage] + "..."
	}
	return e
}

// batchLimitRE matches the OData library's quota messages, e.g.
// "A maximum number of '1000' operations are allowed in a change set" and
// "Only batch messages with a maximum number of '250' query operations ... are allowed."
var batchLimitRE = regexp.MustCompile(`(?i)maximum number of '(\d+)'`)

// MaxBatchSize returns the operation limit named by a "too many operations" error, or 0.
func MaxBatchSize(err error) int {
	var ae *APIError
	if !errors.As(err, &ae) || (ae.Status != http.StatusBadRequest && ae.Status != http.StatusRequestEntityTooLarge) {
		return 0
	}
	m := batchLimitRE.FindStringSubmatch(ae.Message)
	if m == nil {
		return 0
	}
	n, convErr := strconv.Atoi(m[1])
	if convErr != nil || n <= 0 {
		return 0
	}
	return n
}

// recordGone reports whether a 404 means "this record does not exist" (as opposed to an unknown
// entity set or action, which must not be mistaken for a deleted record).
func recordGone(e *APIError) bool {
	if e == nil || e.Status != http.StatusNotFound {
		return false
	}
	if strings.EqualFold(e.Code, "0x80040217") { // ObjectDoesNotExist
		return true
	}
	m := strings.ToLower(e.Message)
	return strings.Contains(m, "does not exist") || strings.Contains(m, "do not exist")
}

// unsupportedMessage reports errors that say a message (UpdateMultiple) is not available for a
// table: an unknown segment for the action, or an explicit "not supported / not implemented".
func unsupportedMessage(e *APIError, message string) bool {
	if e == nil {
		return false
	}
	if e.Status == http.StatusNotImplemented {
		return true
	}
	m := strings.ToLower(e.Message)
	if e.Status == http.StatusNotFound && strings.Contains(m, "resource not found for the segment") {
		return true
	}
	if e.Status != http.StatusBadRequest && e.Status != http.StatusNotFound {
		return false
	}
	return strings.Contains(m, strings.ToLower(message)) &&
		(strings.Contains(m, "not support") || strings.Contains(m, "not been implemented") ||
			strings.Contains(m, "not yet been implemented") || strings.Contains(m, "not enabled"))
}
