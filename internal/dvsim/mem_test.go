package dvsim

import (
	"runtime"
	"testing"
	"time"
)

func TestMemTmp(t *testing.T) {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	st := time.Now()
	s := New(Config{Accounts: 900000, InactiveAccounts: 100000})
	el := time.Since(st)
	runtime.GC()
	runtime.ReadMemStats(&b)
	t.Logf("seed %v, %d bytes/record", el, (b.HeapAlloc-a.HeapAlloc)/1000000)
	runtime.KeepAlive(s)
}
