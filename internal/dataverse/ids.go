package dataverse

import (
	"fmt"
	"strings"
)

const nilGUID = "00000000-0000-0000-0000-000000000000"

// ParseID validates a record id strictly before it goes into any URL: exactly 36 characters in the
// 8-4-4-4-12 hexadecimal layout, not the nil GUID. Braces, urn:uuid: prefixes and the 32-digit
// form are refused rather than normalised, because an id that arrives in an unexpected shape is a
// sign of a bug upstream. It returns the canonical lowercase form.
func ParseID(s string) (string, error) {
	if len(s) != 36 {
		return "", fmt.Errorf("%w: %q: want 36 characters 8-4-4-4-12", ErrInvalidID, truncate(s, 64))
	}
	b := []byte(s)
	for i, c := range b {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", fmt.Errorf("%w: %q: want '-' at position %d", ErrInvalidID, s, i+1)
			}
			continue
		}
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			b[i] = c + ('a' - 'A')
		default:
			return "", fmt.Errorf("%w: %q: non-hex character at position %d", ErrInvalidID, s, i+1)
		}
	}
	id := string(b)
	if id == nilGUID {
		return "", fmt.Errorf("%w: nil GUID", ErrInvalidID)
	}
	return id, nil
}

// Literal returns s as an OData string literal: single-quoted, with embedded quotes doubled.
func Literal(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
