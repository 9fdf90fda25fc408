package enrich

import (
	"golang.org/x/time/rate"

	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func TestNewValidates(t *testing.T) {
	for _, tt := range []struct {
		name  string
		cfg   Config
		field string // "" = accepted
	}{
		{"https", Config{URL: "https://api.example.com/enrich"}, ""},
		{"http on 127.0.0.1", Config{URL: "http://127.0.0.1:8080/enrich"}, ""},
		{"http on localhost", Config{URL: "http://localhost/enrich"}, ""},
		{"http on ::1", Config{URL: "http://[::1]:9/enrich"}, ""},
		{"all set", Config{URL: "https://x", BatchSize: 25, Concurrency: 32, RPS: 10.5, Timeout: time.Second,
			MaxRetries: 1, APIKey: "k", APIKeyHeader: "Ocp-Apim-Subscription-Key"}, ""},
		{"missing URL", Config{}, "URL"},
		{"http elsewhere", Config{URL: "http://api.example.com/enrich"}, "URL"},
		{"http on a loopback look-alike", Config{URL: "http://127.0.0.1.example.com/"}, "URL"},
		{"other scheme", Config{URL: "ftp://127.0.0.1/x"}, "URL"},
		{"relative", Config{URL: "/enrich"}, "URL"},
		{"not a URL", Config{URL: "https://a b:c/%"}, "URL"},
		{"negative batch", Config{URL: "https://x", BatchSize: -1}, "BatchSize"},
		{"negative concurrency", Config{URL: "https://x", Concurrency: -3}, "Concurrency"},
		{"negative RPS", Config{URL: "https://x", RPS: -1}, "RPS"},
		{"NaN RPS", Config{URL: "https://x", RPS: math.NaN()}, "RPS"},
		{"negative timeout", Config{URL: "https://x", Timeout: -time.Second}, "Timeout"},
		{"negative retries", Config{URL: "https://x", MaxRetries: -1}, "MaxRetries"},
		{"negative backoff", Config{URL: "https://x", BackoffBase: -1}, "BackoffBase"},
		{"bad header name", Config{URL: "https://x", APIKeyHeader: "x api key"}, "APIKeyHeader"},
		{"key with newline", Config{URL: "https://x", APIKey: "abc\r\nX-Evil: 1"}, "APIKey"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.cfg)
			if tt.field == "" {
				if err != nil || c == nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrConfig) || !strings.HasPrefix(err.Error(), "enrich: "+tt.field+" ") {
				t.Errorf("error %q, want one naming %s and wrapping ErrConfig", err, tt.field)
			}
			if tt.cfg.APIKey != "" && strings.Contains(err.Error(), tt.cfg.APIKey) {
				t.Errorf("error %q repeats the key", err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := New(Config{URL: "https://x"})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{URL: "https://x", APIKeyHeader: "x-api-key", BatchSize: 50, Concurrency: 64, Timeout: 30 * time.Second,
		MaxRetries: 6, BackoffBase: 250 * time.Millisecond, BackoffMax: 10 * time.Second}
	got := c.cfg
	got.Logger = want.Logger
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("defaults %+v, want %+v", got, want)
	}
	if c.gate.rate.Limit() != rate.Inf || c.gate.slots.max != 64 || c.gate.slots.Limit() != 8 {
		t.Errorf("gate: rate %v, ceiling %v, limit %d; want unlimited, 64, starting at 8",
			c.gate.rate.Limit(), c.gate.slots.max, c.gate.slots.Limit())
	}
}
