package dvsim

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// keyAddr is a parsed key segment: a primary key, or the columns and values of an alternate key.
type keyAddr struct {
	id    key
	isID  bool
	names []string
	vals  []any // string or int64, by names
}

// parseSegment reads what is between the parentheses of contacts(...): a GUID, pk=GUID, or
// name='text' / name=123 pairs separated by commas (” is a quote inside a string).
func parseSegment(pk, seg string) (keyAddr, error) {
	if k, ok := parseKey(seg); ok {
		return keyAddr{id: k, isID: true}, nil
	}
	var a keyAddr
	rest := seg
	for rest != "" {
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return a, fmt.Errorf("bad key segment %q", seg)
		}
		name := strings.TrimSpace(rest[:eq])
		rest = rest[eq+1:]
		var v any
		if strings.HasPrefix(rest, "'") {
			var b strings.Builder
			i := 1
			for ; i < len(rest); i++ {
				if rest[i] == '\'' {
					if i+1 < len(rest) && rest[i+1] == '\'' {
						b.WriteByte('\'')
						i++
						continue
					}
					break
				}
				b.WriteByte(rest[i])
			}
			if i >= len(rest) {
				return a, fmt.Errorf("unterminated string in key segment %q", seg)
			}
			v, rest = b.String(), rest[i+1:]
		} else {
			end := strings.IndexByte(rest, ',')
			if end < 0 {
				end = len(rest)
			}
			lit := strings.TrimSpace(rest[:end])
			if k, ok := parseKey(lit); ok && name == pk {
				return keyAddr{id: k, isID: true}, nil
			}
			n, err := strconv.ParseInt(lit, 10, 64)
			if err != nil {
				return a, fmt.Errorf("bad key value %q in %q", lit, seg)
			}
			v, rest = n, rest[end:]
		}
		a.names, a.vals = append(a.names, name), append(a.vals, v)
		if strings.HasPrefix(rest, ",") {
			rest = rest[1:]
		} else if rest != "" {
			return a, fmt.Errorf("bad key segment %q", seg)
		}
	}
	if len(a.names) == 0 {
		return a, fmt.Errorf("empty key segment")
	}
	return a, nil
}

// splitRef splits a record reference (contacts(...), /contacts(...), or an absolute URL of the
// environment) into its entity set and key segment.
func splitRef(ref string) (set, seg string, ok bool) {
	if i := strings.Index(ref, apiPrefix); i >= 0 {
		ref = ref[i+len(apiPrefix):]
	}
	ref = strings.TrimPrefix(ref, "/")
	open := strings.IndexByte(ref, '(')
	if open <= 0 || !strings.HasSuffix(ref, ")") {
		return "", "", false
	}
	return ref[:open], ref[open+1 : len(ref)-1], true
}

// The Web API's errors for keys and references.

func undefinedKey(logical string) *answer {
	return errAnswer(http.StatusBadRequest, "0x80060888", fmt.Sprintf("The specified key attributes are not a defined key for the %s entity", logical))
}

func noSuchKeyRecord(logical string) *answer {
	return errAnswer(http.StatusNotFound, "0x80060891", fmt.Sprintf("A record with the specified key values does not exist in %s entity", logical))
}

func noSuchRecord(logical string, id string) *answer {
	return errAnswer(http.StatusNotFound, "0x80040217", fmt.Sprintf("%s With Id = %s Does Not Exist", logical, id))
}

func duplicateKey() *answer {
	return errAnswer(http.StatusPreconditionFailed, "0x80040237", "Cannot insert duplicate key.")
}

func duplicateAltKey(k KeyDef) *answer {
	return errAnswer(http.StatusPreconditionFailed, "0x80060892", fmt.Sprintf("A record that has the attribute values %s already exists. The entity key %s requires that this set of attributes contains unique values. Select unique values and try again.", strings.Join(k.Columns, ", "), k.Name))
}

func badPayload(set, msg string) *answer {
	return errAnswer(http.StatusBadRequest, "0x80048d19", fmt.Sprintf("Error identified in Payload provided by the user for Entity :'%s': %s", set, msg))
}

// accountNumber is the derived account number of seeded account seq (its alternate key).
func accountNumber(seq int32) string {
	return fmt.Sprintf("ACC-%06d", seq)
}

// AccountNumber is the account number of seeded record i (the accounts table's alternate key
// accountnumber), for tests and demos that look accounts up by it.
func AccountNumber(i int) string { return accountNumber(int32(i)) }

// resolveRef finds the record a reference names; the caller holds s.mu. It answers with the
// Web API's error when the reference is malformed or names nothing.
func (s *Sim) resolveRef(ref string) (string, *answer) {
	set, seg, ok := splitRef(ref)
	if !ok {
		return "", errAnswer(http.StatusBadRequest, "0x80048d19", fmt.Sprintf("The entity reference '%s' is not a valid relative URL of a record.", ref))
	}
	if set == "accounts" {
		a, err := parseSegment("accountid", seg)
		if err != nil {
			return "", errAnswer(http.StatusBadRequest, "0x0", "Bad Request - Error in query syntax.")
		}
		if a.isID {
			if s.tab.lookup(a.id.String()) == nil {
				return "", noSuchRecord("account", a.id.String())
			}
			return a.id.String(), nil
		}
		if len(a.names) != 1 || a.names[0] != "accountnumber" {
			return "", undefinedKey("account")
		}
		num, _ := a.vals[0].(string)
		var seq int
		if _, err := fmt.Sscanf(strings.ToUpper(num), "ACC-%06d", &seq); err != nil || accountNumber(int32(seq)) != strings.ToUpper(num) {
			return "", noSuchKeyRecord("account")
		}
		id := accountKey(seq).String()
		if r := s.tab.lookup(id); r == nil || r.seq != int32(seq) {
			return "", noSuchKeyRecord("account")
		}
		return id, nil
	}
	t := s.tables[set]
	if t == nil {
		return "", errAnswer(http.StatusNotFound, "0x8006088a", fmt.Sprintf("Resource not found for the segment '%s'.", set))
	}
	a, err := parseSegment(t.def.PrimaryKey, seg)
	if err != nil {
		return "", errAnswer(http.StatusBadRequest, "0x0", "Bad Request - Error in query syntax.")
	}
	k, _, bad := t.find(a)
	if bad != nil {
		return "", bad
	}
	if _, exists := t.rows[k]; !exists {
		if a.isID {
			return "", noSuchRecord(t.def.LogicalName, k.String())
		}
		return "", noSuchKeyRecord(t.def.LogicalName)
	}
	return k.String(), nil
}

// find locates the row an address names: its key and whether it exists. An alternate key that
// names no row yields a zero key and exists false.
func (t *dtable) find(a keyAddr) (key, bool, *answer) {
	if a.isID {
		_, ok := t.rows[a.id]
		return a.id, ok, nil
	}
	ki := t.keyFor(a.names)
	if ki < 0 {
		return key{}, false, undefinedKey(t.def.LogicalName)
	}
	vals := make([]any, len(t.types))
	for i, n := range a.names {
		vals[t.col[n]] = a.vals[i]
	}
	k, ok := t.alt[ki][t.altValue(ki, vals)]
	return k, ok, nil
}
