package ledger

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A shard is a binary document: the magic "DVL1", an 8-byte writer nonce (so the store can tell its
// own ambiguous write from someone else's), a uint32 count, then the entries sorted by id, 29 bytes
// each: the 16-byte id, the 8-byte fingerprint, the uint32 Unix second of the answer and a flags byte.
const (
	magic      = "DVL1"
	headerSize = 4 + 8 + 4
	// EntrySize is the bytes one record costs in the ledger.
	EntrySize   = 16 + 8 + 4 + 1
	flagNoMatch = 1
	flagFailed  = 2
)

type row struct {
	id [16]byte
	Entry
}

// errCorrupt marks a shard that cannot be decoded; it is treated as empty (its records re-asked).
var errCorrupt = errors.New("ledger: corrupt shard")

// parseID reads a canonical GUID into its 16 bytes in text order.
func parseID(s string) ([16]byte, error) {
	var id [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, fmt.Errorf("ledger: %q is not a GUID", s)
	}
	hexs := strings.ReplaceAll(s, "-", "")
	if _, err := hex.Decode(id[:], []byte(hexs)); err != nil {
		return id, fmt.Errorf("ledger: %q is not a GUID", s)
	}
	return id, nil
}

func formatID(id [16]byte) string {
	s := hex.EncodeToString(id[:])
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

// shardOf is the byte SQL Server orders a uniqueidentifier by first (the first byte of the last group
// in the text form), so a page read in key order falls into few shards.
func shardOf(id [16]byte) byte { return id[10] }

func decodeShard(data []byte) ([]row, error) {
	if len(data) < headerSize || string(data[:4]) != magic {
		return nil, errCorrupt
	}
	n := int(binary.BigEndian.Uint32(data[12:16]))
	body := data[headerSize:]
	if len(body) != n*EntrySize {
		return nil, errCorrupt
	}
	rows := make([]row, n)
	for i := range rows {
		b := body[i*EntrySize:]
		copy(rows[i].id[:], b[:16])
		rows[i].FP = binary.BigEndian.Uint64(b[16:24])
		rows[i].At = time.Unix(int64(binary.BigEndian.Uint32(b[24:28])), 0).UTC()
		rows[i].NoMatch = b[28]&flagNoMatch != 0
		rows[i].Failed = b[28]&flagFailed != 0
		if i > 0 && bytes.Compare(rows[i-1].id[:], rows[i].id[:]) >= 0 {
			return nil, errCorrupt
		}
	}
	return rows, nil
}

func encodeShard(rows []row) []byte {
	out := make([]byte, headerSize, headerSize+len(rows)*EntrySize)
	copy(out, magic)
	_, _ = rand.Read(out[4:12])
	binary.BigEndian.PutUint32(out[12:16], uint32(len(rows)))
	var b [EntrySize]byte
	for _, r := range rows {
		copy(b[:16], r.id[:])
		binary.BigEndian.PutUint64(b[16:24], r.FP)
		binary.BigEndian.PutUint32(b[24:28], uint32(max(0, r.At.Unix())))
		b[28] = 0
		if r.NoMatch {
			b[28] |= flagNoMatch
		}
		if r.Failed {
			b[28] |= flagFailed
		}
		out = append(out, b[:]...)
	}
	return out
}

func find(rows []row, id [16]byte) (int, bool) {
	return slices.BinarySearchFunc(rows, id, func(r row, id [16]byte) int { return bytes.Compare(r.id[:], id[:]) })
}

// merge applies updates (sorted by id, one per id) to rows, returning the new rows.
func merge(rows []row, ups []update) []row {
	out := make([]row, 0, len(rows)+len(ups))
	i := 0
	for _, u := range ups {
		for i < len(rows) && bytes.Compare(rows[i].id[:], u.id[:]) < 0 {
			out = append(out, rows[i])
			i++
		}
		if i < len(rows) && rows[i].id == u.id {
			i++ // replaced or removed
		}
		if !u.remove {
			out = append(out, row{id: u.id, Entry: u.Entry})
		}
	}
	return append(out, rows[i:]...)
}
