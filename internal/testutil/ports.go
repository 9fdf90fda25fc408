package testutil

import (
	"sync"

	"dvbulk/internal/netutil"
)

// TakenFirst is a port chooser for launcher tests: the first call hands out taken (a port some
// other server holds), later calls real free ports. Handed lists what it gave out.
type TakenFirst struct {
	mu     sync.Mutex
	taken  int
	handed []int
}

// NewTakenFirst returns a chooser whose first port is taken.
func NewTakenFirst(taken int) *TakenFirst { return &TakenFirst{taken: taken} }

// Port is the chooser (the shape of netutil.FreePort).
func (p *TakenFirst) Port() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.handed) == 0 {
		p.handed = append(p.handed, p.taken)
		return p.taken, nil
	}
	port, err := netutil.FreePort()
	p.handed = append(p.handed, port)
	return port, err
}

// Handed returns the ports given out so far.
func (p *TakenFirst) Handed() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.handed...)
}
