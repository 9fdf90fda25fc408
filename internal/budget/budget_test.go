package budget

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"dvbulk/internal/checkpoint"
	"dvbulk/internal/testutil"
)

// flaky wraps a store whose reads and writes can be switched off (an outage) and counts them.
type flaky struct {
	checkpoint.Store
	down  atomic.Bool
	ops   atomic.Int64
	reads atomic.Int64
}

var errDown = errors.New("storage unreachable")

func (f *flaky) Get(ctx context.Context, name string) ([]byte, checkpoint.ETag, error) {
	f.ops.Add(1)
	f.reads.Add(1)
	if f.down.Load() {
		return nil, "", errDown
	}
	return f.Store.Get(ctx, name)
}

func (f *flaky) Create(ctx context.Context, name string, data []byte) (checkpoint.ETag, error) {
	f.ops.Add(1)
	if f.down.Load() {
		return "", errDown
	}
	return f.Store.Create(ctx, name, data)
}

func (f *flaky) Update(ctx context.Context, name string, data []byte, match checkpoint.ETag) (checkpoint.ETag, error) {
	f.ops.Add(1)
	if f.down.Load() {
		return "", errDown
	}
	return f.Store.Update(ctx, name, data, match)
}

type member struct {
	s      *Shared
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs one instance's budget until the test ends (or stop is called).
func start(t *testing.T, st checkpoint.Store, id string, log *testutil.SyncBuffer) *member {
	t.Helper()
	s, err := New(Config{Store: st, Environment: "contoso.crm.dynamics.com", User: "app-1", Instance: id,
		Refresh: 20 * time.Millisecond, Heartbeat: 50 * time.Millisecond, Skew: 30 * time.Millisecond, Idle: time.Hour,
		Log: zerolog.New(log)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{s: s, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(m.done); _ = s.Run(ctx) }()
	t.Cleanup(m.stop)
	s.View(context.Background(), time.Time{}) // an active client: its first view waits for the first refresh
	return m
}

func (m *member) stop() {
	m.cancel()
	<-m.done
}

// eventually polls cond (every few ms, up to 10s): the tests assert what the view becomes, not when.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func instances(m *member) int {
	_, n := m.s.View(context.Background(), time.Time{})
	return n
}

func TestMembersShareAndDepartedShareReturns(t *testing.T) {
	st := checkpoint.NewMem()
	log := &testutil.SyncBuffer{}
	a, b, c := start(t, st, "a", log), start(t, st, "b", log), start(t, st, "c", log)
	for _, m := range []*member{a, b, c} {
		eventually(t, "3 live instances", func() bool { return instances(m) == 3 })
	}
	c.stop() // leaves: its membership is removed at once
	eventually(t, "2 after one left", func() bool { return instances(a) == 2 && instances(b) == 2 })

	// A killed instance does not leave; its lease (3 heartbeats) runs out. The ghost is such a
	// member, with a lease that ends soon.
	now := time.Now().UTC()
	for attempt := 0; ; attempt++ { // a and b write the document too: retry on conflict
		data, e, err := st.Get(context.Background(), a.s.Name())
		if err != nil {
			t.Fatal(err)
		}
		doc := strings.Replace(string(data), `"members":{`, `"members":{"ghost":"`+now.Add(150*time.Millisecond).Format(time.RFC3339Nano)+`",`, 1)
		_, err = st.Update(context.Background(), a.s.Name(), []byte(doc), e)
		if err == nil {
			break
		}
		if !errors.Is(err, checkpoint.ErrConflict) || attempt > 100 {
			t.Fatal(err)
		}
	}
	eventually(t, "the ghost counted", func() bool { return instances(a) == 3 })
	eventually(t, "the ghost's lease ran out", func() bool { return instances(a) == 2 && instances(b) == 2 })
}

func TestPauseIsSharedExtendedNeverShortened(t *testing.T) {
	st := checkpoint.NewMem()
	log := &testutil.SyncBuffer{}
	a, b := start(t, st, "a", log), start(t, st, "b", log)
	eventually(t, "both live", func() bool { return instances(a) == 2 && instances(b) == 2 })
	until := time.Now().Add(time.Hour).Round(0)
	a.s.Throttled(until)
	eventually(t, "b sees a's pause", func() bool {
		p, _ := b.s.View(context.Background(), time.Time{})
		return !p.IsZero()
	})
	if p, _ := b.s.View(context.Background(), time.Time{}); !p.Equal(until.Add(30 * time.Millisecond)) {
		t.Fatalf("b holds until %v, want a's pause plus the skew margin (%v)", p, until.Add(30*time.Millisecond))
	}
	if p, _ := a.s.View(context.Background(), time.Time{}); !p.Equal(until) {
		t.Fatalf("a's own pause %v, want exactly what it published", p)
	}
	b.s.Throttled(time.Now().Add(time.Minute)) // shorter: must not shorten the cluster's pause
	later := until.Add(time.Minute)
	b.s.Throttled(later)
	eventually(t, "a sees b's longer pause", func() bool {
		p, _ := a.s.View(context.Background(), time.Time{})
		return p.Equal(later.Add(30 * time.Millisecond))
	})
	data, _, _ := st.Get(context.Background(), a.s.Name())
	if !strings.Contains(string(data), `"pausedBy":"b"`) {
		t.Fatalf("document %s: want b's pause", data)
	}
}

// TestOutageFallsBackOnceAndRecovers: an unreadable store keeps the last known instance count (the
// conservative ceiling) and the pause, logs one warning for the whole outage, and recovers.
func TestOutageFallsBackOnceAndRecovers(t *testing.T) {
	mem := checkpoint.NewMem()
	log := &testutil.SyncBuffer{}
	f := &flaky{Store: mem}
	a := start(t, f, "a", log)
	others := []*member{start(t, mem, "b", &testutil.SyncBuffer{}), start(t, mem, "c", &testutil.SyncBuffer{})}
	eventually(t, "3 live", func() bool { return instances(a) == 3 })
	until := time.Now().Add(time.Hour)
	others[0].s.Throttled(until)
	eventually(t, "a sees the pause", func() bool { p, _ := a.s.View(context.Background(), time.Time{}); return p.After(until) })

	f.down.Store(true)
	before := f.reads.Load()
	eventually(t, "a reads during the outage", func() bool { return f.reads.Load() > before+5 })
	for _, m := range others {
		m.stop() // the others leave while a cannot see it
	}
	for range 5 {
		p, n := a.s.View(context.Background(), time.Time{})
		if n != 3 || !p.After(until) {
			t.Fatalf("during the outage: %d instances, pause %v; want the last known 3 and the pause", n, p)
		}
	}
	if st := a.s.Stats(); !st.Degraded {
		t.Fatal("not degraded during the outage")
	}
	if n := strings.Count(log.String(), "state unreachable"); n != 1 {
		t.Fatalf("%d outage warnings, want exactly 1:\n%s", n, log.String())
	}
	f.down.Store(false)
	eventually(t, "a recovers and sees it is alone", func() bool { return instances(a) == 1 })
	if n := strings.Count(log.String(), "readable again"); n != 1 {
		t.Fatalf("%d recovery lines, want 1:\n%s", n, log.String())
	}
	if a.s.Stats().Degraded {
		t.Fatal("still degraded")
	}
}

// TestIdleInstanceCostsNothingAndSyncsBeforeItsNextRequest: no storage operation while the client is
// quiet; its first View after the spell waits for a fresh read and so sees a pause published meanwhile.
func TestIdleInstanceCostsNothingAndSyncsBeforeItsNextRequest(t *testing.T) {
	mem := checkpoint.NewMem()
	f := &flaky{Store: mem}
	s, err := New(Config{Store: f, Environment: "env", User: "u", Instance: "a",
		Refresh: 20 * time.Millisecond, Heartbeat: 50 * time.Millisecond, Idle: 60 * time.Millisecond, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = s.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	s.View(context.Background(), time.Time{})
	eventually(t, "idle", func() bool {
		n := f.ops.Load()
		time.Sleep(100 * time.Millisecond)
		return f.ops.Load() == n
	})
	quiet := f.ops.Load()
	time.Sleep(200 * time.Millisecond)
	if n := f.ops.Load() - quiet; n != 0 {
		t.Fatalf("%d storage operations while idle, want 0", n)
	}
	other, _ := New(Config{Store: mem, Environment: "env", User: "u", Instance: "b", Log: zerolog.Nop()})
	other.Throttled(time.Now().Add(time.Hour))
	other.refresh(context.Background()) // b publishes while a is quiet
	if p, _ := s.View(context.Background(), time.Time{}); p.Before(time.Now().Add(59 * time.Minute)) {
		t.Fatalf("a's first view after the quiet spell holds until %v: it did not refresh first", p)
	}
}

// TestSteadyStateCost: an active instance makes about 1/Refresh reads and 1/Heartbeat writes.
func TestSteadyStateCost(t *testing.T) {
	f := &flaky{Store: checkpoint.NewMem()}
	s, err := New(Config{Store: f, Environment: "env", User: "u", Instance: "a",
		Refresh: 20 * time.Millisecond, Heartbeat: 100 * time.Millisecond, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		s.View(context.Background(), time.Time{})
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	st := s.Stats()
	// At most one read per tick (50 in a second) and one write per heartbeat (10), whatever the
	// machine's load; fewer when ticks are late.
	if st.Reads > 52 || st.Writes > 12 || st.Reads < 5 || st.Writes < 2 {
		t.Fatalf("reads %d, writes %d in 1s with Refresh 20ms, Heartbeat 100ms", st.Reads, st.Writes)
	}
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []Config{
		{Environment: "e", User: "u", Instance: "i"},
		{Store: checkpoint.NewMem(), User: "u", Instance: "i"},
		{Store: checkpoint.NewMem(), Environment: "e", User: "u", Instance: "i", Skew: -time.Second},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	s, err := New(Config{Store: checkpoint.NewMem(), Environment: "Contoso.crm.dynamics.com:443", User: "11111111-AAAA/x y", Instance: "i"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "budget/contoso.crm.dynamics.com%3a443/11111111-aaaa%2fx%20y.json"; s.Name() != want {
		t.Fatalf("name %q, want %q", s.Name(), want)
	}
}
