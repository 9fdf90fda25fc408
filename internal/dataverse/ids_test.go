package dataverse

import (
	"errors"
	"testing"
)

func TestParseID(t *testing.T) {
	const id = "0f8fad5b-d9cb-469f-a165-70867728950e"
	cases := []struct {
		in, want string
		ok       bool
	}{
		{id, id, true},
		{"0F8FAD5B-D9CB-469F-A165-70867728950E", id, true},
		{"urn:uuid:" + id, "", false},
		{"{" + id + "}", "", false},
		{"(" + id + ")", "", false},
		{"0f8fad5bd9cb469fa16570867728950e", "", false},
		{"00000000-0000-0000-0000-000000000000", "", false},
		{"", "", false},
		{" " + id[1:], "", false},
		{id[:35] + "g", "", false},
		{"0f8fad5b-d9cb-469f-a165_70867728950e", "", false},
		{"0f8fad5bd-9cb-469f-a165-70867728950e", "", false},
		{id + "\n", "", false},
		{"0f8fad5b-d9cb-469f-a165-70867728950' or 1 eq 1", "", false},
	}
	for _, tc := range cases {
		got, err := ParseID(tc.in)
		if tc.ok != (err == nil) || got != tc.want {
			t.Errorf("ParseID(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidID) {
			t.Errorf("ParseID(%q) error %v does not wrap ErrInvalidID", tc.in, err)
		}
	}
}

func TestLiteral(t *testing.T) {
	for in, want := range map[string]string{
		"Contoso":        "'Contoso'",
		"O'Brien":        "'O''Brien'",
		"''":             "''''''",
		"":               "''",
		"a' or 1 eq 1 '": "'a'' or 1 eq 1 '''",
	} {
		if got := Literal(in); got != want {
			t.Errorf("Literal(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestRecordGoneAndErrorIs(t *testing.T) {
	cases := []struct {
		e                              APIError
		gone, notFound, conflict, unav bool
	}{
		{APIError{Status: 404, Code: "0x80040217", Message: "account With Id = x Does Not Exist"}, true, true, false, false},
		{APIError{Status: 404, Code: "", Message: "account With Id = x Does Not Exist"}, true, true, false, false},
		{APIError{Status: 404, Code: "0x8006088a", Message: "Resource not found for the segment 'acounts'."}, false, true, false, false},
		{APIError{Status: 412, Code: "0x80060882"}, false, false, true, false},
		{APIError{Status: 503}, false, false, false, true},
		{APIError{Status: 400, Message: "Does Not Exist"}, false, false, false, false},
	}
	for _, tc := range cases {
		e := &tc.e
		if recordGone(e) != tc.gone || errors.Is(e, ErrNotFound) != tc.notFound ||
			errors.Is(e, ErrConflict) != tc.conflict || errors.Is(e, ErrUnavailable) != tc.unav {
			t.Errorf("%v: gone=%v notFound=%v conflict=%v unavailable=%v", e, recordGone(e),
				errors.Is(e, ErrNotFound), errors.Is(e, ErrConflict), errors.Is(e, ErrUnavailable))
		}
	}
	tooMany := &APIError{Status: 400, Message: "The current change set contains too many operations. A maximum number of '1000' operations are allowed in a change set."}
	if MaxBatchSize(tooMany) != 1000 || !errors.Is(tooMany, ErrBatchTooLarge) {
		t.Errorf("MaxBatchSize = %d", MaxBatchSize(tooMany))
	}
	if e := newAPIError(502, nil, []byte("<html>bad gateway</html>")); e.Message != "<html>bad gateway</html>" || e.Code != "" {
		t.Errorf("non-JSON error body: %#v", e)
	}
}
