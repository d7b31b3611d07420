package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/protocol"
)

// counters are shared by every connection's goroutines.
type counters struct {
	sent, sentMeasured         atomic.Int64
	acked, answeredWithError   atomic.Int64
	delivered, deliveredMeasur atomic.Int64
	gaps, dups                 atomic.Int64
	dropped                    atomic.Int64 // connections closed by the server or the network

	mu     sync.Mutex
	errors map[string]int64 // error frames by code
	closes map[string]int64 // unexpected closes by code
}

func newCounters() *counters {
	return &counters{errors: map[string]int64{}, closes: map[string]int64{}}
}

func (c *counters) errorFrame(code string) {
	c.mu.Lock()
	c.errors[code]++
	c.mu.Unlock()
}

// closed records why a connection's read ended, unless the bench ended it.
func (c *counters) closed(err error) {
	code := "network"
	if s := websocket.CloseStatus(err); s != -1 {
		code = strconv.Itoa(int(s))
	}
	c.dropped.Add(1)
	c.mu.Lock()
	c.closes[code]++
	c.mu.Unlock()
}

func (c *counters) maps() (errs, closes map[string]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	errs, closes = map[string]int64{}, map[string]int64{}
	for k, v := range c.errors {
		errs[k] = v
	}
	for k, v := range c.closes {
		closes[k] = v
	}
	return errs, closes
}

// window is the measured interval, in unix nanoseconds of send time.
type window struct{ start, end atomic.Int64 }

func (w *window) in(t time.Time) bool {
	s, e := w.start.Load(), w.end.Load()
	ns := t.UnixNano()
	return s != 0 && ns >= s && ns < e
}

// receiver is one receiving connection; its reader goroutine owns chk.
type receiver struct {
	n      int
	room   int
	w      *wsConn
	chk    SeqChecker
	last   atomic.Int64 // chk.Last, for the drain check
	gone   atomic.Bool  // the server or the network ended it
	ending atomic.Bool  // the bench is closing it
}

// runID returns a short random id that makes room names unique per run.
func runID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// connectAll opens n connections with connect(i), at most conc at a time,
// after the first one alone (so an unreachable gateway fails fast). It
// returns the connections (nil where one failed), the number of failures,
// the first failure, and the time it took.
func connectAll(ctx context.Context, n, conc int, connect func(ctx context.Context, i int) (*wsConn, error)) (conns []*wsConn, failed int, first error, took time.Duration, err error) {
	start := time.Now()
	conns = make([]*wsConn, n)
	w, err := connect(ctx, 0)
	if err != nil {
		return nil, 1, err, time.Since(start), fmt.Errorf("%w to %w", ErrUnreachable, err)
	}
	conns[0] = w
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, conc)
	for i := 1; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			w, err := connect(ctx, i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				if first == nil {
					first = err
				}
				return
			}
			conns[i] = w
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		closeAll(conns, time.Second)
		return nil, failed, first, time.Since(start), ctx.Err()
	}
	return conns, failed, first, time.Since(start), nil
}

// connectReceivers connects and joins cfg.Conns receivers, receiver i to
// room i%Rooms (named by roomNames), and records the connect figures in
// res. A receiver that could not connect is nil in the returned slices.
func connectReceivers(ctx context.Context, d *dialer, cfg *Config, roomNames []string, res *Result) ([]*receiver, []*wsConn, error) {
	recv := make([]*receiver, cfg.Conns)
	conns, failed, first, took, err := connectAll(ctx, cfg.Conns, cfg.ConnectConcurrency, func(ctx context.Context, i int) (*wsConn, error) {
		r := &receiver{n: i, room: i % cfg.Rooms}
		w, j, err := d.connect(ctx, i, fmt.Sprintf("%s-%d", cfg.UserPrefix, i), roomNames[r.room], nil)
		if err != nil {
			return nil, err
		}
		r.w = w
		r.chk.Joined(j.Epoch, j.Seq)
		r.last.Store(j.Seq)
		recv[i] = r
		return w, nil
	})
	if err != nil {
		return nil, nil, err
	}
	res.Connections = cfg.Conns - failed
	res.ConnectErrors = failed
	if first != nil {
		res.ConnectError = first.Error()
	}
	res.ConnectSeconds = took.Seconds()
	res.ConnectRate = float64(res.Connections) / max(took.Seconds(), 1e-9)
	return recv, conns, nil
}

