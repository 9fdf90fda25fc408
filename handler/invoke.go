package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// The host's request and response, as read from the Functions host's source
// (github.com/Azure/azure-functions-host), not the example in Microsoft's "Azure Functions custom
// handlers": strings and numbers in Data and Metadata
// arrive JSON-encoded a second time, DequeueCount is a string, Id and PopReceipt carry inner quotes,
// and a queue message's own JSON properties are copied into Metadata (overwriting same-named keys).

// invokeRequest is the host's body. encoding/json matches the PascalCase keys case-insensitively, as
// Newtonsoft does on the host side.
type invokeRequest struct {
	Data     map[string]json.RawMessage `json:"Data"`
	Metadata map[string]json.RawMessage `json:"Metadata"`
}

// Invocation is one call from the host.
type Invocation struct {
	ID       string
	Function string
	Deadline time.Time
	Log      zerolog.Logger
}

// TimerInfo is the timer trigger's payload.
type TimerInfo struct {
	ScheduleStatus *ScheduleStatus // nil when the schedule monitor is off
	IsPastDue      bool
}

// ScheduleStatus is the timer's schedule monitor state (local time of the host, usually UTC).
type ScheduleStatus struct {
	Last, Next, LastUpdated time.Time
}

// QueueMessage is the queue trigger's payload.
type QueueMessage struct {
	Body                                           []byte
	ID                                             string // "" when a message property shadowed Metadata.Id
	PopReceipt                                     string
	DequeueCount                                   int
	InsertionTime, ExpirationTime, NextVisibleTime time.Time
}

// Result is what a function hands back: queue messages by output binding name, and log lines.
type Result struct {
	Outputs map[string][]string
	Logs    []string
}

// invokeResponse is the body the host reads. Queue outputs are always arrays of strings: a bare
// string that happens to be valid base64 would be decoded by the host into garbage.
type invokeResponse struct {
	Outputs     map[string][]string `json:"Outputs"`
	Logs        []string            `json:"Logs"`
	ReturnValue any                 `json:"ReturnValue"`
}

// errBadInvocation marks a body that is not a valid invocation of the function.
var errBadInvocation = errors.New("bad invocation")

func decodeRequest(body []byte) (*invokeRequest, error) {
	var req invokeRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("%w: body is not the host's JSON: %v", errBadInvocation, err)
	}
	if req.Data == nil {
		return nil, fmt.Errorf("%w: no Data", errBadInvocation)
	}
	return &req, nil
}

// lookup finds a key case-insensitively (the host's binding data dictionary is case-insensitive).
func lookup(m map[string]json.RawMessage, key string) (json.RawMessage, bool) {
	if v, ok := m[key]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return nil, false
}

// decodeTimer reads the timer binding (a real JSON object: TimerInfo is serialized as a POCO).
func decodeTimer(req *invokeRequest, binding string) (TimerInfo, error) {
	raw, ok := lookup(req.Data, binding)
	if !ok {
		return TimerInfo{}, fmt.Errorf("%w: no Data.%s", errBadInvocation, binding)
	}
	var t struct {
		ScheduleStatus *struct {
			Last, Next, LastUpdated string
		}
		IsPastDue bool
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return TimerInfo{}, fmt.Errorf("%w: Data.%s is not a TimerInfo: %v", errBadInvocation, binding, err)
	}
	info := TimerInfo{IsPastDue: t.IsPastDue}
	if s := t.ScheduleStatus; s != nil {
		info.ScheduleStatus = &ScheduleStatus{Last: parseTime(s.Last), Next: parseTime(s.Next), LastUpdated: parseTime(s.LastUpdated)}
	}
	return info, nil
}

// decodeQueue reads the queue trigger binding and its metadata.
func decodeQueue(req *invokeRequest, binding string) (QueueMessage, error) {
	raw, ok := lookup(req.Data, binding)
	if !ok {
		return QueueMessage{}, fmt.Errorf("%w: no Data.%s", errBadInvocation, binding)
	}
	body, err := messageBody(raw)
	if err != nil {
		return QueueMessage{}, fmt.Errorf("%w: Data.%s: %v", errBadInvocation, binding, err)
	}
	m := QueueMessage{Body: body}
	// The host copies a JSON message's top-level properties into the same case-insensitive Metadata:
	// a property named like a host key (id, dequeueCount, ...) overwrote it, so that value is unknown.
	host := func(key string) (string, bool) {
		if hasTopLevelKey(body, key) {
			return "", false
		}
		return unquoteKey(req.Metadata, key), true
	}
	if s, ok := host("DequeueCount"); ok && s != "" {
		n, err := strconv.Atoi(s)
		if err == nil && n >= 0 {
			m.DequeueCount = n
		}
	}
	m.PopReceipt, _ = host("PopReceipt")
	t, _ := host("InsertionTime")
	m.InsertionTime = parseTime(t)
	t, _ = host("ExpirationTime")
	m.ExpirationTime = parseTime(t)
	t, _ = host("NextVisibleTime")
	m.NextVisibleTime = parseTime(t)
	m.ID, _ = host("Id")
	return m, nil
}

// messageBody undoes the host's double encoding. The value is a JSON string whose content is the
// JSON encoding of the message text; with "dataType": "binary" it is the base64 of the bytes.
func messageBody(raw json.RawMessage) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '{' {
		return raw, nil // already an object (not what the host sends, but unambiguous)
	}
	var s1 string
	if err := json.Unmarshal(raw, &s1); err != nil {
		return nil, fmt.Errorf("not a JSON string: %v", err)
	}
	if strings.HasPrefix(s1, `"`) {
		var s2 string
		if err := json.Unmarshal([]byte(s1), &s2); err != nil {
			return nil, fmt.Errorf("double-encoded string does not decode: %v", err)
		}
		return []byte(s2), nil
	}
	if b, err := base64.StdEncoding.DecodeString(s1); err == nil && len(s1)%4 == 0 && s1 != "" {
		return b, nil // dataType binary
	}
	return []byte(s1), nil
}

// unquote reads a Metadata scalar: "\"x\"" (double-encoded), "x", or a bare number.
func unquote(v json.RawMessage) string {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return strings.TrimSpace(string(v))
	}
	return strings.Trim(s, `"`)
}

func unquoteKey(m map[string]json.RawMessage, key string) string {
	if v, ok := lookup(m, key); ok {
		return unquote(v)
	}
	return ""
}

func parseTime(s string) time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "1/2/2006 3:04:05 PM -07:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

func hasTopLevelKey(body []byte, key string) bool {
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return false
	}
	for k := range obj {
		if strings.EqualFold(k, key) {
			return true
		}
	}
	return false
}

// encodeResponse renders the host's response body: never empty, never null.
func encodeResponse(r Result) []byte {
	resp := invokeResponse{Outputs: r.Outputs, Logs: r.Logs}
	if resp.Outputs == nil {
		resp.Outputs = map[string][]string{}
	}
	if resp.Logs == nil {
		resp.Logs = []string{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(resp)
	return buf.Bytes()
}
