package netutil

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for a child process to
// listen on. The child binds it later, so the port is a reservation nobody holds: it is picked at
// random below the kernel's ephemeral range (ip_local_port_range), where no listener on port 0
// (httptest, every in-process simulator) and no outgoing connection is ever given it. Another
// process choosing ports the same way can still take it first, so launchers retry with a fresh
// port when the child reports it in use (see funcemu and azurite).
func FreePort() (int, error) {
	lo, hi := belowEphemeral()
	for range 200 {
		p := lo + rand.IntN(hi-lo)
		if free(p) {
			return p, nil
		}
	}
	// A crowded range: fall back to a kernel-chosen port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// free reports whether p can be listened on now (on 127.0.0.1).
func free(p int) bool {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// belowEphemeral is the range [lo, hi) FreePort draws from: from 20000 up to the start of the
// ephemeral range (32768 on Linux by default), never into the well-known ports.
func belowEphemeral() (lo, hi int) {
	lo, hi = 20000, 32768
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var first, last int
		if n, _ := fmt.Sscanf(strings.TrimSpace(string(data)), "%d %d", &first, &last); n == 2 && first > 1024 {
			hi = first
			lo = max(1024, min(lo, first-4096))
		}
	}
	return lo, hi
}

// InUse reports whether a child's output line says its listen address was taken (Go's
// "bind: address already in use", Node's EADDRINUSE).
func InUse(line string) bool {
	return strings.Contains(line, "address already in use") || strings.Contains(line, "EADDRINUSE")
}

// ListensOn reports whether process pid holds the listening socket on 127.0.0.1:port, so a launcher
// does not take another process's server, which took the port first, for its child's. known is false
// where the answer cannot be read (no /proc: not Linux); callers then trust the port.
func ListensOn(pid, port int) (owns, known bool) {
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false, false
	}
	want := fmt.Sprintf("0100007F:%04X", port)
	inode := ""
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && f[1] == want && f[3] == "0A" { // 0A: LISTEN
			inode = f[9]
			break
		}
	}
	if inode == "" {
		return false, true // nobody listens there (yet)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return false, true // gone (or a zombie): it holds nothing
	}
	for _, fd := range fds {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && l == "socket:["+inode+"]" {
			return true, true
		}
	}
	return false, true
}
