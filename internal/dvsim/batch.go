package dvsim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// batchPart is one operation of a $batch, or a change set of operations.
type batchPart struct {
	req       *http.Request
	body      []byte
	contentID string
	changeSet []batchPart
}

// batch executes a $batch sequentially: top-level operations independently (stopping at the first
// failure unless Prefer: odata.continue-on-error), change sets atomically.
func (s *Sim) batch(r *http.Request, body []byte) *answer {
	s.c.kind("batch", 1)
	if bytes.Contains(bytes.ReplaceAll(body, []byte("\r\n"), nil), []byte("\n")) {
		return errAnswer(http.StatusBadRequest, "0x80048d19", "Error identified in Payload provided by the user for Entity :'accounts', For more information on this error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ----> InnerException : Microsoft.OData.ODataException: An exception of type 'System.ArgumentException' was thrown: Stream was not readable.")
	}
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		return errAnswer(http.StatusBadRequest, "0x0", "The batch request must have a multipart/mixed Content-Type with a boundary.")
	}
	parts, err := parseParts(body, params["boundary"], true)
	if err != nil {
		return errAnswer(http.StatusBadRequest, "0x80048d19", "Error identified in Payload provided by the user: "+err.Error())
	}
	ops := 0
	for _, p := range parts {
		ops += max(1, len(p.changeSet))
	}
	cost := s.cfg.Cost.BatchBase + time.Duration(ops)*s.cfg.Cost.BatchPerOp
	if ops > s.cfg.MaxBatchSize {
		a := errAnswer(http.StatusBadRequest, "0x80040203", fmt.Sprintf("The current batch message contains too many parts. Only batch messages with a maximum number of '%d' query operations, including changeset operations, are allowed.", s.cfg.MaxBatchSize))
		a.cost = s.cfg.Cost.BatchBase
		return a
	}
	s.c.kind("batchOps", int64(ops))
	continueOnError := strings.Contains(r.Header.Get("Prefer"), "odata.continue-on-error")
	boundary := "batchresponse_" + uuid.NewString()
	var out bytes.Buffer
	status := http.StatusOK
	var writes []string
	creates := 0
	for _, p := range parts {
		out.WriteString("--" + boundary + "\r\n")
		if p.changeSet == nil {
			a := s.route(p.req, p.body, false)
			writes, creates = append(writes, a.writes...), creates+a.creates
			writePart(&out, a, "")
			if a.status >= 400 && !continueOnError {
				status = http.StatusBadRequest
				break
			}
			continue
		}
		answers, failed := s.changeSet(p.changeSet)
		ok := failed < 0
		cs := "changesetresponse_" + uuid.NewString()
		out.WriteString("Content-Type: multipart/mixed; boundary=" + cs + "\r\n\r\n")
		for i, a := range answers {
			out.WriteString("--" + cs + "\r\n")
			if !ok {
				i = failed // the only answer is the failing operation's
			}
			writePart(&out, a, p.changeSet[i].contentID)
			if ok {
				writes, creates = append(writes, a.writes...), creates+a.creates
			}
		}
		out.WriteString("--" + cs + "--\r\n")
		if !ok && !continueOnError {
			status = http.StatusBadRequest
			break
		}
	}
	out.WriteString("--" + boundary + "--\r\n")
	return &answer{status: status, header: http.Header{"Content-Type": {"multipart/mixed; boundary=" + boundary}}, body: out.Bytes(), cost: cost, writes: writes, creates: creates}
}

// changeSet runs operations atomically: on the first failure every change is rolled back and only
// the failure is reported, with its index (-1 when all succeeded).
func (s *Sim) changeSet(ops []batchPart) ([]*answer, int) {
	type saved struct {
		rec    record
		exists bool
	}
	snap := map[string]saved{}
	var answers []*answer
	var journals []*[]change // declared-table writes of each operation, undone on failure
	for n, op := range ops {
		if id := idOf(op.req.URL.Path); id != "" {
			if _, seen := snap[id]; !seen {
				s.mu.RLock()
				var sv saved
				if r := s.tab.lookup(id); r != nil {
					sv = saved{rec: *r, exists: true}
				}
				s.mu.RUnlock()
				snap[id] = sv
			}
		}
		journal := &[]change{}
		op.req = op.req.WithContext(context.WithValue(op.req.Context(), journalKey{}, journal))
		a := s.route(op.req, op.body, false)
		journals = append(journals, journal)
		if a.status >= 400 {
			s.mu.Lock()
			for i := len(journals) - 1; i >= 0; i-- {
				undo(*journals[i])
			}
			for id, sv := range snap {
				switch r := s.tab.lookup(id); {
				case !sv.exists:
					s.tab.remove(id)
				case r != nil:
					*r = sv.rec
				}
			}
			s.mu.Unlock()
			return []*answer{a}, n
		}
		answers = append(answers, a)
	}
	return answers, -1
}

func idOf(path string) string {
	if m := singleRE.FindStringSubmatch(strings.TrimPrefix(path, apiPrefix)); m != nil {
		return strings.ToLower(m[1])
	}
	return ""
}

// writePart renders one inner response in the documented shape.
func writePart(b *bytes.Buffer, a *answer, contentID string) {
	b.WriteString("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n")
	if contentID != "" {
		b.WriteString("Content-ID: " + contentID + "\r\n")
	}
	b.WriteString("\r\nHTTP/1.1 " + strconv.Itoa(a.status) + " " + http.StatusText(a.status) + "\r\n")
	for k, vs := range a.header {
		for _, v := range vs {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("OData-Version: 4.0\r\n\r\n")
	if len(a.body) > 0 {
		b.Write(a.body)
	}
	b.WriteString("\r\n")
}

// parseParts reads the parts of a multipart body; top-level parts may be change sets.
func parseParts(body []byte, boundary string, top bool) ([]batchPart, error) {
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	var parts []batchPart
	for {
		p, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			return parts, nil
		}
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return nil, err
		}
		mt, params, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		switch {
		case mt == "multipart/mixed" && top:
			inner, err := parseParts(data, params["boundary"], false)
			if err != nil {
				return nil, fmt.Errorf("change set: %w", err)
			}
			for _, op := range inner {
				if op.req.Method == http.MethodGet {
					return nil, errors.New("GET is not allowed in a change set")
				}
			}
			if inner == nil {
				inner = []batchPart{}
			}
			parts = append(parts, batchPart{changeSet: inner})
		case mt == "application/http":
			req, rbody, err := parseInner(data)
			if err != nil {
				return nil, err
			}
			parts = append(parts, batchPart{req: req, body: rbody, contentID: p.Header.Get("Content-ID")})
		default:
			return nil, fmt.Errorf("part with Content-Type %q", p.Header.Get("Content-Type"))
		}
	}
}

// parseInner reads "METHOD URL HTTP/1.1", headers, a blank line and the body.
func parseInner(data []byte) (*http.Request, []byte, error) {
	br := bufio.NewReader(bytes.NewReader(data))
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil {
		return nil, nil, err
	}
	f := strings.Fields(line)
	if len(f) != 3 || !strings.HasPrefix(f[2], "HTTP/") {
		return nil, nil, fmt.Errorf("bad request line %q", line)
	}
	u, err := url.Parse(f[1])
	if err != nil {
		return nil, nil, err
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	rest, _ := io.ReadAll(br)
	req := &http.Request{Method: f[0], URL: u, Header: http.Header(h)}
	return req, bytes.TrimRight(rest, "\r\n"), nil
}
