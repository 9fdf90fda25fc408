// Package deploy holds the Bicep templates that deploy dvbulk to Azure Functions Flex Consumption
// (main.bicep and its modules) and a small reader of Bicep text, so the templates can be checked
// offline where no Bicep CLI is installed: which roles they assign, which app settings they set,
// that shared-key access is off and that no secret value is in them.
package deploy

import (
	"fmt"
	"regexp"
	"strings"
)

// Resource is one `resource` declaration of a Bicep file.
type Resource struct {
	Symbol     string // the declaration's symbolic name
	Type       string // e.g. Microsoft.Storage/storageAccounts
	APIVersion string
	Existing   bool   // a reference to a resource the file does not deploy
	Body       string // the text between the outer braces
}

var resourceHead = regexp.MustCompile(`(?m)^\s*resource\s+(\w+)\s+'([^'@]+)@([^']+)'\s*(existing\s*)?=\s*(?:if\s*\([^)]*\)\s*)?\{`)

// StripComments removes // and /* */ comments outside string literals (Bicep strings are single
// quoted, with backslash escapes), so a comment can neither hide nor fake a declaration.
func StripComments(src string) string {
	var b strings.Builder
	inStr := false
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case inStr:
			b.WriteByte(c)
			if c == '\\' && i+1 < len(src) {
				i++
				b.WriteByte(src[i])
			} else if c == '\'' {
				inStr = false
			}
		case c == '\'':
			inStr = true
			b.WriteByte(c)
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				i++
			}
			if i < len(src) {
				b.WriteByte('\n')
			}
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return b.String()
			}
			i += end + 3
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// block returns the text between the brace at src[open] and its match, skipping strings.
func block(src string, open int) (string, error) {
	depth, inStr := 0, false
	for i := open; i < len(src); i++ {
		c := src[i]
		switch {
		case inStr:
			if c == '\\' {
				i++
			} else if c == '\'' {
				inStr = false
			}
		case c == '\'':
			inStr = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth == 0 {
				return src[open+1 : i], nil
			}
		}
	}
	return "", fmt.Errorf("unbalanced braces after offset %d", open)
}

// Resources lists the resource declarations of a Bicep file (comments already stripped).
func Resources(src string) ([]Resource, error) {
	var out []Resource
	for _, m := range resourceHead.FindAllStringSubmatchIndex(src, -1) {
		body, err := block(src, m[1]-1)
		if err != nil {
			return nil, fmt.Errorf("resource %s: %w", src[m[2]:m[3]], err)
		}
		out = append(out, Resource{Symbol: src[m[2]:m[3]], Type: src[m[4]:m[5]], APIVersion: src[m[6]:m[7]],
			Existing: m[8] >= 0, Body: body})
	}
	return out, nil
}

// Properties returns the top-level `key: value` pairs of an object body: a value is the rest of its
// line, or the whole nested object or array when it opens one.
func Properties(body string) (map[string]string, error) {
	out := map[string]string{}
	key := regexp.MustCompile(`^\s*('?)([A-Za-z_][\w.-]*)('?)\s*:\s*`)
	for i := 0; i < len(body); {
		end := strings.IndexByte(body[i:], '\n')
		if end < 0 {
			end = len(body) - i
		}
		line := body[i : i+end]
		m := key.FindStringSubmatchIndex(line)
		if m == nil {
			i += end + 1
			continue
		}
		name := line[m[4]:m[5]]
		rest := strings.TrimSpace(line[m[1]:])
		if strings.HasPrefix(rest, "{") || strings.HasPrefix(rest, "[") {
			open := i + m[1] + strings.IndexAny(line[m[1]:], "{[")
			inner, err := block(body, open)
			if err != nil {
				return nil, fmt.Errorf("property %s: %w", name, err)
			}
			out[name] = rest[:1] + inner + map[byte]string{'{': "}", '[': "]"}[rest[0]]
			i = open + len(inner) + 2
			continue
		}
		out[name] = rest
		i += end + 1
	}
	return out, nil
}

// Var returns the object body of `var name = { ... }`.
func Var(src, name string) (string, error) {
	m := regexp.MustCompile(`(?m)^\s*var\s+` + regexp.QuoteMeta(name) + `\s*=\s*\{`).FindStringIndex(src)
	if m == nil {
		return "", fmt.Errorf("no object variable %s", name)
	}
	return block(src, m[1]-1)
}

// Unquote returns a single-quoted Bicep literal's text, or ok=false for an expression.
func Unquote(v string) (string, bool) {
	v = strings.TrimSpace(v)
	if len(v) < 2 || v[0] != '\'' || v[len(v)-1] != '\'' || strings.Contains(v, "${") {
		return "", false
	}
	return strings.ReplaceAll(v[1:len(v)-1], `\'`, `'`), true
}