// Run runs a steady-state bench as described in the package documentation.
// It returns an error wrapping ErrConfig or ErrUnreachable when the run
// could not take place; otherwise a Result, whose OK says whether every
// message arrived exactly once.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	id := runID()
	roomNames := make([]string, cfg.Rooms)
	roomIndex := make(map[string]int, cfg.Rooms)
	for r := range roomNames {
		roomNames[r] = fmt.Sprintf("%s-%s-%d", cfg.RoomPrefix, id, r)
		roomIndex[roomNames[r]] = r
	}
	d := newDialer(&cfg)
	defer d.close()
	res := &Result{Config: summarize(&cfg)}
	cnt := newCounters()
	hist := NewShardedHistogram(64)
	var win window

	// Connect and join the receivers.
	recv, conns, err := connectReceivers(ctx, d, &cfg, roomNames, res)
	if err != nil {
		return nil, err
	}

	// Connect the publishers.
	np := cfg.publishers()
	pubs, pfailed, pfirst, _, err := connectAll(ctx, np, cfg.ConnectConcurrency, func(ctx context.Context, i int) (*wsConn, error) {
		w, _, err := d.connect(ctx, cfg.Conns+i, fmt.Sprintf("%s-pub-%d", cfg.UserPrefix, i), "", nil)
		return w, err
	})
	if err == nil && pfailed > 0 {
		err = fmt.Errorf("%d of %d publishers could not connect: %w", pfailed, np, pfirst)
	}
	if err != nil {
		closeAll(conns, cfg.CloseTimeout)
		closeAll(pubs, cfg.CloseTimeout)
		return nil, err
	}
	res.Publishers = np

	heads := make([]atomic.Int64, cfg.Rooms) // last acknowledged seq per room
	readCtx, stopReading := context.WithCancel(context.Background())
	defer stopReading()
	var readers sync.WaitGroup
	startReaders(readCtx, &readers, recv, cnt, hist, &win)
	pubEnding := make([]atomic.Bool, np)
	for p, w := range pubs {
		readers.Add(1)
		go func() {
			defer readers.Done()
			readPublisher(readCtx, w, &pubEnding[p], cnt, heads, roomIndex)
		}()
	}

	// Publish: warm-up, then the measured window.
	start := time.Now()
	win.end.Store(start.Add(cfg.Warmup + cfg.Duration).UnixNano())
	win.start.Store(start.Add(cfg.Warmup).UnixNano())
	pubCtx, stopPublishing := context.WithDeadline(ctx, start.Add(cfg.Warmup+cfg.Duration))
	defer stopPublishing()
	var writers sync.WaitGroup
	for p, w := range pubs {
		writers.Add(1)
		go func() {
			defer writers.Done()
			publish(pubCtx, w, p, np, &cfg, roomNames, start, cnt, &win)
		}()
	}
	var progress sync.WaitGroup
	if cfg.Progress != nil {
		progress.Add(1)
		go func() {
			defer progress.Done()
			report(pubCtx, &cfg, start, recv, cnt, hist)
		}()
	}
	writers.Wait()
	progress.Wait()
	publishedFor := time.Since(start)

	// Drain: outstanding acks, then deliveries up to each room's head.
	drainCtx, stopDraining := context.WithTimeout(ctx, cfg.Drain)
	defer stopDraining()
	waitUntil(drainCtx, func() bool { return cnt.acked.Load()+cnt.answeredWithError.Load() >= cnt.sent.Load() })
	caughtUp := func() bool {
		for _, r := range recv {
			if r != nil && !r.gone.Load() && r.last.Load() < heads[r.room].Load() {
				return false
			}
		}
		return true
	}
	waitUntil(drainCtx, caughtUp)

	// Close everything and wait for every reader.
	for _, r := range recv {
		if r != nil {
			r.ending.Store(true)
		}
	}
	for p := range pubEnding {
		pubEnding[p].Store(true)
	}
	closeAll(append(conns, pubs...), cfg.CloseTimeout)
	stopReading()
	readers.Wait()

	for _, r := range recv {
		if r != nil && !r.gone.Load() {
			res.Missing += max(0, heads[r.room].Load()-r.last.Load())
		}
	}
	measured := min(cfg.Duration, max(publishedFor-cfg.Warmup, time.Millisecond)).Seconds()
	res.Sent = cnt.sent.Load()
	res.Acked = cnt.acked.Load()
	res.Delivered = cnt.delivered.Load()
	res.SentPerSec = float64(cnt.sentMeasured.Load()) / measured
	res.DeliveredPerSec = float64(cnt.deliveredMeasur.Load()) / measured
	res.Latency = latencyOf(hist.Snapshot())
	res.Gaps = cnt.gaps.Load()
	res.Duplicates = cnt.dups.Load()
	res.Dropped = cnt.dropped.Load()
	res.Errors, res.Closes = cnt.maps()
	return res, nil
}

// startReaders starts one reader goroutine per connected receiver (nil
// entries are skipped), counted in readers; they stop when ctx ends.
func startReaders(ctx context.Context, readers *sync.WaitGroup, recv []*receiver, cnt *counters, hist *ShardedHistogram, win *window) {
	for _, r := range recv {
		if r == nil {
			continue
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			r.read(ctx, cnt, hist, win)
		}()
	}
}

