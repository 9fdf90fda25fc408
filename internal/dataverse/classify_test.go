package dataverse

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// The codes are the ones in Microsoft's "Troubleshoot Dataverse bulk operation errors" and "Web
// service error codes" pages and the ones ServiceClient's ShouldRetry / ShouldRetryWebAPI retry.
func TestServerErrorClassification(t *testing.T) {
	cases := []struct {
		name      string
		status    int
		code, msg string
		transient bool
	}{
		{"generic SQL error (deadlock 1205)", 500, "0x80044150", "Generic SQL error. CRM ErrorCode: -2147204784 Sql ErrorCode: -2146232060 Sql Number: 1205", true},
		{"generic SQL error, decimal code", 500, "-2147204784", "Generic SQL error.", true},
		{"SQL timeout expired", 500, "0x80044151", "SQL timeout expired. CRM ErrorCode: -2147204783 Sql Number: -2", true},
		{"SQL timeout expired, decimal code", 500, "-2147204783", "SQL timeout expired.", true},
		{"transaction already rolled back (swallowed deadlock)", 500, "0x80040255", "The transaction of the SQL command has already been rolled back or committed", true},
		{"system exception naming SQL", 500, "0x80131501", "Sql error: A SQL connection could not be opened", true},
		{"system exception naming SQL, decimal code", 500, "-2146233087", "SQL server unavailable", true},
		{"system exception not about SQL", 500, "0x80131501", "Object reference not set to an instance of an object.", false},
		{"server busy", 500, "0x80040216", "Server Busy: the server is busy and the request was not completed", true},
		{"service protection code on a 5xx", 500, "0x80072322", "Number of requests exceeded the limit of 6000 over time window of 300 seconds.", true},
		{"service protection code, decimal", 500, "-2147015898", "Number of concurrent requests exceeded the limit of 52.", true},
		{"execution time code", 500, "0x80072321", "Combined execution time of incoming requests exceeded limit of 1,200,000 milliseconds over time window of 300 seconds.", true},
		{"500 without a Dataverse code (a proxy's answer)", 500, "", "<html>Internal Server Error</html>", true},
		{"bad gateway, any code", 502, "0x80040216", "", true},
		{"service unavailable", 503, "", "", true},
		{"gateway timeout", 504, "0x80040216", "", true},
		{"request timeout", 408, "", "", true},
		{"unexpected error", 500, "0x80040216", "An unexpected error occurred.", false},
		{"plug-in error on a 500", 500, "0x80040265", "ISV code aborted the operation.", false},
		{"payload error on a 500", 500, "0x80048d19", "Error identified in Payload provided by the user", false},
		{"not implemented", 501, "0x8004d000", "The method is not implemented", false},
		{"plug-in error (4xx)", 400, "0x80040265", "ISV code aborted the operation.", false},
		{"duplicate detection (412)", 412, "0x80040333", "A record was not created or updated because a duplicate of the current record already exists.", false},
		{"throttled (429 is paced by the gate, not here)", 429, "0x80072322", "", false},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			ae := &APIError{Status: tt.status, Code: tt.code, Message: tt.msg}
			if got := transientAPIError(ae); got != tt.transient {
				t.Errorf("transientAPIError = %v, want %v", got, tt.transient)
			}
			if got := errors.Is(ae, ErrUnavailable); got != tt.transient {
				t.Errorf("errors.Is(ErrUnavailable) = %v, want %v", got, tt.transient)
			}
			if got, want := permanentServerError(ae), tt.status >= 500 && !tt.transient; got != want {
				t.Errorf("permanentServerError = %v, want %v", got, want)
			}
		})
	}
}

// faultCounter answers writes of one id with a scripted status, counting the attempts.
type faultCounter struct {
	mu       sync.Mutex
	id       string
	attempts int
	answer   func(attempt int) (int, string) // status 0 = let the write through
}

func (f *faultCounter) fault(id string) (int, string) {
	if id != f.id {
		return 0, ""
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts++
	return f.answer(f.attempts)
}

func (f *faultCounter) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts
}

