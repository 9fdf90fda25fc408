// Package dataverse is the one client through which dvbulk talks to the Dataverse Web API v9.2:
// authentication, paging, conditional PATCH, $batch, UpdateMultiple, and the service-protection
// discipline (client-wide pause on 429, adaptive concurrency that follows x-ms-dop-hint).
//
// Requests go through an azcore pipeline (bearer token with caching and refresh, telemetry,
// logging with header redaction) wrapped in this package's own retry loop. The azcore retry
// policy is disabled on purpose: it sleeps per request, while Dataverse's Retry-After applies to
// the whole user, so a 429 must close a gate for every request of the client and the concurrency
// limit must shrink; both need the retry decision to sit outside the pipeline, next to the limiter.
package dataverse

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"dvbulk/internal/netutil"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/google/uuid"
	"github.com/rs/zerolog"
)

// Config configures a Client. Zero values take the documented defaults.
type Config struct {
	// URL is the environment root, e.g. https://contoso.crm.dynamics.com. https is required unless
	// the host is loopback.
	URL string
	// Credential authorises requests with scope <URL>/.default. nil means no Authorization header
	// and is refused unless URL is loopback.
	Credential azcore.TokenCredential
	// MaxConcurrency is the hard cap on requests in flight (default 52, the service limit).
	MaxConcurrency int
	// AffinityCookie keeps the ARRAffinity cookie (a cookie jar). Default false: no Cookie header
	// is ever sent, so the load balancer spreads requests over web servers and their per-server limits.
	AffinityCookie bool
	// RequestTimeout bounds one attempt, including reading the body (default 2m).
	RequestTimeout time.Duration
	// MaxRetries is the transient-failure budget per logical request (default 8; negative = none).
	MaxRetries int
	// MaxThrottleRetries is the separate budget for 429s per logical request (default 20). It is
	// separate because a 429 pauses the whole client, so waiting it out costs the server nothing.
	MaxThrottleRetries int
	// RetryBaseDelay and RetryMaxDelay shape the capped exponential backoff with full jitter used
	// for 5xx and network errors, and the pause after a 429 without Retry-After (defaults 1s, 30s).
	RetryBaseDelay time.Duration
	RetryMaxDelay  time.Duration
	// Budget shares the service-protection state with the other instances of the same application
	// user (nil: this client alone; see Budget).
	Budget Budget
	// HTTPClient replaces the default client (tests). Its Jar is ignored unless AffinityCookie.
	HTTPClient *http.Client
	// Logger receives request-level events. Tokens and headers never reach it.
	Logger zerolog.Logger
}

const (
	apiPath = "/api/data/v9.2/"
	// DefaultMaxConcurrency is the service protection limit of concurrent requests per user per web
	// server ("Service protection API limits"); the app setting DVBULK_DATAVERSE_CONCURRENCY defaults to it.
	DefaultMaxConcurrency = 52
	// DefaultRequestTimeout bounds one attempt (DVBULK_REQUEST_TIMEOUT's default).
	DefaultRequestTimeout = 2 * time.Minute
	// DefaultMaxRetries is the transient-failure budget per request (DVBULK_MAX_RETRIES's default).
	DefaultMaxRetries    = 8
	defaultThrottleRetry = 20
	defaultBaseDelay     = time.Second
	defaultMaxDelay      = 30 * time.Second
	maxResponseBytes     = 64 << 20 // a 5000-row page or a 1000-part batch response is far smaller
	// maxOpsPerBatch is Dataverse's documented limit of operations in one $batch.
	maxOpsPerBatch = 1000
)

// Client talks to one Dataverse environment. It is safe for concurrent use; concurrent calls
// queue on its adaptive limiter.
type Client struct {
	session string // x-ms-client-session-id
	cfg     Config
	root    *url.URL // scheme://host[/path], no trailing slash
	api     string   // absolute base of the Web API, ending in /
	apiPath string   // path-absolute base used inside $batch
	pl      runtime.Pipeline
	thr     *throttle
	log     zerolog.Logger
	hasCred bool

	st stats

	batchLimit  atomic.Int64 // largest batch the server accepted recently; 0 = unknown
	bulkMu      sync.Mutex
	bulkSupport map[string]bool // "<message>:<logical name>" -> bulk message available

	newBoundary func(prefix string) string
}

