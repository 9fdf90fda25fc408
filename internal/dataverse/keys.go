package dataverse

import (
	"fmt"
	"sort"
	"strings"
)

// Key addresses one record: by its primary key (ID) or by the columns of an alternate key
// (Alt), as in accounts(accountnumber='A-1') or contacts(firstname='Joe',emailaddress1='j@x').
// Alt values are strings (quoted) or integers (bare), as the key columns' types require.
type Key struct {
	ID  string
	Alt map[string]any
}

// Segment returns the text between the parentheses of the record's address, with the columns
// of an alternate key in name order so that the same key always gives the same URL.
func (k Key) Segment() (string, error) {
	if len(k.Alt) == 0 {
		id, err := ParseID(k.ID)
		if err != nil {
			return "", err
		}
		return id, nil
	}
	if k.ID != "" {
		return "", fmt.Errorf("%w: a key has either an id or alternate-key columns", ErrInvalidID)
	}
	names := make([]string, 0, len(k.Alt))
	for n := range k.Alt {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		if !validName(n) {
			return "", fmt.Errorf("dataverse: alternate-key column %q is not a logical name", n)
		}
		switch v := k.Alt[n].(type) {
		case string:
			parts[i] = n + "=" + KeyString(v)
		case int, int32, int64:
			parts[i] = fmt.Sprintf("%s=%d", n, v)
		default:
			return "", fmt.Errorf("dataverse: alternate-key column %q: value of type %T (want a string or an integer)", n, v)
		}
	}
	return strings.Join(parts, ","), nil
}

// Path returns the record's relative URL in entitySet: accounts(<id>) or accounts(accountnumber='A-1').
func (k Key) Path(entitySet string) (string, error) {
	seg, err := k.Segment()
	if err != nil {
		return "", err
	}
	return entitySet + "(" + seg + ")", nil
}

// KeyString quotes s as an OData string literal for a key segment: embedded quotes doubled and
// the characters a URL path cannot carry literally (%, /, ?, #, &, +, \, ", space, controls
// and non-ASCII bytes) percent-encoded, as the service decodes the segment before matching it.
func KeyString(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '\'':
			b.WriteString("''")
		case ch < 0x20 || ch >= 0x7f || strings.IndexByte("%/?#&+\\\" ", ch) >= 0:
			fmt.Fprintf(&b, "%%%02X", ch)
		default:
			b.WriteByte(ch)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

func validName(n string) bool {
	if n == "" {
		return false
	}
	for i, c := range n {
		if !(c == '_' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
