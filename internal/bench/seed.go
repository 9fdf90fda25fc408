package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// seedClient is the seed's code path rebuilt on a plain net/http client: what the .NET ServiceClient
// does for one UpdateAsync, and one enrichment call per record. A 429 is waited out per request
// (that request sleeps its own Retry-After, others keep sending), as ServiceClient's retry does; no
// affinity cookie is kept (EnableAffinityCookie = false). One x-ms-client-session-id for the whole
// client, as ServiceClient sends it.
type seedClient struct {
	hc           *http.Client
	dvURL, enURL string
	session      string
	errors       atomic.Int64
}

func newSeedClient(e *env, conns int) *seedClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost, tr.MaxIdleConns = conns+8, 2*conns+16
	return &seedClient{hc: &http.Client{Transport: tr, Timeout: 5 * time.Minute}, dvURL: e.dvURL, enURL: e.enURL,
		session: "7d1c0a6e-seed-4000-8000-000000000001"}
}

type seedAccount struct {
	ID         string `json:"accountid"`
	Name       string `json:"name"`
	WebsiteURL string `json:"websiteurl"`
}

// readAll is the seed's RetrieveMultiple loop: every active account, page after page. It returns
// the accounts and the x-ms-dop-hint (RecommendedDegreesOfParallelism) of the last answer.
func (c *seedClient) readAll(ctx context.Context, limit int) ([]seedAccount, int, error) {
	next := c.dvURL + "/api/data/v9.2/accounts?" + url.Values{"$select": {"accountid,name,websiteurl"},
		"$filter": {"statecode eq 0"}, "$orderby": {"accountid asc"}}.Encode()
	var out []seedAccount
	hint := 0
	for next != "" && (limit <= 0 || len(out) < limit) {
		var page struct {
			Value    []seedAccount `json:"value"`
			NextLink string        `json:"@odata.nextLink"`
		}
		h, err := c.do(ctx, http.MethodGet, next, nil, map[string]string{"Prefer": "odata.maxpagesize=5000"}, &page)
		if err != nil {
			return nil, 0, fmt.Errorf("bench: read accounts: %w", err)
		}
		hint, _ = strconv.Atoi(h.Get("x-ms-dop-hint"))
		out, next = append(out, page.Value...), page.NextLink
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, hint, nil
}

// one is the loop body: enrich the record, then PATCH what the service said (every field, changed
// or not: the seed does not compare).
func (c *seedClient) one(ctx context.Context, a seedAccount) error {
	body, _ := json.Marshal(map[string]any{"records": []map[string]any{{"id": a.ID, "name": a.Name, "websiteurl": a.WebsiteURL}}})
	var res struct {
		Results []struct {
			Fields map[string]any `json:"fields"`
		} `json:"results"`
	}
	if _, err := c.do(ctx, http.MethodPost, c.enURL, body, nil, &res); err != nil {
		return fmt.Errorf("bench: enrich %s: %w", a.ID, err)
	}
	if len(res.Results) != 1 || res.Results[0].Fields == nil {
		return fmt.Errorf("bench: enrich %s: no result", a.ID)
	}
	patch, _ := json.Marshal(res.Results[0].Fields)
	_, err := c.do(ctx, http.MethodPatch, c.dvURL+"/api/data/v9.2/accounts("+a.ID+")", patch,
		map[string]string{"If-Match": "*", "x-ms-client-session-id": c.session}, nil)
	if err != nil {
		return fmt.Errorf("bench: update %s: %w", a.ID, err)
	}
	return nil
}

// do sends one request, sleeping each 429's Retry-After before trying again (up to 30 times), and
// decodes a JSON answer into out when out is not nil.
func (c *seedClient) do(ctx context.Context, method, u string, body []byte, hdr map[string]string, out any) (http.Header, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		if hdr["x-ms-client-session-id"] == "" && u != c.enURL {
			req.Header.Set("x-ms-client-session-id", c.session)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if resp.StatusCode == http.StatusTooManyRequests && attempt < 30 {
			wait, perr := strconv.ParseFloat(resp.Header.Get("Retry-After"), 64)
			if perr != nil {
				wait = 1
			}
			select {
			case <-time.After(time.Duration(wait * float64(time.Second))):
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if resp.StatusCode >= 300 {
			return nil, fmt.Errorf("%s %s: status %d", method, req.URL.Path, resp.StatusCode)
		}
		if out != nil {
			if err := json.Unmarshal(data, out); err != nil {
				return nil, err
			}
		}
		return resp.Header, nil
	}
}

// Sequential is the seed's "before": read the accounts, then one record at a time, enrich then
// PATCH. It runs on sample records and extrapolates to every active account.
func Sequential(ctx context.Context, p Profile, scale float64, sample int) (Result, error) {
	e := newEnv(p, scale)
	defer e.stop()
	c := newSeedClient(e, 1)
	start := time.Now()
	accts, _, err := c.readAll(ctx, sample)
	if err != nil {
		return Result{}, err
	}
	for _, a := range accts {
		if err := c.one(ctx, a); err != nil {
			c.errors.Add(1)
		}
	}
	r := Result{Strategy: "sequential", Records: len(accts)}
	e.finish(&r, time.Since(start), ids(accts))
	per := r.Wall / time.Duration(max(1, len(accts)))
	r.extrapolate(p.Active)
	r.Note = fmt.Sprintf("measured on %d records (%s each), extrapolated", len(accts), per.Round(time.Millisecond))
	return r, nil
}

// SeedPattern is the seed's Parallel.ForEachAsync: read the accounts, then the per-record body
// fanned out at MaxDegreeOfParallelism = RecommendedDegreesOfParallelism (the x-ms-dop-hint), no
// batching, no shared pause on 429. Against the request-count limit its per-request retries keep
// landing inside each other's Retry-After, which Dataverse answers with ever longer penalties, so
// the run is cut at budget (wall time) and the rest extrapolated from the records finished by then.
func SeedPattern(ctx context.Context, p Profile, scale float64, budget time.Duration) (Result, error) {
	e := newEnv(p, scale)
	defer e.stop()
	c := newSeedClient(e, p.DOPHint)
	start := time.Now()
	accts, dop, err := c.readAll(ctx, 0)
	if err != nil {
		return Result{}, err
	}
	if dop <= 0 {
		dop = 5 // ServiceClient's default before the server has sent a hint
	}
	bctx, cancel := context.WithDeadline(ctx, start.Add(budget))
	defer cancel()
	var (
		next   atomic.Int64
		wg     sync.WaitGroup
		mu     sync.Mutex
		done   []string
		failed int
	)
	for range dop {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(accts) || bctx.Err() != nil {
					return
				}
				err := c.one(bctx, accts[i])
				mu.Lock()
				switch {
				case err == nil:
					done = append(done, accts[i].ID)
				case bctx.Err() == nil:
					failed++ // retries exhausted: the seed moves on and the record keeps its old values
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	measured := time.Since(start)
	r := Result{Strategy: "seed pattern", Records: len(done)}
	e.finish(&r, measured, done)
	r.Lost += failed
	r.Checked += failed
	r.Note = fmt.Sprintf("Parallel.ForEachAsync at dop %d", dop)
	if len(done) < len(accts) {
		r.Note += fmt.Sprintf("; cut at %s real-time (%s wall): %d of %d records done, %d failed after 30 retries; wall extrapolated from that rate",
			(time.Duration(float64(measured) * scale)).Round(time.Second), measured.Round(time.Second), len(done), len(accts), failed)
		r.extrapolate(len(accts))
	}
	return r, nil
}

func ids(accts []seedAccount) []string {
	out := make([]string, len(accts))
	for i, a := range accts {
		out[i] = a.ID
	}
	return out
}
