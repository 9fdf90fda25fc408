package azurite

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"dvbulk/internal/netutil"
	"dvbulk/internal/testutil"
)

// The first port chosen for Azurite is already held by another server (one that even accepts
// connections, so a dial looks like readiness): Azurite exits at start, and the launcher tries a
// fresh port and ends up with Azurite's own listener.
func TestLaunchTriesAFreshPortWhenItsPortIsTaken(t *testing.T) {
	if _, err := Binary(); errors.Is(err, ErrNotInstalled) {
		t.Skip(err)
	}
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	taken := other.Listener.Addr().(*net.TCPAddr).Port
	ports := testutil.NewTakenFirst(taken)
	freePort = ports.Port
	defer func() { freePort = netutil.FreePort }()
	s, err := Launch(Options{})
	if err != nil {
		t.Fatalf("launch with the first port taken: %v", err)
	}
	defer s.Stop()
	if handed := ports.Handed(); len(handed) < 2 || s.port == taken {
		t.Fatalf("ports %v, Azurite on %d: want a fresh port", handed, s.port)
	}
	if owns, known := netutil.ListensOn(s.cmd.Process.Pid, s.port); known && !owns {
		t.Fatalf("port %d is not Azurite's own listener", s.port)
	}
}
