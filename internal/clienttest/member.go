// Package clienttest provides Parley SDK clients for end-to-end tests that
// record what they receive in one room and check, as it arrives, that seqs
// are consecutive within one epoch and that every resume recovered.
package clienttest

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

// Member is one SDK client that records what it receives in one room and
// checks, as it goes, that seqs arrive consecutively in one epoch, and that
// every resume recovered: in these tests any gap, duplicate, epoch change or
// recovered:false is a failure.
type Member struct {
	Name   string
	Room   string
	Client *client.Client

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every change
	seqs     []int64
	pos      protocol.Position // the last message received
	bodies   map[int64]string
	at       map[int64]time.Time
	joins    []protocol.Frame
	closes   []websocket.StatusCode // close code of each dropped connection (-1: none)
	problems []string
	done     chan struct{}
}

// Dial connects a Member through url as user name and joins room. The
// Member is closed when the test ends.
func Dial(t testing.TB, ctx context.Context, url, name, room string) *Member {
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
	m := &Member{
		Name: name, Room: room, Client: c,
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

func (m *Member) record() {
	defer close(m.done)
	for ev := range m.Client.Events() {
		now := time.Now()
		m.mu.Lock()
		switch {
		case ev.Message != nil && ev.Message.Room == m.Room:
			s, e := ev.Message.Seq, ev.Message.Epoch
			if len(m.seqs) > 0 { // the first one may start anywhere: Check looks at it
				switch m.pos.Place(e, s) {
				case protocol.Next:
				case protocol.NewEpoch:
					m.problems = append(m.problems, fmt.Sprintf("seq %d in epoch %s, earlier ones in %s", s, e, m.pos.Epoch))
				default: // a duplicate or a gap
					m.problems = append(m.problems, fmt.Sprintf("seq %d after %d", s, m.pos.Seq))
				}
			}
			m.pos = protocol.Position{Epoch: e, Seq: s}
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

// Node is the gateway that serves the member now.
func (m *Member) Node() string { return m.Client.Welcome().Node }

// Last is the highest seq received.
func (m *Member) Last() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.seqs) == 0 {
		return 0
	}
	return m.seqs[len(m.seqs)-1]
}

// waitFor waits until cond, read under the member's lock, holds.
func (m *Member) waitFor(ctx context.Context, what string, cond func() bool) error {
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
			return fmt.Errorf("%s: waiting for %s: %w", m.Name, what, ctx.Err())
		}
	}
}

// WaitSeq waits until the member has received seq s.
func (m *Member) WaitSeq(ctx context.Context, s int64) error {
	return m.waitFor(ctx, fmt.Sprintf("seq %d", s), func() bool {
		return len(m.seqs) > 0 && m.seqs[len(m.seqs)-1] >= s
	})
}

// Check fails the test if the member saw a gap, a duplicate or an error
// frame, or if it did not receive exactly seqs from..to.
func (m *Member) Check(t testing.TB, from, to int64) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.problems {
		t.Errorf("%s: %s", m.Name, p)
	}
	if int64(len(m.seqs)) != to-from+1 || m.seqs[0] != from {
		t.Errorf("%s received seqs %v, want %d..%d once each", m.Name, m.seqs, from, to)
	}
}

// LastClose is the close code of the member's last dropped connection.
func (m *Member) LastClose() (websocket.StatusCode, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.closes) == 0 {
		return 0, false
	}
	return m.closes[len(m.closes)-1], true
}

// LastJoin is the most recent joined frame.
func (m *Member) LastJoin() protocol.Frame {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.joins) == 0 {
		return protocol.Frame{}
	}
	return m.joins[len(m.joins)-1]
}

// WaitAll waits until every member has received seq s.
func WaitAll(t testing.TB, ctx context.Context, ms []*Member, s int64) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(ms))
	for _, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.WaitSeq(ctx, s); err != nil {
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

// Body is the body of the message with seq s, if received.
func (m *Member) Body(s int64) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bodies[s]
}

// At is when the message with seq s was received (zero if it was not).
func (m *Member) At(s int64) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.at[s]
}

// WaitMoved waits until the Member's connection has dropped at least once
// and it is served by a gateway other than from.
func (m *Member) WaitMoved(ctx context.Context, from string) error {
	return m.waitFor(ctx, "a reconnect away from "+from, func() bool {
		return len(m.closes) > 0 && m.Client.Welcome().Node != from
	})
}
