// Package ledger keeps, per job, a fingerprint of every record's inputs at its last successful
// enrichment, so a nightly run asks the paid service only about records whose inputs changed, that
// were never enriched, or whose answer is due for a refresh.
//
// The ledger lives in the checkpoint store beside the runs, in 256 shards per job. A shard is chosen
// by the byte Dataverse (SQL Server) sorts a uniqueidentifier by first, so a page read in key order
// touches a few shards, not all of them. Every shard write is ETag-conditional, so instances that
// finish chunks at the same time never lose each other's updates.
package ledger

import (
	"encoding/binary"
	"hash/fnv"
	"time"
)

// Entry is what the ledger remembers of one record.
type Entry struct {
	FP      uint64    // fingerprint of the job version and the record's input values when answered
	At      time.Time // when the answer was recorded (second precision)
	NoMatch bool      // the answer was "no match"
	Failed  bool      // the last attempt failed otherwise (or was skipped): ask again next run
}

// Reason says why a record is sent to the enrichment service, or that it is not (Fresh).
type Reason string

// Decisions of Rules.Decide.
const (
	Fresh        Reason = "fresh"         // unchanged, answered recently: not sent
	Unseen       Reason = "new"           // never answered successfully (or its shard was unreadable)
	Changed      Reason = "changed"       // an input column (or the job's version) changed since
	Refresh      Reason = "refresh"       // the last answer is due for a refresh
	NoMatchRetry Reason = "nomatch-retry" // the last answer was "no match" and is old enough to ask again
	Retry        Reason = "retry"         // the last attempt failed: asked again
	Full         Reason = "full"          // a full run: everything is eligible
)

// Rules decide which records are sent.
type Rules struct {
	// RefreshAfter is the age after which a successful answer is asked again; 0 means always.
	RefreshAfter time.Duration
	// NoMatchRetryAfter is the age after which a "no match" answer is asked again; 0 means always.
	NoMatchRetryAfter time.Duration
}

// JitterFraction is the share of RefreshAfter over which refreshes are spread: a record answered at
// time t is refreshed from t + RefreshAfter×(1-JitterFraction×u), where u in [0,1) is fixed per record
// and answer. Records answered on the same night therefore fall due over the following nights of that
// window instead of all on one, and never later than RefreshAfter.
const JitterFraction = 0.25

// Decide applies the rules to a record whose current fingerprint is fp; e and ok are its ledger entry.
func (r Rules) Decide(id string, fp uint64, e Entry, ok bool, now time.Time) Reason {
	switch {
	case !ok:
		return Unseen
	case e.Failed:
		return Retry
	case e.FP != fp:
		return Changed
	case e.NoMatch:
		if now.Sub(e.At) >= r.NoMatchRetryAfter {
			return NoMatchRetry
		}
		return Fresh
	case now.Sub(e.At) >= r.RefreshDue(id, e.At):
		return Refresh
	}
	return Fresh
}

// Due reports whether an entry is due at now whatever the record's inputs are: a failed attempt, a
// "no match" old enough to retry, or an answer due for its refresh. A change-tracking run finds
// these by scanning the ledger, since the delta only names rows that changed.
func (r Rules) Due(id string, e Entry, now time.Time) bool {
	switch {
	case e.Failed:
		return true
	case e.NoMatch:
		return now.Sub(e.At) >= r.NoMatchRetryAfter
	}
	return now.Sub(e.At) >= r.RefreshDue(id, e.At)
}

// RefreshDue is the age at which an answer recorded at for id is due: RefreshAfter less a per-record
// share of up to JitterFraction of it.
func (r Rules) RefreshDue(id string, at time.Time) time.Duration {
	if r.RefreshAfter <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(id))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(at.Unix()))
	h.Write(b[:])
	u := float64(h.Sum64()>>11) / float64(1<<53)
	return r.RefreshAfter - time.Duration(float64(r.RefreshAfter)*JitterFraction*u)
}

// Fingerprint hashes a job version and a record's input values (already canonically encoded, in the
// job's input order). Values are length-prefixed so ("ab","c") and ("a","bc") differ.
func Fingerprint(version string, values [][]byte) uint64 {
	h := fnv.New64a()
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(version)))
	h.Write(n[:])
	h.Write([]byte(version))
	for _, v := range values {
		binary.BigEndian.PutUint32(n[:], uint32(len(v)))
		h.Write(n[:])
		h.Write(v)
	}
	return h.Sum64()
}
