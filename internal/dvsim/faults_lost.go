package dvsim

import "net/http"

// LoseAnswers makes the next n write requests apply their changes and then drop the connection
// instead of answering: the client cannot tell whether its write happened, as when a process is
// killed between sending a request and recording its answer.
func (f *Faults) LoseAnswers(n int) { f.mu.Lock(); f.loseN = n; f.mu.Unlock() }

func (f *Faults) loseAnswer() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loseN > 0 {
		f.loseN--
		return true
	}
	return false
}

// abort closes the connection without an answer.
func abort(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}
