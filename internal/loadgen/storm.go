package loadgen

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/protocol"
)

// StormResult is what Storm measured. JSON field names are stable.
type StormResult struct {
	Conns           int     `json:"conns"`
	Rooms           int     `json:"rooms"`
	MessagesPerRoom int     `json:"messages_per_room"` // published while the connections were away
	PublishSeconds  float64 `json:"publish_seconds"`   // time to publish them (paced under the rate limit)

	Resumed        int     `json:"resumed"`                // connections that got their joined
	ResumeErrors   int     `json:"resume_errors"`          // connections that could not reconnect or join
	ResumeError    string  `json:"resume_error,omitempty"` // the first such error
	ResumeSeconds  float64 `json:"resume_seconds"`         // from the storm's start to the last joined
	ResumeRate     float64 `json:"resume_rate"`            // resumed / resume_seconds
	CaughtUp       int     `json:"caught_up"`              // connections that received every missed message
	CatchUpSeconds float64 `json:"catch_up_seconds"`       // from the storm's start to the last catch-up

	Gaps         int64 `json:"gaps"`
	Duplicates   int64 `json:"duplicates"`
	NotRecovered int   `json:"not_recovered"` // joined frames with recovered false
}

// OK reports whether every connection resumed and caught up exactly once.
func (s *StormResult) OK() bool {
	return s.CaughtUp == s.Conns && s.Gaps == 0 && s.Duplicates == 0 && s.NotRecovered == 0
}

// Problem returns one line saying what OK found wrong ("" when OK).
func (s *StormResult) Problem() string {
	if s.OK() {
		return ""
	}
	return fmt.Sprintf("%d of %d caught up, %d gaps, %d duplicates, %d not recovered", s.CaughtUp, s.Conns, s.Gaps, s.Duplicates, s.NotRecovered)
}

