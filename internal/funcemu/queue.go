package funcemu

import (
	"encoding/base64"
	"strings"
	"time"

	"github.com/google/uuid"
)

// messageTTL is the storage default time-to-live (7 days); only ExpirationTime shows it.
const messageTTL = 7 * 24 * time.Hour

// message is one storage-queue message.
type message struct {
	id        string
	stored    string // as in the queue: base64 under the default messageEncoding
	dequeue   int
	inserted  time.Time
	visibleAt time.Time
	pop       string
	owner     *instance // instance whose invocation holds the lease, nil when none
}

// Enqueue adds a message as an external tool would. With encode (under the default base64
// messageEncoding) the body is stored base64-encoded, as the output binding does; without, the text is
// stored as is (what the Go azqueue SDK does), which the trigger then fails to decode.
func (h *Host) Enqueue(queue, body string, encode bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.put(strings.ToLower(queue), body, encode)
}

// put appends a message; h.mu must be held.
func (h *Host) put(queue, body string, encode bool) {
	stored := body
	if encode && h.cfg.base64 {
		stored = base64.StdEncoding.EncodeToString([]byte(body))
	}
	now := time.Now()
	h.queues[queue] = append(h.queues[queue], &message{id: uuid.NewString(), stored: stored, inserted: now, visibleAt: now})
}

// decode applies messageEncoding; ok is false when a base64 queue holds text that is not base64.
func (h *Host) decode(m *message) (string, bool) {
	if !h.cfg.base64 {
		return m.stored, true
	}
	b, err := base64.StdEncoding.DecodeString(m.stored)
	return string(b), err == nil
}

// Messages returns the decoded bodies currently in a queue, visible or leased (text that does not
// decode is returned as stored).
func (h *Host) Messages(queue string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, m := range h.queues[strings.ToLower(queue)] {
		if body, ok := h.decode(m); ok {
			out = append(out, body)
		} else {
			out = append(out, m.stored)
		}
	}
	return out
}

// dequeue takes the oldest visible message of q and leases it; h.mu must be held.
func (h *Host) dequeue(q string) *message {
	now := time.Now()
	for _, m := range h.queues[q] {
		if !m.visibleAt.After(now) {
			m.dequeue++
			m.visibleAt = now.Add(h.opts.Lease)
			m.pop = uuid.NewString()
			m.owner = nil
			return m
		}
	}
	return nil
}

// remove deletes m from q; h.mu must be held.
func (h *Host) remove(q string, m *message) {
	msgs := h.queues[q]
	for i, x := range msgs {
		if x == m {
			h.queues[q] = append(msgs[:i:i], msgs[i+1:]...)
			return
		}
	}
}

// poison copies m to <queue>-poison (a new message) and deletes it. A queue that is itself a poison
// queue has none: the message is left invisible, as the host does, instead of looping. h.mu must be
// held.
func (h *Host) poison(q string, m *message) {
	if strings.HasSuffix(q, "-poison") {
		m.visibleAt = time.Now().Add(messageTTL)
		return
	}
	h.remove(q, m)
	now := time.Now()
	h.queues[q+"-poison"] = append(h.queues[q+"-poison"], &message{id: uuid.NewString(), stored: m.stored, inserted: now, visibleAt: now})
}
