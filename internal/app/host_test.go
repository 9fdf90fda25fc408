package app

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseTimeSpan(t *testing.T) {
	for in, want := range map[string]time.Duration{"00:10:00": 10 * time.Minute, "01:00:00": time.Hour, "1.00:00:00": 24 * time.Hour, "-1": unboundedTimeout} {
		if got, ok := ParseTimeSpan(in); !ok || got != want {
			t.Errorf("ParseTimeSpan(%q) = %v %v", in, got, ok)
		}
	}
	for _, bad := range []string{"ten minutes", "", "00:00:00"} {
		if _, ok := ParseTimeSpan(bad); ok {
			t.Errorf("ParseTimeSpan(%q) accepted it", bad)
		}
	}
}

func hostDir(t *testing.T, body string) string {
	dir := t.TempDir()
	if body != "" {
		if err := os.WriteFile(filepath.Join(dir, "host.json"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestReadHost(t *testing.T) {
	const hj = `{"version":"2.0","functionTimeout":"00:07:00","extensions":{"queues":{"maxDequeueCount":3}}}`
	tests := []struct {
		name     string
		hostJSON string
		env      map[string]string
		want     Host
		badName  string // the SettingError's name, or "-" for a plain error about host.json
	}{
		{"no host.json: the defaults", "", nil, Host{DefaultFunctionTimeout, DefaultMaxDequeueCount}, ""},
		{"host.json values", hj, nil, Host{7 * time.Minute, 3}, ""},
		{"host.json without the values", `{"version":"2.0"}`, nil, Host{DefaultFunctionTimeout, DefaultMaxDequeueCount}, ""},
		{"app settings override host.json", hj, map[string]string{OverrideFunctionTimeout: "00:30:00", OverrideMaxDequeueCount: "9"}, Host{30 * time.Minute, 9}, ""},
		{"unbounded override", hj, map[string]string{OverrideFunctionTimeout: "-1"}, Host{unboundedTimeout, 3}, ""},
		{"bad timeout override", hj, map[string]string{OverrideFunctionTimeout: "30m"}, Host{}, OverrideFunctionTimeout},
		{"bad dequeue override", hj, map[string]string{OverrideMaxDequeueCount: "0"}, Host{}, OverrideMaxDequeueCount},
		{"bad host.json timeout", `{"functionTimeout":"ten minutes"}`, nil, Host{}, "-"},
		{"bad host.json dequeue count", `{"extensions":{"queues":{"maxDequeueCount":0}}}`, nil, Host{}, "-"},
		{"host.json not JSON", `{"functionTimeout":`, nil, Host{}, "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"FUNCTIONS_APP_ROOT_PATH": hostDir(t, tt.hostJSON)}
			for k, v := range tt.env {
				env[k] = v
			}
			got, err := ReadHost(envOf(env))
			var se *SettingError
			switch {
			case tt.badName == "-":
				if err == nil || errors.As(err, &se) {
					t.Fatalf("ReadHost = %v, %v; want an error about host.json", got, err)
				}
			case tt.badName != "":
				if !errors.As(err, &se) || se.Name != tt.badName {
					t.Fatalf("ReadHost = %v, %v; want a SettingError naming %s", got, err, tt.badName)
				}
			case err != nil || got != tt.want:
				t.Fatalf("ReadHost = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// TestRepositoryHostJSON reads the app's own host.json: the handler must understand every value it sets.
func TestRepositoryHostJSON(t *testing.T) {
	got, err := ReadHost(envOf(map[string]string{"FUNCTIONS_APP_ROOT_PATH": "../.."}))
	if err != nil {
		t.Fatal(err)
	}
	if got.FunctionTimeout <= 0 || got.MaxDequeueCount < 1 {
		t.Fatalf("host.json read as %+v", got)
	}
}
