// Package azurite installs (from package.json / package-lock.json beside this file) and starts the
// pinned Azurite storage emulator on free loopback ports, for integration tests (through
// azuritetest.Start) and the demo.
package azurite

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"dvbulk/internal/netutil"
)

// Account is Azurite's well-known development account (its key is public, not a secret).
const (
	Account = "devstoreaccount1"
	Key     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Options tune a server.
type Options struct {
	Persist string // a directory for --location (data survives Restart); "" = in memory
	LogFile string // where Azurite's output goes; "" = discarded
}

// ErrNotInstalled means the pinned Azurite is not installed (run `make azurite`).
var ErrNotInstalled = errors.New("azurite: not installed")

// Server is a running azurite-blob.
type Server struct {
	mu      sync.Mutex
	bin     string
	port    int
	opts    Options
	cmd     *exec.Cmd
	done    chan struct{}
	logFile string
}

// Dir returns the directory holding package.json, found by walking up to go.mod.
func Dir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, "internal", "azurite"), nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("azurite: go.mod not found above " + wd)
		}
	}
}

// Binary returns the installed azurite-blob, or an error saying how to install it.
func Binary() (string, error) {
	dir, err := Dir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "node_modules", ".bin", "azurite-blob")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("%w (run `make azurite` or `npm ci` in %s)", ErrNotInstalled, dir)
	}
	return bin, nil
}

// Launch starts Azurite; call Stop when done. Tests use azuritetest.Start, which stops it at the
// end of the test.
func Launch(opts Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	logFile := opts.LogFile
	if logFile == "" {
		logFile = os.DevNull
	}
	s := &Server{bin: bin, opts: opts, logFile: logFile}
	return s, s.launch()
}

// launch starts Azurite on its port; the first launch chooses the port. Azurite binds it later, so
// another process can take it in between: then Azurite exits at start, and a first launch tries a
// fresh port (a restart keeps its port: connection strings name it).
func (s *Server) launch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fresh := s.port == 0
	for attempt := 1; ; attempt++ {
		if fresh {
			p, err := freePort()
			if err != nil {
				return err
			}
			s.port = p
		}
		err := s.start()
		if !errors.Is(err, errExited) || !fresh || attempt == 5 {
			return err
		}
	}
}

var errExited = errors.New("azurite: exited during start (its port taken?)")

// freePort chooses a first launch's port; a test hands out a taken one first.
var freePort = netutil.FreePort

func (s *Server) start() error {
	args := []string{"--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(s.port),
		"--disableTelemetry", "--skipApiVersionCheck", "--loose", "--silent"}
	if s.opts.Persist != "" {
		args = append(args, "--location", s.opts.Persist)
	} else {
		args = append(args, "--inMemoryPersistence")
	}
	cmd := exec.Command(s.bin, args...)
	if f, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("azurite: start: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(s.done)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", s.addr(), 200*time.Millisecond); err == nil {
			c.Close()
			// Only Azurite's own listener counts: another process that took the port answers too.
			if owns, known := netutil.ListensOn(cmd.Process.Pid, s.port); owns || !known {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("%w (port %d, log: %s)", errExited, s.port, s.logFile)
		case <-time.After(100 * time.Millisecond):
		}
	}
	_ = cmd.Process.Kill()
	return errors.New("azurite: did not answer within 30s")
}

func (s *Server) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// ConnectionString is a full connection string for the running server.
func (s *Server) ConnectionString() string {
	return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=http://%s/%s;", Account, Key, s.addr(), Account)
}

// Stop shuts the server down gracefully (SIGINT, so a persisted store is saved) and waits for it;
// after 10 s it is killed.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Kill stops the server abruptly (what a crash does: unsaved state is lost).
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart stops the server and starts it again on the same port (with Persist, data survives).
func (s *Server) Restart() error {
	s.Stop()
	return s.launch()
}
