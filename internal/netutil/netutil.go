// Package netutil holds small networking helpers shared by the emulators' launchers.
package netutil

import "net"

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for a child process to
// listen on.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
