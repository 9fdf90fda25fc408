package dataverse

import (
	"strings"
	"testing"
)

func TestKeyPath(t *testing.T) {
	tests := []struct {
		key  Key
		want string
		err  string
	}{
		{Key{ID: "0F1D2E3C-0000-4000-8000-000000000001"}, "accounts(0f1d2e3c-0000-4000-8000-000000000001)", ""},
		{Key{Alt: map[string]any{"accountnumber": "A-1"}}, "accounts(accountnumber='A-1')", ""},
		{Key{Alt: map[string]any{"name": "O'Neil & Sons/EU", "accountnumber": 7}}, "accounts(accountnumber=7,name='O''Neil%20%26%20Sons%2FEU')", ""},
		{Key{Alt: map[string]any{"name": "Müller"}}, "accounts(name='M%C3%BCller')", ""},
		{Key{ID: "nope"}, "", "invalid"},
		{Key{ID: "0f1d2e3c-0000-4000-8000-000000000001", Alt: map[string]any{"a": "b"}}, "", "either an id"},
		{Key{Alt: map[string]any{"Bad Name": "b"}}, "", "not a logical name"},
		{Key{Alt: map[string]any{"a": 1.5}}, "", "float64"},
	}
	for _, tt := range tests {
		got, err := tt.key.Path("accounts")
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%+v: error %v, want %q", tt.key, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%+v: %q %v, want %q", tt.key, got, err, tt.want)
		}
	}
}
