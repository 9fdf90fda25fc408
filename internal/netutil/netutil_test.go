package netutil

import (
	"net"
	"os"
	"testing"
)

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LocalHost": true, "127.0.0.1": true, "127.8.9.10": true, "::1": true,
		"": false, "contoso.crm.dynamics.com": false, "10.0.0.1": false, "::": false, "localhost.example.com": false, "128.0.0.1": false,
	} {
		if got := IsLoopback(host); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestFreePortIsBelowTheEphemeralRange(t *testing.T) {
	lo, hi := belowEphemeral()
	for range 20 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if p < lo || p >= hi {
			t.Fatalf("port %d outside [%d, %d): a port-0 listener could be given it", p, lo, hi)
		}
	}
}

func TestListensOn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	owns, known := ListensOn(os.Getpid(), port)
	if !known {
		t.Skip("no /proc")
	}
	if !owns {
		t.Fatal("this process's listener is not recognised as its own")
	}
	if owns, _ := ListensOn(os.Getppid(), port); owns {
		t.Fatal("the parent process is said to hold this process's listener")
	}
	p, _ := FreePort()
	if owns, _ := ListensOn(os.Getpid(), p); owns {
		t.Fatal("a port nobody listens on is said to be held")
	}
}
