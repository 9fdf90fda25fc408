// Command echohandler is a minimal custom handler for funcemu's tests. It logs every request
// ("HDR", "BODY" as base64 of the raw bytes, "START") and answers:
//   - a timer invocation: ECHO_TIMER_COUNT messages {"fanout":2,"n":i} to the output binding "out";
//   - a queue message {"fail":true}: HTTP 500; {"sleep":"2s"}: sleeps, then 200;
//     {"fanout":n}: n messages {"leaf":i} to "out"; {"big":n}: one message of n bytes to "out"; {"null":true}: 200 with an empty body;
//     {"text":true}: 200 with Content-Type text/plain; anything else: 200 with a log line.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv := &http.Server{Addr: "127.0.0.1:" + os.Getenv("FUNCTIONS_CUSTOMHANDLER_PORT"), Handler: http.HandlerFunc(serve)}
	go func() {
		<-ctx.Done()
		fmt.Println("SIGTERM")
		_ = srv.Shutdown(context.Background())
	}()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

type response struct {
	Outputs     map[string]any `json:"Outputs"`
	Logs        []string       `json:"Logs"`
	ReturnValue any            `json:"ReturnValue"`
}

func serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		return // readiness and health pings
	}
	fn := r.URL.Path[1:]
	raw, _ := io.ReadAll(r.Body)
	fmt.Printf("HDR %s ct=%q hv=%q ua=%q id=%s\n", fn, r.Header.Get("Content-Type"),
		r.Header.Get("X-Azure-Functions-HostVersion"), r.Header.Get("User-Agent"), r.Header.Get("X-Azure-Functions-InvocationId"))
	fmt.Printf("BODY %s %s\n", fn, base64.StdEncoding.EncodeToString(raw))
	var req struct {
		Data map[string]json.RawMessage
	}
	if err := json.Unmarshal(raw, &req); err != nil || len(req.Data) != 1 {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var data json.RawMessage
	for _, v := range req.Data {
		data = v
	}
	w.Header().Set("Content-Type", "application/json")
	if data[0] == '{' { // timer: TimerInfo object
		n, _ := strconv.Atoi(os.Getenv("ECHO_TIMER_COUNT"))
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf(`{"fanout":2,"n":%d}`, i))
		}
		fmt.Printf("START %s timer\n", fn)
		_ = json.NewEncoder(w).Encode(response{Outputs: map[string]any{"out": out}, Logs: []string{"timer fired"}})
		return
	}
	// Queue: the body is JSON-encoded twice.
	var s1, body string
	if json.Unmarshal(data, &s1) != nil || json.Unmarshal([]byte(s1), &body) != nil {
		http.Error(w, "not double-encoded", http.StatusBadRequest)
		return
	}
	fmt.Printf("START %s %s\n", fn, body)
	var cmd struct {
		Fail, Null, Text bool
		Sleep            string
		Fanout, Big      int
	}
	_ = json.Unmarshal([]byte(body), &cmd)
	switch {
	case cmd.Fail:
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(response{Logs: []string{"failed"}})
		return
	case cmd.Null:
		return
	case cmd.Text:
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, `{"Logs":["text"]}`)
		return
	case cmd.Sleep != "":
		d, _ := time.ParseDuration(cmd.Sleep)
		time.Sleep(d)
	}
	var out []string
	for i := range cmd.Fanout {
		out = append(out, fmt.Sprintf(`{"leaf":%d}`, i))
	}
	if cmd.Big > 0 {
		out = append(out, strings.Repeat("x", cmd.Big))
	}
	fmt.Printf("DONE %s %s\n", fn, body)
	_ = json.NewEncoder(w).Encode(response{Outputs: map[string]any{"out": out}, Logs: []string{"got " + body}})
}