// New validates cfg and builds the client. It performs no I/O.
func New(cfg Config) (*Client, error) {
	root, err := parseEnvURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("dataverse: URL: %w", err)
	}
	loop := netutil.IsLoopback(root.Hostname())
	if cfg.Credential == nil && !loop {
		return nil, fmt.Errorf("dataverse: a credential is required for non-loopback URL %s", root.Host)
	}
	if cfg.MaxConcurrency <= 0 {
		cfg.MaxConcurrency = DefaultMaxConcurrency
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	switch {
	case cfg.MaxRetries == 0:
		cfg.MaxRetries = DefaultMaxRetries
	case cfg.MaxRetries < 0:
		cfg.MaxRetries = 0
	}
	switch {
	case cfg.MaxThrottleRetries == 0:
		cfg.MaxThrottleRetries = defaultThrottleRetry
	case cfg.MaxThrottleRetries < 0:
		cfg.MaxThrottleRetries = 0
	}
	if cfg.RetryBaseDelay <= 0 {
		cfg.RetryBaseDelay = defaultBaseDelay
	}
	if cfg.RetryMaxDelay <= 0 {
		cfg.RetryMaxDelay = defaultMaxDelay
	}
	cfg.RetryMaxDelay = max(cfg.RetryMaxDelay, cfg.RetryBaseDelay)

	c := &Client{session: uuid.NewString(),
		cfg:         cfg,
		root:        root,
		api:         root.String() + apiPath,
		apiPath:     root.Path + apiPath,
		thr:         newThrottle(cfg.MaxConcurrency, cfg.RetryBaseDelay, cfg.RetryMaxDelay, cfg.Budget),
		log:         cfg.Logger.With().Str("component", "dataverse").Logger(),
		hasCred:     cfg.Credential != nil,
		bulkSupport: map[string]bool{},
		newBoundary: randomBoundary,
	}
	c.st.byCode = map[string]int64{}

	perRetry := []policy.Policy{}
	if cfg.Credential != nil {
		scope := root.Scheme + "://" + root.Host + "/.default"
		perRetry = append(perRetry, runtime.NewBearerTokenPolicy(cfg.Credential, []string{scope},
			&policy.BearerTokenOptions{InsecureAllowCredentialWithHTTP: loop}))
	}
	// sendPolicy is last so the gate is checked after token acquisition, right before the send.
	perRetry = append(perRetry, policyFunc(c.sendPolicy))
	c.pl = runtime.NewPipeline("dataverse", "v1.0.0",
		runtime.PipelineOptions{
			PerCall:  []policy.Policy{policyFunc(c.headerPolicy)},
			PerRetry: perRetry,
			// Values that help support cases and carry no secrets.
			AllowedHeaders: []string{"x-ms-dop-hint", "Retry-After", "x-ms-service-request-id", "REQ_ID",
				"x-ms-ratelimit-burst-remaining-xrm-requests", "x-ms-ratelimit-time-remaining-xrm-requests"},
		},
		&policy.ClientOptions{
			Retry:     policy.RetryOptions{MaxRetries: -1}, // see the package comment
			Telemetry: policy.TelemetryOptions{ApplicationID: "dvbulk"},
			Transport: limitedTransport{c: c.httpClient()},
		})
	return c, nil
}

// httpClient builds (or adapts) the HTTP client: enough idle connections per host for the
// allowed concurrency (Go's default of 2 would open and close connections under load), no
// client-level timeout (attempts carry their own deadline), and a cookie jar only with affinity.
func (c *Client) httpClient() *http.Client {
	var hc http.Client
	if c.cfg.HTTPClient != nil {
		hc = *c.cfg.HTTPClient
	} else {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = c.cfg.MaxConcurrency + 8
		tr.MaxIdleConns = 2 * tr.MaxIdleConnsPerHost
		tr.IdleConnTimeout = 90 * time.Second
		hc.Transport = tr
	}
	hc.Jar = nil
	if c.cfg.AffinityCookie {
		if c.cfg.HTTPClient != nil && c.cfg.HTTPClient.Jar != nil {
			hc.Jar = c.cfg.HTTPClient.Jar
		} else {
			hc.Jar, _ = cookiejar.New(nil) // cannot fail with nil options
		}
	}
	return &hc
}

// DOP returns the latest x-ms-dop-hint (5 until the server has sent one).
func (c *Client) DOP() int { return c.thr.snapshot().hint }

// Limit returns the current adaptive concurrency limit.
func (c *Client) Limit() int { return c.thr.snapshot().limit }

// parseEnvURL accepts an environment root: http(s), a host, no query, fragment or user info.
func parseEnvURL(raw string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, errors.New("empty")
	}
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil {
		return nil, err
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("%q: scheme must be https", raw)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("%q: no host", raw)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return nil, fmt.Errorf("%q: want only scheme://host", raw)
	case u.Scheme == "http" && !netutil.IsLoopback(u.Hostname()):
		return nil, fmt.Errorf("%q: https is required unless the host is loopback", raw)
	}
	u.Host = strings.ToLower(u.Host)
	return u, nil
}

// sameOrigin guards following server-supplied links: a token is only ever sent to our host.
func (c *Client) sameOrigin(u *url.URL) bool {
	return strings.EqualFold(u.Scheme, c.root.Scheme) && strings.EqualFold(u.Host, c.root.Host) &&
		u.User == nil && strings.HasPrefix(u.Path, c.apiPath)
}

type policyFunc func(*policy.Request) (*http.Response, error)

func (f policyFunc) Do(req *policy.Request) (*http.Response, error) { return f(req) }
