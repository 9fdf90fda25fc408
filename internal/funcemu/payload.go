package funcemu

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/google/uuid"
)

// The host serializes with Newtonsoft.Json: strings and numbers in Data and Metadata are serialized
// and then embedded as a string again (double encoding), dates as ISO-8601 with an offset, POCOs as
// objects; '<', '>' and '&' are not escaped.

// kv is an ordered JSON object member.
type kv struct {
	key string
	val json.RawMessage
}

func marshal(v any) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return json.RawMessage(bytes.TrimRight(b.Bytes(), "\n"))
}

// doubled is the host's rule 4: SerializeObject(value), then that text as a JSON string.
func doubled(v any) json.RawMessage { return marshal(string(marshal(v))) }

func object(members []kv) json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(marshal(m.key))
		b.WriteByte(':')
		b.Write(m.val)
	}
	b.WriteByte('}')
	return b.Bytes()
}

func isoOffset(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05") + "+00:00" }

func sysObject(method string) json.RawMessage {
	return object([]kv{
		{"MethodName", marshal(method)},
		{"UtcNow", marshal(time.Now().UTC().Format("2006-01-02T15:04:05.0000000Z"))},
		{"RandGuid", marshal(uuid.NewString())},
	})
}

func timerPayload(fn function, o TimerOptions) []byte {
	next := o.Next
	if next.IsZero() {
		next = time.Now().UTC().Truncate(time.Second)
	}
	status := json.RawMessage("null")
	if !o.NullStatus {
		last := next.Add(-24 * time.Hour)
		status = object([]kv{{"Last", marshal(isoOffset(last))}, {"Next", marshal(isoOffset(next))}, {"LastUpdated", marshal(isoOffset(last))}})
	}
	info := object([]kv{
		{"Schedule", object([]kv{{"AdjustForDST", marshal(true)}})},
		{"ScheduleStatus", status},
		{"IsPastDue", marshal(o.PastDue)},
	})
	return object([]kv{
		{"Data", object([]kv{{fn.trigger.Name, info}})},
		{"Metadata", object([]kv{{"sys", sysObject(fn.name)}})},
	})
}

// queuePayload builds a queue invocation: the decoded message text double-encoded in Data, the
// message's metadata, sys, and the message's own top-level JSON properties copied into Metadata
// (case-insensitively overwriting same-named keys, dropping names that end in "trigger").
func queuePayload(fn function, m *message, body string) []byte {
	var data json.RawMessage
	if fn.trigger.DataType == "binary" {
		data = marshal(base64.StdEncoding.EncodeToString([]byte(body)))
	} else {
		data = doubled(body)
	}
	meta := []kv{
		{"DequeueCount", doubled(m.dequeue)},
		{"ExpirationTime", marshal(isoOffset(m.inserted.Add(7 * 24 * time.Hour)))},
		{"Id", doubled(m.id)},
		{"InsertionTime", marshal(isoOffset(m.inserted))},
		{"NextVisibleTime", marshal(isoOffset(m.visibleAt))},
		{"PopReceipt", doubled(m.pop)},
		{"sys", sysObject(fn.name)},
	}
	for _, p := range members(body) {
		v := bytes.TrimSpace(p.val)
		if len(v) == 0 || v[0] == '[' || string(v) == "null" || strings.HasSuffix(strings.ToLower(p.key), "trigger") {
			continue
		}
		var val json.RawMessage
		if v[0] == '{' {
			var c bytes.Buffer // JObject.FromObject: re-serialized compactly
			_ = json.Compact(&c, v)
			val = c.Bytes()
		} else {
			val = doubled(scalarString(v))
		}
		replaced := false
		for i := range meta {
			if strings.EqualFold(meta[i].key, p.key) {
				meta[i].val, replaced = val, true // the binding data is case-insensitive
			}
		}
		if !replaced {
			meta = append(meta, kv{p.key, val})
		}
	}
	return object([]kv{
		{"Data", object([]kv{{fn.trigger.Name, data}})},
		{"Metadata", object(meta)},
	})
}

// scalarString is (string)JValue: strings as they are, numbers as written, booleans True/False.
func scalarString(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	switch string(v) {
	case "true":
		return "True"
	case "false":
		return "False"
	}
	return string(v)
}

// members returns the top-level members of a JSON object in document order (as JObject keeps
// them), or nil when body is not a JSON object.
func members(body string) []kv {
	if !strings.HasPrefix(strings.TrimSpace(body), "{") || !json.Valid([]byte(body)) {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(body))
	if _, err := dec.Token(); err != nil {
		return nil
	}
	var out []kv
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil
		}
		out = append(out, kv{key, v})
	}
	return out
}

// outputMessages turns one Outputs value into queue message bodies per the host's rules
// (reference §2.2): arrays fan out, strings get a base64-decode attempt, objects are re-serialized
// indented, numbers and booleans use .NET ToString().
func outputMessages(v json.RawMessage, binary bool) []string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || string(v) == "null" {
		return nil
	}
	switch v[0] {
	case '[':
		var items []json.RawMessage
		if json.Unmarshal(v, &items) != nil {
			return nil
		}
		var out []string
		for _, it := range items {
			out = append(out, itemString(it))
		}
		return out
	case '{':
		return []string{indented(v)}
	case '"':
		var s string
		_ = json.Unmarshal(v, &s)
		if !binary {
			if b, err := base64.StdEncoding.DecodeString(s); err == nil && s != "" {
				return []string{string(b)} // the trap: valid base64 text is decoded
			}
		}
		t := strings.TrimSpace(s)
		if strings.HasPrefix(t, "[") || strings.HasPrefix(t, "{") {
			if json.Valid([]byte(t)) {
				return outputMessages(json.RawMessage(t), true)
			}
		}
		return []string{s}
	}
	return []string{itemString(v)}
}

func itemString(it json.RawMessage) string {
	it = bytes.TrimSpace(it)
	switch {
	case len(it) > 0 && it[0] == '"':
		var s string
		_ = json.Unmarshal(it, &s)
		return s
	case len(it) > 0 && (it[0] == '{' || it[0] == '['):
		return indented(it)
	}
	return scalarString(it)
}

func indented(v json.RawMessage) string {
	var b bytes.Buffer
	if json.Indent(&b, v, "", "  ") != nil {
		return string(v)
	}
	return b.String()
}
