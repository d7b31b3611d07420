package redis

import (
	"context"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/pkg/broker"
)

// Publishes share round trips to Redis. At most Config.PublishPipelines
// pipelines are in flight at once; each holds a token of b.slots.
//
//   - Idle: a Publish that finds a free slot and nothing queued sends its own
//     script call at once, from its own goroutine, as a pipeline of one. A
//     single sender pays no hand-off to another goroutine and no waiting.
//   - Busy: otherwise it queues a publishReq on b.pubq. Each of the
//     PublishPipelines pipeliner goroutines blocks for one request, waits for
//     a free slot, takes whatever else is already queued without waiting (up
//     to Config.PublishBatch), and sends the lot as one pipeline.
//
// Either way every message is its own EVALSHA of the publish script: one
// atomic script call per message, never several messages in one call.

// publishReq is one Publish waiting for its script call.
type publishReq struct {
	ctx  context.Context // the caller's: ended before sending, the request is not sent
	keys []string
	args []any
	res  chan publishResult // buffered 1; answered exactly once
}

// publishResult is the reply of one script call, or its error already
// mapped for the caller (unavailable(...) or broker.ErrClosed).
type publishResult struct {
	vals []any
	err  error
}

func (r *publishReq) answer(vals []any, err error) { r.res <- publishResult{vals: vals, err: err} }

// enqueue runs req's script call and returns its reply: at once from the
// calling goroutine when a pipeline is free and nothing is queued, otherwise
// through the queue. It returns early when ctx ends or the broker closes.
func (b *Broker) enqueue(ctx context.Context, req *publishReq) ([]any, error) {
	if len(b.pubq) == 0 {
		select {
		case b.slots <- struct{}{}:
			b.sendAlone(ctx, req)
			<-b.slots
			r := <-req.res
			return r.vals, r.err
		default:
		}
	}
	select {
	case b.pubq <- req:
	case <-ctx.Done():
		return nil, unavailable("publish", ctx.Err())
	case <-b.ctx.Done():
		return nil, broker.ErrClosed
	}
	select {
	case r := <-req.res:
		return r.vals, r.err
	case <-ctx.Done():
		// Possibly sent: the idempotency key makes a resend safe.
		return nil, unavailable("publish", ctx.Err())
	case <-b.pubDone:
		// Every pipeliner has stopped and the queue is drained. A request
		// that slipped in after the drain was never sent; one answered
		// before it keeps its answer.
		select {
		case r := <-req.res:
			return r.vals, r.err
		default:
			return nil, broker.ErrClosed
		}
	}
}

// sendAlone sends req as a pipeline of one from the caller's goroutine,
// holding a slot. The round trip ends when the caller's ctx ends or the
// broker closes, whichever comes first.
func (b *Broker) sendAlone(ctx context.Context, req *publishReq) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	b.sendBatch(ctx, []*publishReq{req})
	stop()
	cancel()
}

// pipeliner is one of the Config.PublishPipelines goroutines that carry
// queued publishes to Redis. It stops when the broker closes.
func (b *Broker) pipeliner() {
	defer b.wg.Done()
	batch := make([]*publishReq, 0, b.cfg.PublishBatch)
	for {
		select {
		case <-b.ctx.Done():
			return
		case r := <-b.pubq:
			batch = append(batch, r)
		}
		select {
		case b.slots <- struct{}{}:
		case <-b.ctx.Done():
			batch[0].answer(nil, broker.ErrClosed)
			return
		}
	more: // take what is already queued, never wait for more
		for len(batch) < b.cfg.PublishBatch {
			select {
			case r := <-b.pubq:
				batch = append(batch, r)
			default:
				break more
			}
		}
		b.sendBatch(b.ctx, batch)
		<-b.slots
		clear(batch) // let answered requests go
		batch = batch[:0]
	}
}

