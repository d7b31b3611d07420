package faults

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/loadgen"
	"github.com/parley-chat/parley/pkg/client"
	"github.com/parley-chat/parley/pkg/protocol"
)

// Close classes of a dropped connection, as the table counts them.
const (
	closeRestart  = "1012"     // the gateway drains
	closeTryLater = "1013"     // slow consumer, or a hole it could not fill
	closePolicy   = "1008"     // flood, auth
	closeInternal = "1011"     // a bug in the gateway
	closeAbnormal = "abnormal" // no close frame: a killed gateway, a cut by haproxy or a proxy
	closeTimeout  = "timeout"  // the SDK dropped it: a request unanswered for AckTimeout
	closeOther    = "other"
)

// serverCloses are the classes that mean the server side (a gateway or
// haproxy) ended the connection.
var serverCloses = []string{closeRestart, closeTryLater, closePolicy, closeInternal, closeAbnormal, closeOther}

// closeEvent is one dropped connection of a Member.
type closeEvent struct {
	at    time.Time
	class string
	node  string // the gateway that served it
	err   string
}

// latSample is the send-to-receive latency of one message at one Member.
type latSample struct {
	sent time.Time // when the sender first tried to send it
	from string    // the sending user
	d    time.Duration
}

// Member is one SDK client (pkg/client: it reconnects, resumes with since
// and resends unacknowledged sends with their ids) joined to one or more
// rooms. Its event goroutine feeds the Checker's per-room stream check
// (stream.go) and records closes, resumes, dial failures, error frames and
// latencies.
type Member struct {
	Name   string
	Rooms  []string
	Client *client.Client

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every change
	streams  map[string]*stream
	closes   []closeEvent
	down     time.Time     // when the connection last dropped (zero: connected)
	downCode string        // the class of that drop
	resumes  []resumeEvent // drops followed by a resumed connection
	dialFail map[int]int   // failed reconnect attempts by HTTP status (0: no HTTP answer)
	errs     map[string]int
	refused  map[string]int // requests the server refused for now and the SDK resent, by code
	lat      []latSample
	fatal    error
	node     string // the node at the last mark (Fleet.markNodes)
	done     chan struct{}
}

// resumeEvent is one reconnect: how the connection dropped and how long it
// took until it was resumed (every room re-joined).
type resumeEvent struct {
	at    time.Time // the drop
	class string
	took  time.Duration
}

// memberConfig is the SDK configuration every Member uses: the SDK's
// defaults (AckTimeout 10 s, MinBackoff 100 ms), except a MaxBackoff of 2 s
// so that the suite's recoveries are not dominated by backoff.
func memberConfig(url, name string, buffer int, m *Member) client.Config {
	return client.Config{
		URL:        url,
		User:       name,
		Device:     "faults",
		MaxBackoff: 2 * time.Second,
		Buffer:     buffer,
		Logger:     slog.New(&dialLog{m: m}),
	}
}

// dialMember connects a Member and joins rooms from their first message
// (since seq 0), so that its stream can be checked from seq 1. Dial and
// join are retried until ctx ends: a fleet may be dialed while haproxy
// still marks a gateway up.
func dialMember(ctx context.Context, url, name string, rooms []string, buffer int) (*Member, error) {
	m := &Member{
		Name:     name,
		Rooms:    rooms,
		changed:  make(chan struct{}),
		streams:  make(map[string]*stream),
		dialFail: make(map[int]int),
		errs:     make(map[string]int),
		refused:  make(map[string]int),
		done:     make(chan struct{}),
	}
	var err error
	for attempt := 0; ; attempt++ {
		if m.Client, err = client.Dial(ctx, memberConfig(url, name, buffer, m)); err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dial %s: %w", name, err)
		}
		if !sleepCtx(ctx, time.Duration(50*(attempt+1))*time.Millisecond) {
			return nil, fmt.Errorf("dial %s: %w", name, err)
		}
	}
	m.mu.Lock()
	for _, r := range rooms {
		m.streams[r] = &stream{}
	}
	m.mu.Unlock()
	go m.record()
	for _, r := range rooms {
		if _, err := m.Client.Join(ctx, r, &protocol.Since{}); err != nil {
			m.Close()
			return nil, fmt.Errorf("%s join %s: %w", name, r, err)
		}
	}
	return m, nil
}

// Close closes the client and waits for the event goroutine.
func (m *Member) Close() {
	_ = m.Client.Close()
	<-m.done
}

// Node is the gateway serving the Member now (or last).
func (m *Member) Node() string { return m.Client.Welcome().Node }

