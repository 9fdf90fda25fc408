package enrich

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Response is a decoded answer of the enrichment service.
type Response struct {
	Results []Item `json:"results"`
}

// Item is one record's answer.
type Item struct {
	ID     string         `json:"id"`
	Fields map[string]any `json:"fields"`
	Error  string         `json:"error"`
}

// DecodeResponse parses a 200 answer of the enrichment service. Numbers stay json.Number so integers
// survive; a body that is not the documented shape is an error naming what is wrong.
func DecodeResponse(data []byte) (*Response, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw struct {
		Results []json.RawMessage `json:"results"`
	}
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("not JSON of the form {\"results\":[...]}: %v", err)
	}
	if raw.Results == nil {
		return nil, errors.New(`no "results" array`)
	}
	r := &Response{Results: make([]Item, 0, len(raw.Results))}
	for i, msg := range raw.Results {
		d := json.NewDecoder(bytes.NewReader(msg))
		d.UseNumber()
		var it Item
		if err := d.Decode(&it); err != nil {
			return nil, fmt.Errorf("results[%d]: %v", i, err)
		}
		if it.ID == "" {
			return nil, fmt.Errorf("results[%d]: no id", i)
		}
		r.Results = append(r.Results, it)
	}
	return r, nil
}
