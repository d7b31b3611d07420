package redis_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	goredis "github.com/redis/go-redis/v9"
)

// countingHook counts what a go-redis client sends: every command, whether
// sent alone or inside a pipeline, and every pipeline (one round trip each).
// The handshake go-redis runs on each new connection (HELLO, CLIENT SETINFO)
// is not counted: it belongs to dialing, not to any broker call.
type countingHook struct {
	cmds  atomic.Int64 // commands, pipelined ones included
	pipes atomic.Int64 // pipelines
	mu    sync.Mutex
	seen  []string // command names, in the order they were sent
	sizes []int    // commands per pipeline
}

func (h *countingHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *countingHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if handshake(cmd) {
			return next(ctx, cmd)
		}
		h.cmds.Add(1)
		h.mu.Lock()
		h.seen = append(h.seen, cmd.Name())
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (h *countingHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		if slices.ContainsFunc(cmds, handshake) {
			return next(ctx, cmds)
		}
		h.cmds.Add(int64(len(cmds)))
		h.pipes.Add(1)
		h.mu.Lock()
		for _, c := range cmds {
			h.seen = append(h.seen, c.Name())
		}
		h.sizes = append(h.sizes, len(cmds))
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (h *countingHook) names() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.seen...)
}

// handshake reports whether cmd is part of go-redis's connection setup.
func handshake(cmd goredis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "client", "auth", "select":
		return true
	}
	return false
}

// pipelineSizes returns how many commands each pipeline carried.
func (h *countingHook) pipelineSizes() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int(nil), h.sizes...)
}

// count returns how many commands named name were sent.
func (h *countingHook) count(name string) int {
	n := 0
	for _, s := range h.names() {
		if s == name {
			n++
		}
	}
	return n
}

func atomicAdd(p *int64) int64 { return atomic.AddInt64(p, 1) }

// topicChannels is what PUBSUB CHANNELS answered, without the broker's
// probe channels (<prefix>:probe:...), which every pub/sub connection
// holds whatever is subscribed.
func topicChannels(cmd *goredis.StringSliceCmd) ([]string, error) {
	chans, err := cmd.Result()
	return slices.DeleteFunc(chans, func(ch string) bool { return strings.Contains(ch, ":probe:") }), err
}
