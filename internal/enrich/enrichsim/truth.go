package enrichsim

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
)

// industries is the small option set Truth draws industrycode from. The values follow the
// account industrycode choices Dataverse ships with, so a simulated environment accepts them.
var industries = []struct {
	code int
	name string
}{
	{1, "accounting"},
	{2, "agriculture"},
	{3, "broadcasting and publishing"},
	{4, "brokerage"},
	{5, "building supply"},
	{6, "business services"},
	{7, "consulting"},
	{8, "consumer services"},
}

var sizes = []string{"boutique", "regional", "established", "international"}

// IndustryCodes returns the option values Truth may return as industrycode.
func IndustryCodes() []int {
	codes := make([]int, len(industries))
	for i, in := range industries {
		codes[i] = in.code
	}
	return codes
}

// Truth returns the deterministic enrichment of an account id: numberofemployees (int),
// revenue (float64 with at most two decimals), industrycode (int, one of IndustryCodes) and
// description (string). It depends on the id only (case-insensitively, since ids are GUIDs),
// uses no process-local seed, and returns a fresh map on every call, so tests and other
// processes can predict exactly what the simulator answers.
func Truth(id string) map[string]any {
	h := fnv.New64a()
	_, _ = h.Write([]byte(strings.ToLower(strings.TrimSpace(id))))
	seed := h.Sum64()
	next := func() uint64 { // splitmix64: cheap, well mixed, stable everywhere
		seed += 0x9e3779b97f4a7c15
		z := seed
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		return z ^ (z >> 31)
	}

	scale := []int{10, 50, 250, 1000, 5000}[next()%5]
	employees := scale + int(next()%uint64(scale*4))
	// Revenue per employee between 40,000 and 240,000, in cents, so the value has exactly
	// two decimals and stays far below 2^53 (exact in a float64).
	cents := int64(employees)*int64(40_000+next()%200_000)*100 + int64(next()%100)
	industry := industries[next()%uint64(len(industries))]
	size := sizes[next()%uint64(len(sizes))]

	return map[string]any{
		"numberofemployees": employees,
		"revenue":           float64(cents) / 100,
		"industrycode":      industry.code,
		"description": fmt.Sprintf("%s %s company with %d employees (profile %08x)",
			size, industry.name, employees, uint32(next())),
	}
}

// Apply writes id's enrichment into rec, as if an earlier run had already stored it (a simulator's
// "unchanged" accounts).
func Apply(rec map[string]any, id string) {
	for k, v := range Truth(id) {
		rec[k] = v
	}
}

// Holds reports whether row carries id's enrichment. Values compare as text, the way a JSON round
// trip leaves numbers; when they differ, column names the first differing column (in name order).
func Holds(row map[string]any, id string) (column string, ok bool) {
	want := Truth(id)
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if fmt.Sprint(row[k]) != fmt.Sprint(want[k]) {
			return k, false
		}
	}
	return "", true
}
