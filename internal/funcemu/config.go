// Package funcemu plays the Azure Functions host for a custom handler, following
// reference/functions-host.md (read from the host's source): it starts the handler as one or more
// instances, sends timer and queue invocations with the host's exact payload encoding, applies output
// bindings, and keeps in-memory storage queues with the queue trigger's semantics (base64 message
// encoding, visibility leases renewed while an invocation runs, DequeueCount, retry after
// visibilityTimeout, poison queue after maxDequeueCount). Tests use it to kill instances mid-invocation;
// the demo uses it to run the app on one machine.
package funcemu

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// hostConfig is what the emulator reads from host.json.
type hostConfig struct {
	functionTimeout   time.Duration
	batchSize         int
	newBatchThreshold int
	maxDequeue        int
	visibility        time.Duration
	base64            bool
}

type binding struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	Direction string `json:"direction"`
	QueueName string `json:"queueName"`
	Schedule  string `json:"schedule"`
	DataType  string `json:"dataType"`
}

type function struct {
	name    string
	trigger binding
	outputs []binding
}

var settingRE = regexp.MustCompile(`%([A-Za-z0-9_]+)%`)

// resolve replaces %SETTING% with its value from env (later entries win).
func resolve(s string, env []string) string {
	return settingRE.ReplaceAllStringFunc(s, func(m string) string {
		name := m[1 : len(m)-1]
		val := ""
		for _, kv := range env {
			if k, v, ok := strings.Cut(kv, "="); ok && k == name {
				val = v
			}
		}
		if val == "" {
			val = os.Getenv(name)
		}
		return val
	})
}

// timeSpan parses "hh:mm:ss" (and "d.hh:mm:ss").
func timeSpan(s string) (time.Duration, bool) {
	days := 0
	if d, rest, ok := strings.Cut(s, "."); ok && !strings.Contains(d, ":") {
		if _, err := fmt.Sscanf(d, "%d", &days); err != nil {
			return 0, false
		}
		s = rest
	}
	var h, m, sec int
	if n, err := fmt.Sscanf(s, "%d:%d:%d", &h, &m, &sec); err != nil || n != 3 {
		return 0, false
	}
	return time.Duration(days*24+h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec)*time.Second, true
}

func readApp(root string, env []string) (hostConfig, []function, error) {
	hc := hostConfig{functionTimeout: 5 * time.Minute, batchSize: 16, newBatchThreshold: 8, maxDequeue: 5, base64: true}
	data, err := os.ReadFile(filepath.Join(root, "host.json"))
	if err != nil {
		return hc, nil, fmt.Errorf("funcemu: %w", err)
	}
	var h struct {
		FunctionTimeout string `json:"functionTimeout"`
		Extensions      struct {
			Queues struct {
				BatchSize         *int   `json:"batchSize"`
				NewBatchThreshold *int   `json:"newBatchThreshold"`
				MaxDequeueCount   *int   `json:"maxDequeueCount"`
				VisibilityTimeout string `json:"visibilityTimeout"`
				MessageEncoding   string `json:"messageEncoding"`
			} `json:"queues"`
		} `json:"extensions"`
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return hc, nil, fmt.Errorf("funcemu: host.json: %w", err)
	}
	if d, ok := timeSpan(h.FunctionTimeout); ok {
		hc.functionTimeout = d
	}
	q := h.Extensions.Queues
	if q.BatchSize != nil {
		hc.batchSize = *q.BatchSize
	}
	if q.NewBatchThreshold != nil {
		hc.newBatchThreshold = *q.NewBatchThreshold
	}
	if q.MaxDequeueCount != nil {
		hc.maxDequeue = *q.MaxDequeueCount
	}
	if d, ok := timeSpan(q.VisibilityTimeout); ok {
		hc.visibility = d
	}
	if strings.EqualFold(q.MessageEncoding, "none") {
		hc.base64 = false
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return hc, nil, err
	}
	var fns []function
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(root, e.Name(), "function.json"))
		if err != nil {
			continue
		}
		var fj struct {
			Bindings []binding `json:"bindings"`
		}
		if err := json.Unmarshal(raw, &fj); err != nil {
			return hc, nil, fmt.Errorf("funcemu: %s/function.json: %w", e.Name(), err)
		}
		fn := function{name: e.Name()}
		for _, b := range fj.Bindings {
			b.QueueName = strings.ToLower(resolve(b.QueueName, env))
			b.Schedule = resolve(b.Schedule, env)
			switch {
			case b.Direction == "in" && (b.Type == "timerTrigger" || b.Type == "queueTrigger"):
				fn.trigger = b
			case b.Direction == "out" && b.Type == "queue":
				fn.outputs = append(fn.outputs, b)
			}
		}
		if fn.trigger.Type == "" {
			return hc, nil, fmt.Errorf("funcemu: %s has no timer or queue trigger", e.Name())
		}
		fns = append(fns, fn)
	}
	return hc, fns, nil
}
