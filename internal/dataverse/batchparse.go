package dataverse

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
)

// maxBatchParts bounds the parts accepted from one response (the server allows 1000 operations).
const maxBatchParts = 2 * maxOpsPerBatch

// parseBatchResponse parses a multipart/mixed $batch response body (boundary taken from
// contentType) into its operation responses in wire order. Change-set responses (nested
// multipart/mixed) are flattened; their members carry the Part index of the change set and the
// echoed Content-ID. It never panics on hostile input (fuzzed) and bounds what it accepts.
func parseBatchResponse(contentType string, body []byte) ([]BatchResponse, error) {
	boundary, err := multipartBoundary(contentType)
	if err != nil {
		return nil, err
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	var out []BatchResponse
	for part := 0; ; part++ {
		p, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("batch response part %d: %w", part, err)
		}
		if len(out) >= maxBatchParts {
			return nil, fmt.Errorf("batch response: more than %d parts", maxBatchParts)
		}
		ct := p.Header.Get("Content-Type")
		mt, _, _ := mime.ParseMediaType(ct)
		switch mt {
		case "application/http":
			r, err := readInnerResponse(p, p.Header)
			if err != nil {
				return nil, fmt.Errorf("batch response part %d: %w", part, err)
			}
			r.Part = part
			out = append(out, r)
		case "multipart/mixed":
			inner, err := parseChangeSet(ct, p)
			if err != nil {
				return nil, fmt.Errorf("batch response part %d: %w", part, err)
			}
			for _, r := range inner {
				if len(out) >= maxBatchParts {
					return nil, fmt.Errorf("batch response: more than %d parts", maxBatchParts)
				}
				r.Part = part
				out = append(out, r)
			}
		default:
			return nil, fmt.Errorf("batch response part %d: unexpected content type %q", part, ct)
		}
	}
	return out, nil
}

func parseChangeSet(contentType string, r io.Reader) ([]BatchResponse, error) {
	boundary, err := multipartBoundary(contentType)
	if err != nil {
		return nil, err
	}
	mr := multipart.NewReader(r, boundary)
	var out []BatchResponse
	for {
		p, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("change set: %w", err)
		}
		if len(out) >= maxBatchParts {
			return nil, fmt.Errorf("change set: more than %d parts", maxBatchParts)
		}
		if mt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); mt != "application/http" {
			return nil, fmt.Errorf("change set: unexpected content type %q", p.Header.Get("Content-Type"))
		}
		resp, err := readInnerResponse(p, p.Header)
		if err != nil {
			return nil, fmt.Errorf("change set: %w", err)
		}
		out = append(out, resp)
	}
}

func multipartBoundary(contentType string) (string, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", fmt.Errorf("batch response content type %q: %w", contentType, err)
	}
	if mt != "multipart/mixed" || params["boundary"] == "" {
		return "", fmt.Errorf("batch response content type %q: want multipart/mixed with a boundary", contentType)
	}
	return params["boundary"], nil
}

// readInnerResponse reads the HTTP/1.1 response carried by one application/http part.
func readInnerResponse(r io.Reader, partHeader textproto.MIMEHeader) (BatchResponse, error) {
	resp, err := http.ReadResponse(bufio.NewReader(r), nil)
	if err != nil {
		return BatchResponse{}, fmt.Errorf("inner response: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return BatchResponse{}, fmt.Errorf("inner response body: %w", err)
	}
	if resp.StatusCode < 100 || resp.StatusCode > 999 {
		return BatchResponse{}, fmt.Errorf("inner response: status %d", resp.StatusCode)
	}
	id := partHeader.Get("Content-ID")
	if id == "" {
		id = resp.Header.Get("Content-ID") // some servers echo it on the inner response instead
	}
	return BatchResponse{
		ContentID: id,
		Status:    resp.StatusCode,
		Header:    resp.Header,
		Body:      body,
	}, nil
}
