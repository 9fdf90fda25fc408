// Package netutil holds small networking helpers: the loopback test that decides where plain http
// and no credentials are allowed, and a free port for the emulators' launchers.
package netutil

import (
	"net"
	"strings"
)

// IsLoopback reports whether host (a URL's Hostname(), without port or brackets) is localhost,
// 127.0.0.0/8 or ::1: the only hosts to which the app sends plain http or no credential.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
