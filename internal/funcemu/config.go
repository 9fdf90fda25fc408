package funcemu

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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
	executable        string   // customHandler.description.defaultExecutablePath (as written)
	arguments         []string // customHandler.description.arguments, %SETTING% expanded
	workingDir        string   // customHandler.description.workingDirectory, absolute; "" = app root
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

func (f function) hasOutput(name string) bool {
	for _, b := range f.outputs {
		if b.Name == name {
			return true
		}
	}
	return false
}

var settingRE = regexp.MustCompile(`%([A-Za-z0-9_]+)%`)

// resolve replaces %SETTING% with its value from env, the app settings (later entries win; an
// unknown setting becomes empty).
func resolve(s string, env []string) string {
	return settingRE.ReplaceAllStringFunc(s, func(m string) string {
		name := m[1 : len(m)-1]
		val := ""
		for _, kv := range env {
			if k, v, ok := strings.Cut(kv, "="); ok && k == name {
				val = v
			}
		}
		return val
	})
}

// timeSpan parses a .NET TimeSpan as host.json writes it: "[d.]hh:mm:ss[.fffffff]".
func timeSpan(s string) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	var days int64
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return 0, false
	}
	if d, h, ok := strings.Cut(parts[0], "."); ok {
		n, err := strconv.ParseInt(d, 10, 32)
		if err != nil {
			return 0, false
		}
		days, parts[0] = n, h
	}
	h, err1 := strconv.ParseInt(parts[0], 10, 32)
	m, err2 := strconv.ParseInt(parts[1], 10, 32)
	sec, err3 := strconv.ParseFloat(parts[2], 64)
	if err1 != nil || err2 != nil || err3 != nil || h < 0 || m < 0 || sec < 0 {
		return 0, false
	}
	return time.Duration(days*24+h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec*float64(time.Second)), true
}

func readApp(root string, env []string) (hostConfig, []function, error) {
	hc := hostConfig{functionTimeout: 5 * time.Minute, batchSize: 16, newBatchThreshold: 8, maxDequeue: 5, base64: true}
	data, err := os.ReadFile(filepath.Join(root, "host.json"))
	if err != nil {
		return hc, nil, fmt.Errorf("funcemu: %w", err)
	}
	var h struct {
		FunctionTimeout string `json:"functionTimeout"`
		CustomHandler   struct {
			Description struct {
				DefaultExecutablePath string   `json:"defaultExecutablePath"`
				WorkingDirectory      string   `json:"workingDirectory"`
				Arguments             []string `json:"arguments"`
			} `json:"description"`
		} `json:"customHandler"`
		Extensions struct {
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
	switch d, ok := timeSpan(h.FunctionTimeout); {
	case ok:
		hc.functionTimeout = d
	case strings.TrimSpace(h.FunctionTimeout) == "-1":
		hc.functionTimeout = 0 // unbounded
	case h.FunctionTimeout != "":
		return hc, nil, fmt.Errorf("funcemu: host.json: functionTimeout %q is not hh:mm:ss", h.FunctionTimeout)
	}
	desc := h.CustomHandler.Description
	hc.executable = resolve(desc.DefaultExecutablePath, env)
	for _, a := range desc.Arguments {
		hc.arguments = append(hc.arguments, resolve(a, env))
	}
	if wd := resolve(desc.WorkingDirectory, env); wd != "" {
		if !filepath.IsAbs(wd) {
			wd = filepath.Join(root, wd)
		}
		hc.workingDir = wd
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
	if q.VisibilityTimeout != "" {
		d, ok := timeSpan(q.VisibilityTimeout)
		if !ok {
			return hc, nil, fmt.Errorf("funcemu: host.json: visibilityTimeout %q is not hh:mm:ss", q.VisibilityTimeout)
		}
		hc.visibility = d
	}
	if strings.EqualFold(q.MessageEncoding, "none") {
		hc.base64 = false
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return hc, nil, fmt.Errorf("funcemu: %w", err)
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
			case strings.EqualFold(b.Direction, "in") && strings.EqualFold(b.Type, "timerTrigger"):
				b.Type = "timerTrigger"
				fn.trigger = b
			case strings.EqualFold(b.Direction, "in") && strings.EqualFold(b.Type, "queueTrigger"):
				b.Type = "queueTrigger"
				fn.trigger = b
			case strings.EqualFold(b.Direction, "out") && strings.EqualFold(b.Type, "queue"):
				fn.outputs = append(fn.outputs, b)
			}
		}
		if fn.trigger.Type == "" {
			continue // other triggers (HTTP, ...) are not emulated
		}
		fns = append(fns, fn)
	}
	return hc, fns, nil
}
