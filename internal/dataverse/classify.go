package dataverse

import (
	"net/http"
	"strings"
)

// Which server errors are worth repeating. Dataverse answers 500 both for passing trouble (a SQL
// deadlock or timeout under load) and for errors that repeat on every attempt (a plug-in's
// unhandled exception, a bad value deep in the platform), so the status alone cannot decide: the
// Dataverse error code in the body does. The transient codes are the ones Microsoft documents as
// load or concurrency effects ("Troubleshoot Dataverse bulk operation errors") and the ones the
// .NET ServiceClient retries (ShouldRetry / ShouldRetryWebAPI: the generic SQL error, a system
// exception whose message names SQL, and the three service protection codes).
//
// Codes arrive as hex strings ("0x80044150"); ServiceClient compares the decimal form, so both are
// accepted.
var transientCodes = map[string]string{
	"0x80044150": "Generic SQL error (deadlock, SQL number 1205)",
	"0x80044151": "SQL timeout expired",
	"0x80040255": "SQL transaction already rolled back or committed (a swallowed deadlock)",
	"0x80072321": "service protection: execution time",
	"0x80072322": "service protection: number of requests",
	"0x80072326": "service protection: concurrent requests",
}

// transientDecimal maps the decimal spellings of transientCodes to the hex ones.
var transientDecimal = map[string]string{
	"-2147204784": "0x80044150",
	"-2147204783": "0x80044151",
	"-2147220907": "0x80040255",
	"-2147015903": "0x80072321",
	"-2147015902": "0x80072322",
	"-2147015898": "0x80072326",
}

// codeSystemException is .NET's generic System.Exception HRESULT; ServiceClient retries it only
// when its message names SQL.
const codeSystemException = "0x80131501"

// transientAPIError reports whether an error answer is worth repeating: 408, 502, 503 and 504
// always (gateways and the front end, whatever the body); 500 when it carries a transient code
// (above), a "server busy" message, or no Dataverse error code at all (an answer the platform did
// not produce, such as a proxy's). Any other 5xx is permanent: repeating it gives the same answer.
// 429 is not covered here: the gate paces it.
func transientAPIError(e *APIError) bool {
	switch e.Status {
	case http.StatusRequestTimeout, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	if e.Status < 500 {
		return false
	}
	code := strings.ToLower(strings.TrimSpace(e.Code))
	if code == "" {
		return true
	}
	if hex, ok := transientDecimal[code]; ok {
		code = hex
	}
	if _, ok := transientCodes[code]; ok {
		return true
	}
	msg := strings.ToLower(e.Message)
	switch {
	case (code == codeSystemException || code == "-2146233087") && strings.Contains(msg, "sql"):
		return true
	case strings.Contains(msg, "server busy") || strings.Contains(msg, "server is busy"):
		return true
	}
	return false
}

// permanentServerError reports a server error (5xx) that repeating will not fix: it is retried once
// at most (a one-off fault looks the same), then the record fails with its code and message instead
// of being retried or redelivered.
func permanentServerError(e *APIError) bool {
	return e != nil && e.Status >= 500 && !transientAPIError(e)
}