// sendBatch sends the requests of batch whose callers are still waiting as
// one pipeline on ctx and answers every request of batch.
func (b *Broker) sendBatch(ctx context.Context, batch []*publishReq) {
	if b.ctx.Err() != nil {
		for _, r := range batch {
			r.answer(nil, broker.ErrClosed)
		}
		return
	}
	live := batch[:0:0]
	if len(batch) > 1 {
		live = make([]*publishReq, 0, len(batch))
	}
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.answer(nil, unavailable("publish", err))
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	cmds := b.evalPipeline(ctx, live)

	// An empty script cache (Redis restarted or SCRIPT FLUSH) answers
	// NOSCRIPT without running anything: load the script once and send
	// those commands again.
	var again []int
	for i, c := range cmds {
		if goredis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		b.cfg.Logger.Debug("redis: publish script not in the script cache; loading it", "commands", len(again))
		if err := publishScript.Load(ctx, b.client).Err(); err != nil {
			for _, i := range again {
				cmds[i].SetErr(fmt.Errorf("load publish script: %w", err))
			}
		} else {
			retry := make([]*publishReq, len(again))
			for j, i := range again {
				retry[j] = live[i]
			}
			for j, c := range b.evalPipeline(ctx, retry) {
				cmds[again[j]] = c
			}
		}
	}

	var transport error // a failure of the connection rather than a reply
	for i, r := range live {
		err := cmds[i].Err()
		switch {
		case err == nil:
			vals, err := cmds[i].Slice()
			if err != nil {
				err = fmt.Errorf("redis publish: %w", err)
			}
			r.answer(vals, err)
		case b.ctx.Err() != nil:
			r.answer(nil, fmt.Errorf("redis publish: %w: %w", broker.ErrClosed, err))
		default:
			mapped := unavailable("publish", err)
			var rerr goredis.Error
			if transport == nil && ctx.Err() == nil && !errors.As(err, &rerr) && errors.Is(mapped, broker.ErrUnavailable) {
				transport = err
			}
			r.answer(nil, mapped)
		}
	}
	if transport != nil {
		b.failQueued(transport)
		b.bus.trouble() // on a Cluster: a failover may have moved the slot
	}
}

// evalPipeline sends one EVALSHA of the publish script per request as one
// pipeline on ctx and returns the commands, each carrying its own reply or
// error.
func (b *Broker) evalPipeline(ctx context.Context, reqs []*publishReq) []*goredis.Cmd {
	pipe := b.client.Pipeline()
	cmds := make([]*goredis.Cmd, len(reqs))
	for i, r := range reqs {
		cmds[i] = pipe.EvalSha(ctx, publishScript.Hash(), r.keys, r.args...)
	}
	_, _ = pipe.Exec(ctx) // its error is also on the commands
	return cmds
}

// failQueued answers what is queued right now with the connection failure
// that just failed a pipeline (go-redis has already retried it), without
// sending it: while Redis is unreachable a send fails in about the dial
// timeout instead of waiting behind batches that fail one after another.
// It takes at most one queue's worth, so new arrivals are tried afresh.
func (b *Broker) failQueued(cause error) {
	for range cap(b.pubq) {
		select {
		case r := <-b.pubq:
			r.answer(nil, unavailable("publish", fmt.Errorf("not sent after a failed pipeline: %w", cause)))
		default:
			return
		}
	}
}

// closeQueue runs once, after b.ctx is cancelled and every pipeliner has
// stopped: it waits for the pipelines sent from callers' goroutines to end
// (and keeps every slot, so no more start), answers every request still
// queued with broker.ErrClosed, and tells waiting callers that nothing more
// will be answered.
func (b *Broker) closeQueue() {
	b.closeOnce.Do(func() {
		for range cap(b.slots) {
			b.slots <- struct{}{}
		}
		for {
			select {
			case r := <-b.pubq:
				r.answer(nil, broker.ErrClosed)
			default:
				close(b.pubDone)
				return
			}
		}
	})
}