// read is a receiver's reader loop: it checks seqs and records latency
// until the connection ends.
func (r *receiver) read(ctx context.Context, cnt *counters, hist *ShardedHistogram, win *window) {
	h := hist.Shard(r.n)
	defer r.w.closeWhenDone(ctx)()
	f := new(inFrame)
	for {
		err := r.w.readInto(context.Background(), f)
		if err != nil {
			if !r.ending.Load() && ctx.Err() == nil {
				r.gone.Store(true)
				cnt.closed(err)
			}
			return
		}
		switch f.Type {
		case protocol.TypeMessage:
			now := time.Now()
			g, du := r.chk.Gaps, r.chk.Duplicates
			fresh := r.chk.Message(f.Epoch, f.Seq)
			if d := r.chk.Gaps - g; d > 0 {
				cnt.gaps.Add(d)
			}
			if d := r.chk.Duplicates - du; d > 0 {
				cnt.dups.Add(d)
			}
			r.last.Store(r.chk.Last)
			if !fresh {
				continue
			}
			cnt.delivered.Add(1)
			if sent, err := DecodeBody(f.Body); err == nil && win.in(sent) {
				cnt.deliveredMeasur.Add(1)
				h.Record(int64(now.Sub(sent)))
			}
		case protocol.TypeJoined: // unsolicited: the room's epoch changed
			r.chk.Joined(f.Epoch, f.Seq)
			r.last.Store(f.Seq)
		case protocol.TypeError:
			cnt.errorFrame(f.Code)
		}
	}
}

// readPublisher reads a publisher's acks and errors, raising heads.
func readPublisher(ctx context.Context, w *wsConn, ending *atomic.Bool, cnt *counters, heads []atomic.Int64, roomIndex map[string]int) {
	defer w.closeWhenDone(ctx)()
	f := new(inFrame)
	for {
		err := w.readInto(context.Background(), f)
		if err != nil {
			if !ending.Load() && ctx.Err() == nil {
				cnt.closed(err)
			}
			return
		}
		switch f.Type {
		case protocol.TypeAck:
			cnt.acked.Add(1)
			if r, ok := roomIndex[f.Room]; ok {
				raise(&heads[r], f.Seq)
			}
		case protocol.TypeError:
			cnt.errorFrame(f.Code)
			cnt.answeredWithError.Add(1)
		}
	}
}

func raise(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// publish is publisher p's writer loop: one message per tick, to rooms
// p, p+P, p+2P, ... (mod the number of rooms), until ctx ends.
func publish(ctx context.Context, w *wsConn, p, np int, cfg *Config, rooms []string, start time.Time, cnt *counters, win *window) {
	interval := time.Duration(float64(np) / cfg.Rate * float64(time.Second))
	offset := time.Duration(float64(p) / cfg.Rate * float64(time.Second))
	t := time.NewTimer(time.Until(start.Add(offset)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for j := 0; ; j++ {
		now := time.Now()
		f := &protocol.Frame{
			Type: protocol.TypeSend,
			Ref:  "s",
			Room: rooms[(p+j*np)%len(rooms)],
			ID:   fmt.Sprintf("p%d-%d", p, j),
			Body: EncodeBody(now, cfg.BodyBytes),
		}
		// ctx only ends the publishing window. The write itself must not
		// be canceled by it: coder/websocket closes the connection when a
		// write's context ends mid-write, which dropped the publisher and
		// lost its last ack. A write gets the connect timeout instead.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ConnectTimeout)
		err := w.write(wctx, f)
		cancel()
		if err != nil {
			return
		}
		cnt.sent.Add(1)
		if win.in(now) {
			cnt.sentMeasured.Add(1)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// report prints one progress line per second until ctx ends.
func report(ctx context.Context, cfg *Config, start time.Time, recv []*receiver, cnt *counters, hist *ShardedHistogram) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastSent, lastDelivered int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		alive := 0
		for _, r := range recv {
			if r != nil && !r.gone.Load() {
				alive++
			}
		}
		s, dl := cnt.sent.Load(), cnt.delivered.Load()
		p99 := "-"
		if h := hist.Snapshot(); h.Count() > 0 {
			p99 = fmt.Sprintf("%.1fms", ms(h.Percentile(99)))
		}
		phase := "measure"
		if time.Since(start) < cfg.Warmup {
			phase = "warm-up"
		}
		fmt.Fprintf(cfg.Progress, "bench: %5.0fs %s conns=%d sent/s=%d delivered/s=%d p99=%s gaps=%d dups=%d\n",
			time.Since(start).Seconds(), phase, alive, s-lastSent, dl-lastDelivered, p99, cnt.gaps.Load(), cnt.dups.Load())
		lastSent, lastDelivered = s, dl
	}
}

// waitUntil polls cond every 10ms until it holds or ctx ends.
func waitUntil(ctx context.Context, cond func() bool) bool {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return cond()
		case <-t.C:
		}
	}
	return true
}