// A 5xx whose code is not transient fails its record with that code and message after at most one
// retry, and is not ErrUnavailable, so the chunk is not redelivered for it; the other records land.
func TestPermanentServerErrorFailsTheRecordAfterOneRetry(t *testing.T) {
	for _, mode := range []WriteMode{ModeSingle, ModeBatch, ModeBulk} {
		t.Run(string(mode), func(t *testing.T) {
			ids := testIDs(6)
			f := newFakeDV(t, ids...)
			fc := &faultCounter{id: ids[2], answer: func(int) (int, string) {
				return 500, errBody("0x80040216", "An unexpected error occurred.")
			}}
			f.fault = fc.fault
			f.bulkSupported = mode == ModeBulk // UpdateMultiple, bisected down to a PATCH of the bad record
			c := newTestClient(t, f.start().URL, nil)
			ups := updatesFor(ids, "x")
			res, err := c.Update(ctxT(t), accounts, ups, WriteOptions{Mode: mode})
			if err != nil {
				t.Fatalf("Update: %v (a permanent record failure must not fail the call)", err)
			}
			for i, r := range res {
				if i == 2 {
					if r.Status != Failed || errors.Is(r.Err, ErrUnavailable) ||
						!strings.Contains(r.Err.Error(), "0x80040216") || !strings.Contains(r.Err.Error(), "An unexpected error occurred.") {
						t.Errorf("bad record: %v %v; want Failed with the code and message, not unavailable", r.Status, r.Err)
					}
					continue
				}
				if r.Status != Updated {
					t.Errorf("record %d: %v %v", i, r.Status, r.Err)
				}
			}
			patches := f.count(func(r fakeReq) bool { return r.Method == "PATCH" && strings.Contains(r.URI, ids[2]) })
			sends, limit := fc.count(), 2
			if mode == ModeBulk {
				// UpdateMultiple requests are not repeated but halved (6 -> 3 -> 2 -> 1 records); the
				// record alone goes as a PATCH, repeated once.
				limit = 3 + 2
			}
			if sends < 1 || sends > limit || patches > 2 {
				t.Errorf("the failing record was sent %d times (%d PATCHes), want at most %d with one retry", sends, patches, limit)
			}
		})
	}
}

// A documented transient code (a SQL deadlock) is retried until it passes.
func TestTransientServerErrorCodeIsRetried(t *testing.T) {
	for _, mode := range []WriteMode{ModeSingle, ModeBatch} {
		t.Run(string(mode), func(t *testing.T) {
			ids := testIDs(4)
			f := newFakeDV(t, ids...)
			fc := &faultCounter{id: ids[1], answer: func(n int) (int, string) {
				if n <= 3 {
					return 500, errBody("0x80044150", "Generic SQL error. Sql Number: 1205")
				}
				return 0, ""
			}}
			f.fault = fc.fault
			c := newTestClient(t, f.start().URL, nil)
			res, err := c.Update(ctxT(t), accounts, updatesFor(ids, "x"), WriteOptions{Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			if res[1].Status != Updated || fc.count() != 4 {
				t.Fatalf("deadlocked record: %v %v after %d attempts; want updated on the 4th", res[1].Status, res[1].Err, fc.count())
			}
		})
	}
}

// A 429 inside a $batch answer is a 429: the whole client pauses for its Retry-After, the adaptive
// limit is halved, it is counted as throttled, and the record is sent again after the pause.
func TestThrottledBatchPartPausesTheClient(t *testing.T) {
	ids := testIDs(8)
	f := newFakeDV(t, ids...)
	f.retryAfter = "0.3"
	fc := &faultCounter{id: ids[5], answer: func(n int) (int, string) {
		if n == 1 {
			return 429, errBody("0x80072322", "Number of requests exceeded the limit of 6000 over time window of 300 seconds.")
		}
		return 0, ""
	}}
	f.fault = fc.fault
	c := newTestClient(t, f.start().URL, nil)
	epoch := c.thr.currentEpoch()
	res, err := c.Update(ctxT(t), accounts, updatesFor(ids, "x"), WriteOptions{Mode: ModeBatch})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Status != Updated {
			t.Fatalf("record %d: %v %v", i, r.Status, r.Err)
		}
	}
	st := c.Stats()
	if st.Throttled != 1 || st.ThrottledByCode["0x80072322"] != 1 {
		t.Errorf("throttled %d %v, want the part's 429 counted once with its code", st.Throttled, st.ThrottledByCode)
	}
	if st.PausedFor < 300*time.Millisecond {
		t.Errorf("paused for %v, want the part's Retry-After (300ms) for the whole client", st.PausedFor)
	}
	if c.thr.currentEpoch() != epoch+1 {
		t.Errorf("limit epoch %d -> %d, want one multiplicative decrease", epoch, c.thr.currentEpoch())
	}
	batches := f.count(func(r fakeReq) bool { return strings.HasSuffix(r.URI, "$batch") })
	if batches != 2 || fc.count() != 2 {
		t.Errorf("%d batches, throttled record sent %d times; want 2 and 2", batches, fc.count())
	}
	reqs := f.requests()
	if gap := reqs[len(reqs)-1].At.Sub(reqs[0].At); gap < 300*time.Millisecond {
		t.Errorf("the retry went out %v after the throttled batch, before its Retry-After (300ms)", gap)
	}
}
