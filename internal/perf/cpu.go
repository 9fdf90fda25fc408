package perf

import "runtime"

func numCPU() int { return runtime.NumCPU() }
