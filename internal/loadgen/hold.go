package loadgen

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Hold opens Config.Conns receivers (each joined to its room, as in Run),
// calls held with the number connected, keeps them open and idle for hold
// (or until ctx ends), then closes them. Nothing is published. It measures
// what idle connections cost a gateway: sample the gateway's memory between
// held and Hold's return. The Result has the connection counts and the
// config; its latency and delivery fields are zero.
func Hold(ctx context.Context, cfg Config, hold time.Duration, held func(n int)) (*Result, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	id := runID()
	d := newDialer(&cfg)
	defer d.close()
	res := &Result{Config: summarize(&cfg)}
	res.Config.Rate, res.Config.WarmupSeconds, res.Config.Seconds = 0, 0, hold.Seconds()
	cnt := newCounters()
	roomNames := make([]string, cfg.Rooms)
	for r := range roomNames {
		roomNames[r] = fmt.Sprintf("%s-%s-%d", cfg.RoomPrefix, id, r)
	}
	recv, conns, err := connectReceivers(ctx, d, &cfg, roomNames, res)
	if err != nil {
		return nil, err
	}

	// Read (control frames, anything unexpected) while holding.
	hist := NewShardedHistogram(1)
	var win window
	readCtx, stopReading := context.WithCancel(context.Background())
	defer stopReading()
	var readers sync.WaitGroup
	startReaders(readCtx, &readers, recv, cnt, hist, &win)
	if held != nil {
		held(res.Connections)
	}
	t := time.NewTimer(hold)
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	t.Stop()
	for _, r := range recv {
		if r != nil {
			r.ending.Store(true)
		}
	}
	closeAll(conns, cfg.CloseTimeout)
	stopReading()
	readers.Wait()
	res.Dropped = cnt.dropped.Load()
	res.Errors, res.Closes = cnt.maps()
	return res, nil
}
