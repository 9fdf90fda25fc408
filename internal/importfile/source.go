package importfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"
)

// ErrEncoding marks a file whose bytes are not valid in its declared encoding.
var ErrEncoding = errors.New("importfile: invalid encoding")

// EncodingError names the byte offset (in the file as stored) and line of the first byte that is
// not valid in the declared encoding.
type EncodingError struct {
	Encoding string
	Offset   int64
	Line     int64
}

func (e *EncodingError) Error() string {
	return fmt.Sprintf("importfile: invalid %s at byte offset %d (line %d); declare the file's encoding (for example \"encoding\": \"windows-1252\") or convert it to UTF-8", e.Encoding, e.Offset, e.Line)
}

func (e *EncodingError) Unwrap() error { return ErrEncoding }

// Encoding is a decoded file encoding: UTF-8 or a single-byte character set. Multi-byte legacy
// encodings (UTF-16, Shift JIS, ...) are refused because a byte offset into them cannot be
// resumed from without decoding the file from its start.
type Encoding struct {
	name string
	cm   *charmap.Charmap // nil for UTF-8
}

// UTF8 is the default encoding.
var UTF8 = Encoding{name: "UTF-8"}

// String returns the encoding's name.
func (e Encoding) String() string {
	if e.name == "" {
		return "UTF-8"
	}
	return e.name
}

// LookupEncoding resolves an IANA name or alias ("utf-8", "windows-1252", "latin1", "iso-8859-15").
// The empty name is UTF-8.
func LookupEncoding(name string) (Encoding, error) {
	n := strings.TrimSpace(name)
	if n == "" || strings.EqualFold(n, "utf-8") || strings.EqualFold(n, "utf8") {
		return UTF8, nil
	}
	enc, err := ianaindex.IANA.Encoding(n)
	if err != nil || enc == nil {
		// WHATWG labels cover the common informal names (cp1252, latin2).
		enc, err = htmlindex.Get(n)
	}
	if err != nil || enc == nil {
		return Encoding{}, fmt.Errorf("importfile: unknown encoding %q (want utf-8 or an IANA single-byte character set such as windows-1252 or iso-8859-1)", name)
	}
	cm, ok := enc.(*charmap.Charmap)
	if !ok {
		return Encoding{}, fmt.Errorf("importfile: encoding %q is not supported: only utf-8 and single-byte character sets such as windows-1252 are; convert the file to UTF-8", name)
	}
	canon, _ := ianaindex.IANA.Name(enc)
	if canon == "" {
		canon = n
	}
	return Encoding{name: canon, cm: cm}, nil
}

// source yields the runes of a file with the byte offset each starts at, one rune of push-back,
// and the current line number. It refuses invalid UTF-8 with its offset.
type source struct {
	r    *bufio.Reader
	enc  Encoding
	off  int64 // offset of the next unread byte
	line int64 // line of the next unread rune, 1-based

	back     bool
	backRune rune
	backOff  int64
	backLine int64
}

func newSource(r io.Reader, enc Encoding, off, line int64) *source {
	if line < 1 {
		line = 1
	}
	return &source{r: bufio.NewReaderSize(r, 64<<10), enc: enc, off: off, line: line}
}

// bom checks the start of a file: a UTF-8 byte order mark is skipped; a UTF-16 one, or a UTF-8
// one on a file declared in another encoding, is refused because the file would decode to noise.
func (s *source) bom() error {
	head, _ := s.r.Peek(3)
	switch {
	case bytes.HasPrefix(head, []byte{0xEF, 0xBB, 0xBF}):
		if s.enc.cm != nil {
			return fmt.Errorf("importfile: the file starts with a UTF-8 byte order mark but its declared encoding is %s; remove the \"encoding\" setting", s.enc)
		}
		_, _ = s.r.Discard(3)
		s.off += 3
	case bytes.HasPrefix(head, []byte{0xFF, 0xFE}), bytes.HasPrefix(head, []byte{0xFE, 0xFF}):
		return errors.New("importfile: the file is UTF-16 (byte order mark at offset 0); save it as UTF-8")
	}
	return nil
}

// next returns the next rune and its offset; io.EOF at the end.
func (s *source) next() (rune, int64, error) {
	if s.back {
		s.back = false
		s.line = s.backLine
		if s.backRune == '\n' {
			s.line++
		}
		return s.backRune, s.backOff, nil
	}
	start := s.off
	var r rune
	if s.enc.cm != nil {
		b, err := s.r.ReadByte()
		if err != nil {
			return 0, start, readErr(err)
		}
		s.off++
		r = s.enc.cm.DecodeByte(b)
	} else {
		var size int
		var err error
		r, size, err = s.r.ReadRune()
		if err != nil {
			return 0, start, readErr(err)
		}
		if r == utf8.RuneError && size == 1 {
			return 0, start, &EncodingError{Encoding: "UTF-8", Offset: start, Line: s.line}
		}
		s.off += int64(size)
	}
	s.backRune, s.backOff, s.backLine = r, start, s.line
	if r == '\n' {
		s.line++
	}
	return r, start, nil
}

// unread pushes back the rune next returned last.
func (s *source) unread() {
	s.back = true
	s.line = s.backLine
}

// pos is the offset of the next rune to be read.
func (s *source) pos() int64 {
	if s.back {
		return s.backOff
	}
	return s.off
}

func readErr(err error) error {
	if err == io.EOF {
		return io.EOF
	}
	return fmt.Errorf("importfile: read: %w", err)
}
