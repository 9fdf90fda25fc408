package bench

import (
	"context"
	"sync"
	"syscall"
	"time"
)

// utilisation is what sampleUtilisation saw: how busy the product kept the enrichment service
// (the binding limit in prod) and Dataverse, and when the enrichment service was first and last
// busy (the start-up and the tail of the run).
type utilisation struct {
	Enrich, DV   float64       // average requests being served (enrichment: busy slots) and in flight (Dataverse)
	EnrichQueued float64       // average enrichment requests waiting in the service's queue
	FirstEnrich  time.Duration // first sample with an enrichment request in flight
	LastEnrich   time.Duration // last sample with an enrichment request in flight
	Wall         time.Duration // when the sampler stopped
}

// sampleUtilisation samples the simulators' in-flight gauges every few milliseconds until the
// returned function is called, which stops the sampler and reports what it saw.
func sampleUtilisation(ctx context.Context, e *env) func() utilisation {
	ctx, cancel := context.WithCancel(ctx)
	start := time.Now()
	var (
		wg            sync.WaitGroup
		n             int
		sumEnr, sumDV int64
		sumQueued     int64
		first, last   time.Duration
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				ec := e.en.Counters()
				enr := ec.Serving // busy slots; queued requests wait, they are not served
				sumEnr += enr
				sumQueued += ec.Queued
				sumDV += e.dv.Counters().InFlight
				n++
				if enr > 0 {
					if first == 0 {
						first = time.Since(start)
					}
					last = time.Since(start)
				}
			}
		}
	}()
	return func() utilisation {
		cancel()
		wg.Wait()
		u := utilisation{FirstEnrich: first, LastEnrich: last, Wall: time.Since(start)}
		if n > 0 {
			u.Enrich, u.DV = float64(sumEnr)/float64(n), float64(sumDV)/float64(n)
			u.EnrichQueued = float64(sumQueued) / float64(n)
		}
		return u
	}
}

// cpuTime is the CPU time this process has used (user + system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
