package ctxutil

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSleep(t *testing.T) {
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("sleep on a live context: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) || time.Since(start) > time.Second {
		t.Errorf("sleep on an ended context = %v after %s, want Canceled at once", err, time.Since(start))
	}
	if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("zero sleep on an ended context = %v, want Canceled", err)
	}
}

func TestStop(t *testing.T) {
	if Stopped(context.Background()) || StopChan(context.Background()) != nil {
		t.Error("a context without a stop reports one")
	}
	stop := make(chan struct{})
	ctx := WithStop(context.Background(), stop)
	if Stopped(ctx) {
		t.Error("stopped before the stop was closed")
	}
	close(stop)
	if !Stopped(ctx) || ctx.Err() != nil {
		t.Errorf("after closing the stop: Stopped %v, Err %v; want stopped and not cancelled", Stopped(ctx), ctx.Err())
	}
}

func TestSleepOrStop(t *testing.T) {
	stop := make(chan struct{})
	ctx := WithStop(context.Background(), stop)
	if err := SleepOrStop(ctx, time.Millisecond); err != nil {
		t.Errorf("short sleep before the stop: %v", err)
	}
	time.AfterFunc(20*time.Millisecond, func() { close(stop) })
	start := time.Now()
	if err := SleepOrStop(ctx, time.Hour); !errors.Is(err, ErrStopped) || time.Since(start) > time.Second {
		t.Errorf("sleep across the stop = %v after %s, want ErrStopped at once", err, time.Since(start))
	}
	if err := Sleep(ctx, time.Millisecond); err != nil {
		t.Errorf("plain Sleep after the stop = %v, want nil (a stop is not a cancel)", err)
	}
}
