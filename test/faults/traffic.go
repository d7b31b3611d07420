package faults

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/parley-chat/parley/internal/loadgen"
	"github.com/parley-chat/parley/pkg/protocol"
)

// sendTimeout bounds one message's sending, retries included: longer than
// any fault plus its recovery.
const sendTimeout = 60 * time.Second

// TrafficOptions describe a stream of sends.
type TrafficOptions struct {
	// Name makes the message ids unique: <Name>-<user>-<n>.
	Name string
	// Senders send in turn, each to its first room.
	Senders []*Member
	// Rate is the messages per second over all senders.
	Rate float64
	// BodyBytes pads each body (a send timestamp) to this size. Default 64.
	BodyBytes int
}

// Traffic sends messages at a steady rate without waiting for acks: each
// send runs on its own goroutine, so a stalled cluster does not slow the
// offered rate. A send is retried, with its original id as a careful
// client does (docs/protocol.md, client duties), after an error frame
// that says "try again" (unavailable, internal, rate_limited); the SDK
// itself resends it after every reconnect.
type Traffic struct {
	opts    TrafficOptions
	checker *Checker
	stop    chan struct{}
	cancel  context.CancelFunc // ends the sends still retrying
	ctx     context.Context
	wg      sync.WaitGroup // the pacer and every send
	pacer   sync.WaitGroup
	once    sync.Once
}

// StartTraffic starts sending. Stop ends it; so does the end of the test,
// at the latest.
func (f *Fleet) StartTraffic(opts TrafficOptions) *Traffic {
	if opts.BodyBytes == 0 {
		opts.BodyBytes = 64
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr := &Traffic{opts: opts, checker: f.Checker, stop: make(chan struct{}), ctx: ctx, cancel: cancel}
	tr.wg.Add(1)
	tr.pacer.Add(1)
	go tr.pace()
	f.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tr.Stop(ctx)
	})
	return tr
}

func (tr *Traffic) pace() {
	defer tr.wg.Done()
	defer tr.pacer.Done()
	tick := time.NewTicker(time.Duration(float64(time.Second) / tr.opts.Rate))
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-tr.stop:
			return
		case <-tick.C:
		}
		m := tr.opts.Senders[n%len(tr.opts.Senders)]
		id := fmt.Sprintf("%s-%s-%d", tr.opts.Name, m.Name, n)
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			tr.checker.send(tr.ctx, m, m.Rooms[0], id, tr.opts.BodyBytes)
		}()
	}
}

// Stop stops sending and waits for the sends in flight: until each is
// acknowledged or has failed for good, or ctx ends (then they are given
// up). Calls after the first return at once.
func (tr *Traffic) Stop(ctx context.Context) {
	tr.once.Do(func() { tr.stopOnce(ctx) })
}

func (tr *Traffic) stopOnce(ctx context.Context) {
	close(tr.stop)
	tr.pacer.Wait()
	done := make(chan struct{})
	go func() { tr.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		tr.cancel()
		<-done
	}
	tr.cancel()
}

// send sends one message until it is acknowledged, retrying retryable
// error frames with the same id, and records the outcome in the ledger.
func (c *Checker) send(ctx context.Context, m *Member, room, id string, bodyBytes int) {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	start := time.Now()
	body := loadgen.EncodeBody(start, bodyBytes)
	rec := c.ledger.begin(room, m.Name, id, start)
	backoff := 200 * time.Millisecond
	for {
		ack, err := m.Client.SendID(ctx, room, id, body)
		if err == nil {
			c.acked(rec, ack)
			return
		}
		code := errCode(err)
		c.ledger.failedAttempt(rec, code)
		switch code {
		case protocol.CodeUnavailable, protocol.CodeInternal, protocol.CodeRateLimited:
			if sleepCtx(ctx, backoff) {
				backoff = min(backoff*2, 2*time.Second)
				continue
			}
		}
		c.ledger.giveUp(rec, err)
		return
	}
}