// record is the Member's event goroutine; it ends when the client's Events
// channel closes.
func (m *Member) record() {
	defer close(m.done)
	for ev := range m.Client.Events() {
		now := time.Now()
		m.mu.Lock()
		switch {
		case ev.Message != nil:
			if s := m.streams[ev.Message.Room]; s != nil {
				s.message(now, ev.Message)
				if sent, err := loadgen.DecodeBody(ev.Message.Body); err == nil {
					m.lat = append(m.lat, latSample{sent: sent, from: ev.Message.From, d: now.Sub(sent)})
				}
			}
		case ev.Joined != nil:
			if s := m.streams[ev.Joined.Room]; s != nil {
				s.joined(now, ev.Joined)
			}
		case ev.Error != nil:
			m.errs[ev.Error.Code]++
		case ev.Retry != nil:
			code := "?"
			if ev.Retry.Err != nil {
				code = ev.Retry.Err.Code
			}
			m.refused[ev.Retry.Request.Type+" "+code]++
		case ev.State == client.StateReconnecting:
			class := classify(ev.Err)
			m.closes = append(m.closes, closeEvent{at: now, class: class, node: m.Client.Welcome().Node, err: errText(ev.Err)})
			if m.down.IsZero() {
				m.down, m.downCode = now, class
			}
		case ev.State == client.StateConnected:
			if !m.down.IsZero() {
				m.resumes = append(m.resumes, resumeEvent{at: m.down, class: m.downCode, took: now.Sub(m.down)})
				m.down = time.Time{}
			}
		case ev.State == client.StateClosed:
			if ev.Err != nil {
				m.fatal = ev.Err
			}
		}
		m.checkTargets(now)
		close(m.changed)
		m.changed = make(chan struct{})
		m.mu.Unlock()
	}
}

// classify names why a connection dropped.
func classify(err error) string {
	if err == nil {
		return closeOther
	}
	switch code := websocket.CloseStatus(err); code {
	case -1:
	case websocket.StatusServiceRestart:
		return closeRestart
	case websocket.StatusTryAgainLater:
		return closeTryLater
	case websocket.StatusPolicyViolation:
		return closePolicy
	case websocket.StatusInternalError:
		return closeInternal
	default:
		return strconv.Itoa(int(code))
	}
	if strings.Contains(err.Error(), "no reply within AckTimeout") {
		return closeTimeout
	}
	return closeAbnormal
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// waitFor waits until cond, called under the Member's lock, holds.
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

// setTarget gives the Member's stream of room the position to reach for
// "caught up after the fault": the Member holds it and is connected.
func (m *Member) setTarget(room string, p protocol.Position, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.streams[room]; s != nil {
		s.target, s.reached = &p, time.Time{}
	}
	m.checkTargets(now)
	close(m.changed)
	m.changed = make(chan struct{})
}

// checkTargets notes the streams that reached their targets. Called with
// m.mu held.
func (m *Member) checkTargets(now time.Time) {
	for _, s := range m.streams {
		s.checkTarget(now, m.down.IsZero())
	}
}

// waitAt waits until the Member is connected and holds position p of
// room.
func (m *Member) waitAt(ctx context.Context, room string, p protocol.Position) error {
	return m.waitFor(ctx, fmt.Sprintf("%s at %s/%d, connected", room, p.Epoch, p.Seq), func() bool {
		s := m.streams[room]
		return s != nil && s.at(p) && m.down.IsZero()
	})
}

// dialLog is the slog.Handler of a Member's SDK client: it counts failed
// reconnect attempts by the HTTP status the handshake got (503 from haproxy
// or a draining gateway, 0 when there was no HTTP answer).
type dialLog struct{ m *Member }

var statusRE = regexp.MustCompile(`but got (\d{3})`)

func (h *dialLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *dialLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "parley client: reconnect failed" {
		return nil
	}
	status := 0
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			if mm := statusRE.FindStringSubmatch(a.Value.String()); mm != nil {
				status, _ = strconv.Atoi(mm[1])
			}
			return false
		}
		return true
	})
	h.m.mu.Lock()
	h.m.dialFail[status]++
	h.m.mu.Unlock()
	return nil
}

func (h *dialLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *dialLog) WithGroup(string) slog.Handler      { return h }

// sleepCtx waits d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// errCode is the protocol error code of err, or "".
func errCode(err error) string {
	var perr *protocol.Error
	if errors.As(err, &perr) {
		return perr.Code
	}
	return ""
}

// faultNode is the gateway that served the Member when the fault started.
func (m *Member) faultNode() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.node
}