// Storm runs a resume storm as described in the package documentation,
// with Config.Conns connections in Config.Rooms fresh rooms and
// Config.StormMessages messages per room published while they are away.
func Storm(ctx context.Context, cfg Config) (*StormResult, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	id := runID()
	rooms := make([]string, cfg.Rooms)
	roomIndex := make(map[string]int, cfg.Rooms)
	for r := range rooms {
		rooms[r] = fmt.Sprintf("%s-storm-%s-%d", cfg.RoomPrefix, id, r)
		roomIndex[rooms[r]] = r
	}
	d := newDialer(&cfg)
	defer d.close()
	res := &StormResult{Conns: cfg.Conns, Rooms: cfg.Rooms, MessagesPerRoom: cfg.StormMessages}

	// 1. Join, remember the position, leave.
	since := make([]protocol.Position, cfg.Conns)
	conns, failed, first, _, err := connectAll(ctx, cfg.Conns, cfg.ConnectConcurrency, func(ctx context.Context, i int) (*wsConn, error) {
		w, j, err := d.connect(ctx, i, fmt.Sprintf("%s-%d", cfg.UserPrefix, i), rooms[i%cfg.Rooms], nil)
		if err != nil {
			return nil, err
		}
		since[i] = protocol.Position{Epoch: j.Epoch, Seq: j.Seq}
		return w, nil
	})
	if err != nil {
		return nil, err
	}
	closeAll(conns, cfg.CloseTimeout)
	if failed > 0 {
		return nil, fmt.Errorf("storm: %d of %d connections could not join: %w", failed, cfg.Conns, first)
	}

	// 2. Publish StormMessages to every room while they are away.
	heads, took, err := publishBatch(ctx, d, &cfg, rooms, roomIndex)
	if err != nil {
		return nil, err
	}
	res.PublishSeconds = took.Seconds()

	// 3. Everyone reconnects at once and resumes.
	stormCtx, cancel := context.WithTimeout(ctx, cfg.StormTimeout)
	defer cancel()
	start := time.Now()
	var (
		mu                sync.Mutex
		lastJoin, lastCUS time.Duration
		gaps, dups        atomic.Int64
		wg                sync.WaitGroup
	)
	for i := range cfg.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			room := i % cfg.Rooms
			s := since[i]
			w, j, err := d.connect(stormCtx, i, fmt.Sprintf("%s-%d", cfg.UserPrefix, i), rooms[room], &s)
			if err != nil {
				mu.Lock()
				res.ResumeErrors++
				if res.ResumeError == "" {
					res.ResumeError = err.Error()
				}
				mu.Unlock()
				return
			}
			defer w.c.Close(websocket.StatusNormalClosure, "bench done")
			joinedAt := time.Since(start)
			var chk SeqChecker
			chk.Joined(s.Epoch, s.Seq) // count from where this connection left
			mu.Lock()
			res.Resumed++
			lastJoin = max(lastJoin, joinedAt)
			if j.Recovered == nil || !*j.Recovered {
				res.NotRecovered++
			}
			mu.Unlock()
			for chk.Last < heads[room] {
				f, err := w.read(stormCtx)
				if err != nil {
					break
				}
				if f.Type == protocol.TypeMessage && f.Room == rooms[room] {
					chk.Message(f.Epoch, f.Seq)
				}
			}
			gaps.Add(chk.Gaps)
			dups.Add(chk.Duplicates)
			if chk.Last >= heads[room] {
				at := time.Since(start)
				mu.Lock()
				res.CaughtUp++
				lastCUS = max(lastCUS, at)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.ResumeSeconds = lastJoin.Seconds()
	res.ResumeRate = float64(res.Resumed) / max(lastJoin.Seconds(), 1e-9)
	res.CatchUpSeconds = lastCUS.Seconds()
	res.Gaps, res.Duplicates = gaps.Load(), dups.Load()
	return res, nil
}

// publishBatch publishes cfg.StormMessages messages to every room, one
// publisher connection per room (at most 256, each serving rooms p, p+P,
// ...), each paced at cfg.PublisherRate, and waits for every ack. It returns
// each room's last seq.
func publishBatch(ctx context.Context, d *dialer, cfg *Config, rooms []string, roomIndex map[string]int) ([]int64, time.Duration, error) {
	np := min(len(rooms), 256)
	start := time.Now()
	pubs, failed, first, _, err := connectAll(ctx, np, cfg.ConnectConcurrency, func(ctx context.Context, i int) (*wsConn, error) {
		w, _, err := d.connect(ctx, cfg.Conns+i, fmt.Sprintf("%s-pub-%d", cfg.UserPrefix, i), "", nil)
		return w, err
	})
	if err == nil && failed > 0 {
		err = fmt.Errorf("storm: %d of %d publishers could not connect: %w", failed, np, first)
	}
	if err != nil {
		closeAll(pubs, cfg.CloseTimeout)
		return nil, 0, err
	}
	defer closeAll(pubs, cfg.CloseTimeout)
	perPub := (len(rooms) + np - 1) / np * cfg.StormMessages
	budget := time.Duration(float64(perPub)/cfg.PublisherRate*float64(time.Second)) + cfg.Drain
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	heads := make([]int64, len(rooms))
	errs := make([]error, np)
	var wg sync.WaitGroup
	for p, w := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[p] = publishAcked(ctx, w, p, np, cfg, rooms, roomIndex, heads)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, 0, fmt.Errorf("storm: publishing: %w", err)
		}
	}
	return heads, time.Since(start), nil
}

// publishAcked sends cfg.StormMessages to each of publisher p's rooms, paced,
// then reads until every send is acknowledged. heads[r] is written only by
// the publisher that owns room r.
func publishAcked(ctx context.Context, w *wsConn, p, np int, cfg *Config, rooms []string, roomIndex map[string]int, heads []int64) error {
	var mine []int
	for r := p; r < len(rooms); r += np {
		mine = append(mine, r)
	}
	total := len(mine) * cfg.StormMessages
	acks := make(chan error, 1)
	go func() { // owned: ends when ctx ends or every ack is in; waited for below
		n := 0
		for n < total {
			f, err := w.read(ctx)
			if err != nil {
				acks <- err
				return
			}
			switch f.Type {
			case protocol.TypeAck:
				n++
				if r, ok := roomIndex[f.Room]; ok {
					heads[r] = max(heads[r], f.Seq)
				}
			case protocol.TypeError:
				acks <- fmt.Errorf("%s: %s", f.Code, f.Message)
				return
			}
		}
		acks <- nil
	}()
	tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.PublisherRate))
	defer tick.Stop()
	var werr error
send:
	for k := range total {
		r := mine[k%len(mine)]
		f := &protocol.Frame{Type: protocol.TypeSend, Ref: "s", Room: rooms[r], ID: fmt.Sprintf("storm%d-%d", p, k), Body: EncodeBody(time.Now(), cfg.BodyBytes)}
		if werr = w.write(ctx, f); werr != nil {
			break
		}
		select {
		case <-ctx.Done():
			werr = ctx.Err()
			break send
		case <-tick.C:
		}
	}
	if werr != nil {
		_ = w.c.CloseNow() // unblocks the reader
		<-acks
		return werr
	}
	return <-acks
}
