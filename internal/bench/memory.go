package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"
)

// MemoryOptions describe the memory measurement: one instance, as its own process (dvbulk run
// with the local checkpoint store), planning and processing Accounts accounts against an
// in-process simulator.
type MemoryOptions struct {
	Binary    string // the dvbulk executable
	Accounts  int
	TimeScale float64
	Dir       string            // checkpoint directory for the child
	Settings  map[string]string // app settings beyond the simulator URLs and the directory
	Workers   int               // dvbulk run --workers
}

// MemoryResult is what the kernel and the simulator saw of the child.
type MemoryResult struct {
	MaxRSS    int64 // bytes
	Took      time.Duration
	Requests  int64
	Throttled int64
	Writes    int64
	Lost      int
}

// DefaultMemorySettings are the settings of the measured instance: the prod profile's whole hint
// and enrichment allowance for a single instance.
func DefaultMemorySettings() map[string]string {
	return map[string]string{
		"ENRICHMENT_BATCH_SIZE": "25", "ENRICHMENT_CONCURRENCY": "32", "DVBULK_DATAVERSE_CONCURRENCY": "48",
		"DVBULK_CHUNK_SIZE": "1000", "DVBULK_PLAN_PAGES": "1", "DVBULK_TRANSFORM_WORKERS": "8",
		"DVBULK_WRITE_WORKERS": "4", "DVBULK_LOG_LEVEL": "warn",
	}
}

// Memory runs the child and reads its peak resident set size from the kernel (getrusage's
// ru_maxrss, KiB on Linux).
//
// Linux keeps ru_maxrss across execve and Go starts children with vfork semantics, so a child's
// figure includes the high-water mark of the parent's memory at the moment of the exec. The child
// is therefore started first, on listeners opened in advance, while this process is still small;
// the million-record simulator is built afterwards and the child's first requests wait in the
// listen backlog meanwhile. Run Memory before anything else that grows this process.
func Memory(ctx context.Context, o MemoryOptions) (MemoryResult, error) {
	dvLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return MemoryResult{}, fmt.Errorf("bench: listen: %w", err)
	}
	defer dvLn.Close()
	enLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return MemoryResult{}, fmt.Errorf("bench: listen: %w", err)
	}
	defer enLn.Close()
	env := []string{"DATAVERSE_URL=http://" + dvLn.Addr().String(), "DATAVERSE_AUTH=none",
		"ENRICHMENT_URL=http://" + enLn.Addr().String() + "/enrich", "DVBULK_CHECKPOINT_DIR=" + o.Dir}
	for k, v := range o.Settings {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	cmd := exec.CommandContext(ctx, o.Binary, "run", "--new", "--workers", fmt.Sprint(max(1, o.Workers)))
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return MemoryResult{}, fmt.Errorf("bench: start dvbulk run: %w", err)
	}

	p := Prod()
	p.Active, p.Inactive = o.Accounts, o.Accounts/10
	e := newSims(p, o.TimeScale)
	mux := http.NewServeMux()
	mux.Handle("/enrich", e.en.Handler())
	dvSrv := &http.Server{Handler: e.dv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	enSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = dvSrv.Serve(dvLn) }()
	go func() { _ = enSrv.Serve(enLn) }()
	defer dvSrv.Close()
	defer enSrv.Close()

	err = cmd.Wait()
	took := time.Since(start)
	if err != nil {
		return MemoryResult{}, fmt.Errorf("bench: dvbulk run over %d accounts: %w\n%s", o.Accounts, err, tail(out.String(), 2000))
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return MemoryResult{}, fmt.Errorf("bench: no resource usage for the child process")
	}
	c := e.dv.Counters()
	r := MemoryResult{MaxRSS: ru.Maxrss * 1024, Took: took, Requests: c.Requests, Writes: c.Writes}
	for _, n := range c.Throttled {
		r.Throttled += n
	}
	for _, id := range e.dv.IDs(true) {
		if !e.holdsTruth(id) {
			r.Lost++
		}
	}
	return r, nil
}

// SettingsString renders settings for the report, sorted.
func SettingsString(s map[string]string) string {
	kv := make([]string, 0, len(s))
	for k, v := range s {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, " ")
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
