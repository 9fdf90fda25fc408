package enrich

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"dvbulk/internal/netutil"

	"github.com/rs/zerolog"
)

// Config configures a Client. Zero values take the documented defaults; negative values are
// refused by New.
type Config struct {
	URL          string // the service endpoint; https unless the host is loopback
	APIKey       string // optional; sent only in APIKeyHeader, never logged or put in errors
	APIKeyHeader string // default "x-api-key"

	// BatchSize is the most records per request (default 50). A 400 or 413 on several records
	// is retried in halves, and a smaller size the service takes is learned and kept.
	BatchSize int
	// Concurrency is the ceiling of requests in flight at once, shared by every caller of the
	// Client (default 64). Below it the limit adapts to the service (see Limiter) unless
	// FixedConcurrency is set.
	Concurrency      int
	FixedConcurrency bool
	RPS              float64 // requests per second towards the service (0 = unlimited)

	Timeout    time.Duration // per attempt (default 30s)
	MaxRetries int           // retries of one request after transient failures (default 6; zero means the default)
	// BackoffBase and BackoffMax shape the capped exponential backoff between retries
	// (defaults 250ms and 10s). A throttled answer's Retry-After replaces the backoff.
	BackoffBase time.Duration
	BackoffMax  time.Duration

	HTTPClient *http.Client // default: a client whose transport keeps Concurrency idle connections
	Logger     zerolog.Logger
}

// ErrConfig is wrapped by every error New returns.
var ErrConfig = errors.New("invalid enrichment configuration")

// Defaults of a Client, also the defaults of the app settings ENRICHMENT_API_KEY_HEADER,
// ENRICHMENT_BATCH_SIZE, ENRICHMENT_CONCURRENCY and ENRICHMENT_TIMEOUT. The batch size and the
// concurrency are ceilings: a service that takes fewer records per request is learned (a 400/413
// on several records is split), and the concurrency adapts below the ceiling (Limiter).
const (
	DefaultAPIKeyHeader = "x-api-key"
	DefaultBatchSize    = 50
	DefaultConcurrency  = 64
	DefaultTimeout      = 30 * time.Second
)

func (c Config) withDefaults() Config {
	if c.APIKeyHeader == "" {
		c.APIKeyHeader = DefaultAPIKeyHeader
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 6
	}
	if c.BackoffBase == 0 {
		c.BackoffBase = 250 * time.Millisecond
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = 10 * time.Second
	}
	return c
}

func (c Config) validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("enrich: %s %s: %w", field, fmt.Sprintf(format, args...), ErrConfig)
	}
	if c.URL == "" {
		return bad("URL", "is required")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return bad("URL", "is not a URL")
	}
	switch {
	case u.Host == "":
		return bad("URL", "has no host")
	case u.Scheme == "https":
	case u.Scheme == "http" && netutil.IsLoopback(u.Hostname()):
	default:
		return bad("URL", "must use https unless the host is loopback (got scheme %q)", u.Scheme)
	}
	if c.APIKeyHeader != "" && !isToken(c.APIKeyHeader) {
		return bad("APIKeyHeader", "is not a valid header name")
	}
	if strings.ContainsAny(c.APIKey, "\r\n\x00") {
		return bad("APIKey", "contains control characters") // the key itself is not repeated
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"BatchSize", int64(c.BatchSize)}, {"Concurrency", int64(c.Concurrency)},
		{"Timeout", int64(c.Timeout)}, {"MaxRetries", int64(c.MaxRetries)},
		{"BackoffBase", int64(c.BackoffBase)}, {"BackoffMax", int64(c.BackoffMax)},
	} {
		if f.v <= 0 {
			return bad(f.name, "must be greater than zero")
		}
	}
	if c.RPS < 0 || math.IsNaN(c.RPS) || math.IsInf(c.RPS, 0) {
		return bad("RPS", "must be a finite number, zero or more")
	}
	return nil
}

// isToken reports whether s is an RFC 9110 token, i.e. usable as a header name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", r):
		default:
			return false
		}
	}
	return true
}
