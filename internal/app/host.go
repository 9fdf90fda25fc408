package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"dvbulk/internal/job"
)

// Host is what the handler needs from the Functions host's configuration: the invocation budget and
// the delivery count at which a queue message is poisoned.
type Host struct {
	FunctionTimeout time.Duration // host.json functionTimeout
	MaxDequeueCount int           // host.json extensions.queues.maxDequeueCount
}

// What the handler assumes when host.json is missing or silent (the CLI, tests): maxDequeueCount is the
// host's default of 5 ("host.json reference for Azure Functions 2.x and later"); functionTimeout is
// taken as 10 minutes, the Linux Consumption maximum. The app's own host.json sets both.
const (
	DefaultFunctionTimeout = 10 * time.Minute
	DefaultMaxDequeueCount = job.DefaultMaxDequeue
	// unboundedTimeout stands for functionTimeout "-1" (no limit on the Premium and Flex plans).
	unboundedTimeout = 24 * time.Hour
)

// The host's app-setting overrides of host.json values ("host.json reference for Azure Functions 2.x
// and later", "Override host.json values"): AzureFunctionsJobHost__ followed by the JSON path with
// "__" between levels.
const (
	OverrideFunctionTimeout = "AzureFunctionsJobHost__functionTimeout"
	OverrideMaxDequeueCount = "AzureFunctionsJobHost__extensions__queues__maxDequeueCount"
)

// ReadHost reads host.json from the app root (FUNCTIONS_APP_ROOT_PATH, else the working directory)
// and applies the host's app-setting overrides, as the host itself does. A missing host.json or a
// missing value takes the host's default; a value the host could not read either is refused with an
// error naming it.
func ReadHost(getenv func(string) string) (Host, error) {
	hs := Host{FunctionTimeout: DefaultFunctionTimeout, MaxDequeueCount: DefaultMaxDequeueCount}
	root := getenv("FUNCTIONS_APP_ROOT_PATH")
	if root == "" {
		root, _ = os.Getwd()
	}
	path := filepath.Join(root, "host.json")
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return hs, fmt.Errorf("host.json: %w", err)
	default:
		var h struct {
			FunctionTimeout *string `json:"functionTimeout"`
			Extensions      struct {
				Queues struct {
					MaxDequeueCount *int `json:"maxDequeueCount"`
				} `json:"queues"`
			} `json:"extensions"`
		}
		if err := json.Unmarshal(data, &h); err != nil {
			return hs, fmt.Errorf("host.json (%s): %w", path, err)
		}
		if h.FunctionTimeout != nil {
			d, ok := ParseTimeSpan(*h.FunctionTimeout)
			if !ok {
				return hs, fmt.Errorf("host.json functionTimeout must be a timespan such as 00:10:00, got %q", *h.FunctionTimeout)
			}
			hs.FunctionTimeout = d
		}
		if n := h.Extensions.Queues.MaxDequeueCount; n != nil {
			if *n < 1 {
				return hs, fmt.Errorf("host.json extensions.queues.maxDequeueCount must be at least 1, got %d", *n)
			}
			hs.MaxDequeueCount = *n
		}
	}
	if v := strings.TrimSpace(getenv(OverrideFunctionTimeout)); v != "" {
		d, ok := ParseTimeSpan(v)
		if !ok {
			return hs, &SettingError{Name: OverrideFunctionTimeout, Problem: fmt.Sprintf("must be a timespan such as 00:10:00 or -1, got %q", v)}
		}
		hs.FunctionTimeout = d
	}
	if v := strings.TrimSpace(getenv(OverrideMaxDequeueCount)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return hs, &SettingError{Name: OverrideMaxDequeueCount, Problem: fmt.Sprintf("must be a whole number of at least 1, got %q", v)}
		}
		hs.MaxDequeueCount = n
	}
	return hs, nil
}

// ParseTimeSpan reads a .NET TimeSpan "hh:mm:ss" (or "d.hh:mm:ss"); "-1" means unbounded.
func ParseTimeSpan(s string) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	if s == "-1" {
		return unboundedTimeout, true
	}
	days := 0
	if d, rest, ok := strings.Cut(s, "."); ok && !strings.Contains(d, ":") {
		if _, err := fmt.Sscanf(d, "%d", &days); err != nil {
			return 0, false
		}
		s = rest
	}
	var h, m, sec int
	if n, err := fmt.Sscanf(s, "%d:%d:%d", &h, &m, &sec); err != nil || n != 3 {
		return 0, false
	}
	d := time.Duration(days*24+h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec)*time.Second
	if d <= 0 {
		return 0, false
	}
	return d, true
}
