package dvsim

import (
	"encoding/hex"
	"slices"
	"strconv"
	"time"
)

// key is a GUID as a 128-bit number in the order SQL Server (and so Dataverse's $orderby on a key)
// sorts uniqueidentifiers: the last six bytes of the text form first, then the fourth group, then the
// first three groups byte-swapped. The table is a sorted array of these instead of a map of strings
// (16 bytes a key), and pages come out in the order Dataverse gives them.
type key [2]uint64

func (a key) less(b key) bool { return a[0] < b[0] || a[0] == b[0] && a[1] < b[1] }

// sqlOrder lists, for each position of a key, the byte of the GUID's text form that goes there.
var sqlOrder = [16]int{10, 11, 12, 13, 14, 15, 8, 9, 7, 6, 5, 4, 3, 2, 1, 0}

func keyOf(b [16]byte) key {
	var k key
	for i, j := range sqlOrder {
		k[i/8] = k[i/8]<<8 | uint64(b[j])
	}
	return k
}

func (a key) bytes() [16]byte {
	var b [16]byte
	for i, j := range sqlOrder {
		b[j] = byte(a[i/8] >> (56 - 8*(i%8)))
	}
	return b
}

// parseKey reads a canonical GUID (either case); ok is false for anything else.
func parseKey(s string) (key, bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return key{}, false
	}
	var b [16]byte
	n := 0
	for i := 0; i < 36; i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			continue
		}
		v, ok := unhex(s[i])
		if !ok {
			return key{}, false
		}
		b[n/2] = b[n/2]<<4 | v
		n++
	}
	return keyOf(b), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func (a key) String() string {
	b := a.bytes()
	s := hex.EncodeToString(b[:])
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

// accountKey is the deterministic key of seeded record i: a splitmix64 hash shaped as a v4 GUID.
func accountKey(i int) key {
	hi, lo := mix(uint64(i)*2+1), mix(uint64(i)*2+2)
	hi = hi&^0xf000 | 0x4000 // version 4
	lo = lo&^(0xc<<60) | 0x8<<60
	var b [16]byte
	for j := 0; j < 8; j++ {
		b[j] = byte(hi >> (56 - 8*j))
		b[8+j] = byte(lo >> (56 - 8*j))
	}
	return keyOf(b)
}

func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// AccountID is the deterministic id (canonical lowercase GUID) of seeded record i.
func AccountID(i int) string { return accountKey(i).String() }

// Record flags.
const (
	hasEmployees = 1 << iota
	hasRevenue
	hasIndustry
	deleted
)

// record is one account in 48 bytes: seeded names are derived from seq on demand, and only
// records whose strings were written carry the strings.
type record struct {
	seq       int32 // seeding index (name and website derive from it); -1 for created records
	state     int8
	flags     uint8
	industry  int32
	employees int32
	version   int64
	modified  int64
	revenue   float64
	str       *strs // nil until a string column is written
}

type strs struct{ name, website, description string }

func (r *record) has(f uint8) bool { return r.flags&f != 0 }

func (r *record) set(f uint8, on bool) {
	if on {
		r.flags |= f
	} else {
		r.flags &^= f
	}
}

func (r *record) strings() strs {
	if r.str != nil {
		return *r.str
	}
	if r.seq < 0 {
		return strs{}
	}
	n := strconv.Itoa(int(r.seq))
	for len(n) < 6 {
		n = "0" + n
	}
	return strs{name: "Account " + n, website: "https://account" + n + ".example.com"}
}

// setString writes one string column, materialising the derived ones first.
func (r *record) setString(col, v string) {
	if r.str == nil {
		st := r.strings()
		r.str = &st
	} else {
		cp := *r.str // a copy, so a snapshot taken for a change-set rollback stays intact
		r.str = &cp
	}
	switch col {
	case "name":
		r.str.name = v
	case "websiteurl":
		r.str.website = v
	default:
		r.str.description = v
	}
}

func (r *record) toMap(id string) map[string]any {
	st := r.strings()
	m := map[string]any{"accountid": id, "name": st.name, "websiteurl": st.website, "description": st.description,
		"numberofemployees": nil, "revenue": nil, "industrycode": nil, "statecode": int(r.state), "statuscode": int(r.state) + 1,
		"_ownerid_value": "00000000-0000-0000-0000-0000000000aa", "versionnumber": r.version,
		"modifiedon": time.Unix(0, r.modified).UTC().Format(time.RFC3339)}
	m["accountnumber"] = nil
	if r.seq >= 0 {
		m["accountnumber"] = accountNumber(r.seq) // derived, read-only: the alternate key lookups use
	}
	if r.has(hasEmployees) {
		m["numberofemployees"] = int(r.employees)
	}
	if r.has(hasRevenue) {
		m["revenue"] = r.revenue
	}
	if r.has(hasIndustry) {
		m["industrycode"] = int(r.industry)
	}
	return m
}

// table is the accounts table: keys sorted ascending with the records alongside. Deleted records
// stay as tombstones so positions never move except on the rare create.
type table struct {
	keys []key
	recs []record
}

// search returns the position of the first key ≥ k.
func (t *table) search(k key) int {
	i, _ := slices.BinarySearchFunc(t.keys, k, func(a, b key) int {
		switch {
		case a.less(b):
			return -1
		case b.less(a):
			return 1
		}
		return 0
	})
	return i
}

// lookup returns the live record with id, or nil. The pointer is valid while the caller holds
// the simulator's lock and nothing is created.
func (t *table) lookup(id string) *record {
	k, ok := parseKey(id)
	if !ok {
		return nil
	}
	i := t.search(k)
	if i < len(t.keys) && t.keys[i] == k && !t.recs[i].has(deleted) {
		return &t.recs[i]
	}
	return nil
}

// create inserts a blank record (or revives a tombstone) and returns it.
func (t *table) create(id string) *record {
	k, _ := parseKey(id)
	i := t.search(k)
	if i < len(t.keys) && t.keys[i] == k {
		t.recs[i] = record{seq: -1}
		return &t.recs[i]
	}
	t.keys = slices.Insert(t.keys, i, k)
	t.recs = slices.Insert(t.recs, i, record{seq: -1})
	return &t.recs[i]
}

func (t *table) remove(id string) {
	if r := t.lookup(id); r != nil {
		r.flags |= deleted
		r.modified = time.Now().UnixNano() // the tombstone is a change a delta read reports
	}
}
