package dataverse

import (
	"os"
	"strings"
	"testing"
)

// FuzzParseBatchResponse: the parser must never panic, must bound what it returns, and every
// part it returns must be a plausible HTTP response tied to a part index. Seeds: the reference
// fixtures (plus testdata/fuzz/FuzzParseBatchResponse, committed).
func FuzzParseBatchResponse(f *testing.F) {
	for _, name := range []string{"batch_response.http", "changeset_response.http"} {
		raw, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		head, body, _ := strings.Cut(string(raw), "\r\n\r\n")
		ct := ""
		for _, l := range strings.Split(head, "\r\n") {
			if v, ok := strings.CutPrefix(l, "Content-Type: "); ok {
				ct = v
			}
		}
		f.Add(ct, []byte(body))
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		parts, err := parseBatchResponse(contentType, body)
		if err != nil {
			if parts != nil {
				t.Fatalf("parts returned with error %v", err)
			}
			return
		}
		if len(parts) > maxBatchParts {
			t.Fatalf("%d parts", len(parts))
		}
		last := 0
		for _, p := range parts {
			if p.Status < 100 || p.Status > 999 {
				t.Fatalf("status %d", p.Status)
			}
			if p.Part < last {
				t.Fatalf("part index went backwards: %d after %d", p.Part, last)
			}
			last = p.Part
			_ = p.Err() // must not panic on any body
		}
	})
}
