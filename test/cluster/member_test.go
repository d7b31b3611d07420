package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/client"
	"github.com/parley-chat/parley/pkg/protocol"
)

// member is one SDK client that records what it receives in one room and
// checks, as it goes, that seqs arrive consecutively in one epoch, and that
// every resume recovered: in these tests any gap, duplicate, epoch change or
// recovered:false is a failure.
type member struct {
	name string
	room string
	c    *client.Client

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every change
	seqs     []int64
	epoch    string
	bodies   map[int64]string
	at       map[int64]time.Time
	joins    []protocol.Frame
	closes   []websocket.StatusCode // close code of each dropped connection (-1: none)
	problems []string
	done     chan struct{}
}

func dialMember(t *testing.T, ctx context.Context, url, name, room string) *member {
	t.Helper()
	c, err := client.Dial(ctx, client.Config{
		URL:        url,
		User:       name,
		Device:     "test",
		MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond,
		AckTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatalf("dial %s: %v", name, err)
	}
	m := &member{
		name: name, room: room, c: c,
		changed: make(chan struct{}),
		bodies:  map[int64]string{},
		at:      map[int64]time.Time{},
		done:    make(chan struct{}),
	}
	go m.record()
	t.Cleanup(func() {
		_ = c.Close()
		<-m.done
	})
	if _, err := c.Join(ctx, room, nil); err != nil {
		t.Fatalf("%s join %s: %v", name, room, err)
	}
	return m
}

func (m *member) record() {
	defer close(m.done)
	for ev := range m.c.Events() {
		now := time.Now()
		m.mu.Lock()
		switch {
		case ev.Message != nil && ev.Message.Room == m.room:
			s := ev.Message.Seq
			if n := len(m.seqs); n > 0 && s != m.seqs[n-1]+1 {
				m.problems = append(m.problems, fmt.Sprintf("seq %d after %d", s, m.seqs[n-1]))
			}
			if m.epoch != "" && ev.Message.Epoch != m.epoch {
				m.problems = append(m.problems, fmt.Sprintf("seq %d in epoch %s, earlier ones in %s", s, ev.Message.Epoch, m.epoch))
			}
			m.epoch = ev.Message.Epoch
			m.seqs = append(m.seqs, s)
			m.bodies[s] = ev.Message.Body
			m.at[s] = now
		case ev.Joined != nil:
			m.joins = append(m.joins, *ev.Joined)
			if r := ev.Joined.Recovered; r != nil && !*r {
				m.problems = append(m.problems, fmt.Sprintf("joined with recovered:false: %+v", *ev.Joined))
			}
		case ev.Error != nil:
			m.problems = append(m.problems, fmt.Sprintf("error frame %s: %s", ev.Error.Code, ev.Error.Message))
		case ev.State == client.StateReconnecting:
			m.closes = append(m.closes, websocket.CloseStatus(ev.Err))
		}
		close(m.changed)
		m.changed = make(chan struct{})
		m.mu.Unlock()
	}
}

// node is the gateway that serves the member now.
func (m *member) node() string { return m.c.Welcome().Node }

// last is the highest seq received.
func (m *member) last() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.seqs) == 0 {
		return 0
	}
	return m.seqs[len(m.seqs)-1]
}

// waitFor waits until cond, read under the member's lock, holds.
func (m *member) waitFor(ctx context.Context, what string, cond func() bool) error {
	for {
		m.mu.Lock()
		ok, ch := cond(), m.changed
		m.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%s: waiting for %s: %w", m.name, what, ctx.Err())
		}
	}
}

// waitSeq waits until the member has received seq s.
func (m *member) waitSeq(ctx context.Context, s int64) error {
	return m.waitFor(ctx, fmt.Sprintf("seq %d", s), func() bool {
		return len(m.seqs) > 0 && m.seqs[len(m.seqs)-1] >= s
	})
}

// check fails the test if the member saw a gap, a duplicate or an error
// frame, or if it did not receive exactly seqs from..to.
func (m *member) check(t *testing.T, from, to int64) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.problems {
		t.Errorf("%s: %s", m.name, p)
	}
	if int64(len(m.seqs)) != to-from+1 || m.seqs[0] != from {
		t.Errorf("%s received seqs %v, want %d..%d once each", m.name, m.seqs, from, to)
	}
}

// lastClose is the close code of the member's last dropped connection.
func (m *member) lastClose() (websocket.StatusCode, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.closes) == 0 {
		return 0, false
	}
	return m.closes[len(m.closes)-1], true
}

// lastJoin is the most recent joined frame.
func (m *member) lastJoin() protocol.Frame {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.joins) == 0 {
		return protocol.Frame{}
	}
	return m.joins[len(m.joins)-1]
}

// waitAll waits until every member has received seq s.
func waitAll(t *testing.T, ctx context.Context, ms []*member, s int64) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(ms))
	for _, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.waitSeq(ctx, s); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
