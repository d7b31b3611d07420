package faults

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// FleetOptions describe the clients of a scenario.
type FleetOptions struct {
	// Name prefixes the rooms and users, unique per scenario.
	Name string
	// Clients is the number of Members; member i joins room i % Rooms.
	Clients int
	// Rooms is the number of rooms.
	Rooms int
	// URL is where the Members connect (haproxy, or a proxy in front).
	URL string
	// Buffer is each SDK client's Events capacity. Default 256.
	Buffer int
	// Concurrency bounds the dials in flight. Default 32.
	Concurrency int
}

// Fleet is a scenario's Members, its rooms and its Checker.
type Fleet struct {
	t       testing.TB
	opts    FleetOptions
	Rooms   []string
	Members []*Member
	Checker *Checker
}

// StartFleet dials opts.Clients Members, each joined to its room, and
// returns when every one has joined. The Members are closed when t ends.
func StartFleet(t testing.TB, ctx context.Context, c *Cluster, opts FleetOptions) *Fleet {
	t.Helper()
	if opts.Buffer == 0 {
		opts.Buffer = 256
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 32
	}
	if opts.URL == "" {
		opts.URL = c.URL
	}
	f := &Fleet{t: t, opts: opts}
	for r := range opts.Rooms {
		f.Rooms = append(f.Rooms, fmt.Sprintf("%s-%d", opts.Name, r))
	}
	f.Checker = newChecker(c, f)
	ms, err := f.dial(ctx, opts.Clients, func(i int) (string, []string) {
		return fmt.Sprintf("%s-u%d", opts.Name, i), []string{f.Rooms[i%len(f.Rooms)]}
	})
	f.Members = ms
	t.Cleanup(f.close)
	if err != nil {
		t.Fatalf("fleet %s: %v", opts.Name, err)
	}
	return f
}

// Add dials n more Members named name-0.. joined to rooms and adds them to
// the fleet (and to its checks).
func (f *Fleet) Add(ctx context.Context, name string, n int, rooms []string) ([]*Member, error) {
	ms, err := f.dial(ctx, n, func(i int) (string, []string) {
		return fmt.Sprintf("%s-%d", name, i), rooms
	})
	f.Members = append(f.Members, ms...)
	return ms, err
}

// dial connects n Members, at most opts.Concurrency at a time.
func (f *Fleet) dial(ctx context.Context, n int, who func(i int) (string, []string)) ([]*Member, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second+time.Duration(n)*10*time.Millisecond)
	defer cancel()
	out := make([]*Member, n)
	errs := make([]error, n)
	sem := make(chan struct{}, f.opts.Concurrency)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			name, rooms := who(i)
			out[i], errs[i] = dialMember(ctx, f.opts.URL, name, rooms, f.opts.Buffer)
		}()
	}
	wg.Wait()
	var ok []*Member
	var first error
	for i, m := range out {
		if m != nil {
			ok = append(ok, m)
		} else if first == nil {
			first = errs[i]
		}
	}
	return ok, first
}

// close closes every Member, many at a time.
func (f *Fleet) close() {
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, m := range f.Members {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			m.Close()
		}()
	}
	wg.Wait()
}

// On returns the Members served by node now.
func (f *Fleet) On(node string) []*Member {
	var out []*Member
	for _, m := range f.Members {
		if m.Node() == node {
			out = append(out, m)
		}
	}
	return out
}

// NotOn returns the Members not served by node now.
func (f *Fleet) NotOn(node string) []*Member {
	var out []*Member
	for _, m := range f.Members {
		if m.Node() != node {
			out = append(out, m)
		}
	}
	return out
}

// Steady lets traffic run for d (multiplied under the soak).
func (f *Fleet) Steady(ctx context.Context, d time.Duration) {
	f.t.Helper()
	if !sleepCtx(ctx, phase(d)) {
		f.t.Fatalf("steady phase cut short: %v", ctx.Err())
	}
}
