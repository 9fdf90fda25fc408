package dvsim

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"strings"
)

// guid is a Dataverse uniqueidentifier. Key order in the simulator is the
// byte order of the canonical text form (which equals lower-case string
// order); SQL Server orders uniqueidentifier differently, so clients must
// never depend on the order beyond "the order the server hands out".
type guid [16]byte

func cmpGUID(a, b *guid) int { return bytes.Compare(a[:], b[:]) }

// parseGUID accepts the canonical 8-4-4-4-12 form in any case, optionally in braces.
func parseGUID(s string) (guid, bool) {
	var g guid
	if len(s) == 38 && s[0] == '{' && s[37] == '}' {
		s = s[1:37]
	}
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, false
	}
	var buf [32]byte
	n := 0
	for i := 0; i < 36; i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			continue
		}
		buf[n] = s[i]
		n++
	}
	if _, err := hex.Decode(g[:], buf[:]); err != nil {
		return g, false
	}
	return g, true
}

func (g guid) appendTo(b []byte) []byte {
	const hexd = "0123456789abcdef"
	for i, c := range g {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexd[c>>4], hexd[c&0xf])
	}
	return b
}

func (g guid) String() string {
	var b [36]byte
	return string(g.appendTo(b[:0]))
}

func (g guid) upper() string { return strings.ToUpper(g.String()) }

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// accountGUID spreads record ordinals over the key space (so key order is
// unrelated to seeding order) while keeping them unique and readable: the
// last 12 hex digits are the ordinal.
func accountGUID(i int) guid {
	var g guid
	h := splitmix64(uint64(i) ^ 0xacc0_0000_0000_0000)
	h2 := splitmix64(h)
	for k := 0; k < 8; k++ {
		g[k] = byte(h >> (56 - 8*k))
	}
	g[6] = 0x40 | g[6]&0x0f // version 4
	g[8] = 0x80 | byte(h2)&0x3f
	g[9] = byte(h2 >> 8)
	u := uint64(i)
	for k := 0; k < 6; k++ {
		g[15-k] = byte(u >> (8 * k))
	}
	return g
}

// AccountID returns the deterministic accountid of seeded record i. Records
// 0..Accounts-1 are active and Accounts..Accounts+InactiveAccounts-1 inactive.
func AccountID(i int) string { return accountGUID(i).String() }

// derivedGUID gives stable ids for owners, the organization and similar
// fixtures so that two simulators with the same seed look identical.
func derivedGUID(seed int64, label string, n int) guid {
	h := uint64(seed) ^ 0x5eed
	for i := 0; i < len(label); i++ {
		h = splitmix64(h ^ uint64(label[i]))
	}
	h = splitmix64(h ^ uint64(n))
	h2 := splitmix64(h)
	var g guid
	for k := 0; k < 8; k++ {
		g[k] = byte(h >> (56 - 8*k))
		g[8+k] = byte(h2 >> (56 - 8*k))
	}
	g[6] = 0x40 | g[6]&0x0f
	g[8] = 0x80 | g[8]&0x3f
	return g
}

func randomGUID() guid {
	var g guid
	a, b := rand.Uint64(), rand.Uint64()
	for k := 0; k < 8; k++ {
		g[k] = byte(a >> (56 - 8*k))
		g[8+k] = byte(b >> (56 - 8*k))
	}
	g[6] = 0x40 | g[6]&0x0f
	g[8] = 0x80 | g[8]&0x3f
	return g
}
