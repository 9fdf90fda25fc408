package app

import (
	"testing"

	"github.com/rs/zerolog"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/dataverse"
)

// TestNewBudgetKeysByHostAndUser: instances share a budget exactly when they reach the same
// environment as the same application user; the setting switches it off.
func TestNewBudgetKeysByHostAndUser(t *testing.T) {
	st := checkpoint.NewMem()
	cases := []struct {
		auth, client, want string
	}{
		{"none", "", "budget/127.0.0.1%3a5555/anonymous.json"},
		{"clientsecret", "11111111-2222-3333-4444-555555555555", "budget/127.0.0.1%3a5555/11111111-2222-3333-4444-555555555555.json"},
		{"default", "", "budget/127.0.0.1%3a5555/default.json"},
	}
	for _, tc := range cases {
		cfg := &Config{DataverseURL: "http://127.0.0.1:5555", DataverseAuth: tc.auth, Identity: dataverse.Identity{ClientID: tc.client}, SharedBudget: true}
		b, err := NewBudget(cfg, st, "vm-1", zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if b.Name() != tc.want {
			t.Errorf("%s/%q: document %s, want %s", tc.auth, tc.client, b.Name(), tc.want)
		}
	}
	off, err := NewBudget(&Config{DataverseURL: "http://127.0.0.1:5555", DataverseAuth: "none"}, st, "vm-1", zerolog.Nop())
	if err != nil || off != nil {
		t.Fatalf("DVBULK_SHARED_BUDGET=false: %v %v, want no budget", off, err)
	}
}
