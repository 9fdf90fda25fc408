package enrich

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
)

// maxServiceErrorRunes bounds a per-record error message taken from the service.
const maxServiceErrorRunes = 300

type wireResponse struct {
	Results []wireResult `json:"results"`
}

type wireResult struct {
	ID     *string         `json:"id"`
	Fields map[string]any  `json:"fields"`
	Error  json.RawMessage `json:"error"`
}

type matched struct {
	results    []Result // one per sent record, in order
	unknown    int      // results for ids not sent, or without an id
	duplicates int      // further results for an already answered id
}

// matchResponse decodes a 2xx body and pairs its results with the sent records. Ids match
// case-insensitively (they are GUIDs); a record sent twice gets the same answer twice. An
// error means the body is not the protocol's shape; the caller treats that as transient.
func matchResponse(body []byte, sent []Record) (matched, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // integers must survive: numberofemployees 120, not 120.0
	var resp wireResponse
	if err := dec.Decode(&resp); err != nil {
		return matched{}, fmt.Errorf("decode: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return matched{}, errors.New("unexpected data after the JSON object")
	}
	if resp.Results == nil {
		return matched{}, errors.New(`no "results" array`)
	}

	slots := make(map[string][]int, len(sent))
	for i, r := range sent {
		k := strings.ToLower(r.ID)
		slots[k] = append(slots[k], i)
	}
	m := matched{results: make([]Result, len(sent))}
	done := make([]bool, len(sent))
	for _, wr := range resp.Results {
		if wr.ID == nil {
			m.unknown++
			continue
		}
		idx, ok := slots[strings.ToLower(*wr.ID)]
		if !ok {
			m.unknown++
			continue
		}
		if done[idx[0]] {
			m.duplicates++
			continue
		}
		errText, err := serviceError(wr.Error)
		if err != nil {
			return matched{}, fmt.Errorf("result for %q: %w", *wr.ID, err)
		}
		fields := wr.Fields
		if fields == nil { // an answer without fields is a success with nothing to write
			fields = map[string]any{}
		}
		for n, i := range idx {
			done[i] = true
			switch {
			case errText != "":
				m.results[i] = Result{ID: sent[i].ID, Err: errText}
			case n > 0: // a record sent twice gets its own map, so callers may change either
				m.results[i] = Result{ID: sent[i].ID, Fields: maps.Clone(fields)}
			default:
				m.results[i] = Result{ID: sent[i].ID, Fields: fields}
			}
		}
	}
	for i := range sent {
		if !done[i] {
			m.results[i] = Result{ID: sent[i].ID, Err: ReasonMissing}
		}
	}
	return m, nil
}

// serviceError turns a result's "error" member into a reason. Absent, null and "" mean no
// error; a string is the reason; any other JSON value (an object with a code, say) is kept
// in compact form so that nothing the service said is lost.
func serviceError(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return "", err
		}
		s = b.String()
	}
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > maxServiceErrorRunes {
		s = string(r[:maxServiceErrorRunes]) + "…"
	}
	return excerpt(s), nil
}
