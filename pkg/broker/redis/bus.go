package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/pkg/broker"
)

// bus routes the Broker's channels to shards, its pub/sub connections.
//
// On a single Redis and on Sentinel there is one shard, and it holds every
// channel. On Redis Cluster there is one shard per master that holds a
// subscribed channel's slot, so the connections are bounded by the
// masters, not by the rooms. Partitions (channels grouped under shared
// hash tags, one connection per group) would not do: a room's channel
// must share the slot of the room's keys, because the publish script
// stores and publishes in one step on one slot, so channels spread over
// every slot. A router goroutine keeps the slot map: it re-reads it every
// TopologyInterval, and at once when a shard's connection fails or a
// channel is displaced (Redis's sunsubscribe when a slot moves, MOVED to a
// subscribe), then moves each channel whose slot changed hands to its new
// master's shard. A moved channel is reported lost and, once its new
// shard confirms it, subscribed: the gateway repairs it from history.
//
// Lock order: bus.mu, then shard.mu. Broker.mu is never held while either
// is taken, nor taken while either is held.
type bus struct {
	b       *Broker
	ctx     context.Context
	sharded bool // Redis Cluster: SSUBSCRIBE and SPUBLISH

	dial         func(ctx context.Context, addr string) (net.Conn, error)
	username     string
	password     string
	dialTimeout  time.Duration
	readTimeout  time.Duration
	writeTimeout time.Duration
	pingInterval time.Duration // a connection idle this long is probed
	probeTimeout time.Duration
	probePrefix  string                                                       // every probe channel starts with it
	publish      func(ctx context.Context, ch, payload string) (int64, error) // a probe's publish, by the client
	slotMap      func(ctx context.Context) ([]slotRange, error)               // Cluster: reads the slot map
	reload       func()                                                       // Cluster: has the client read the slot map again
	closeSlots   func()                                                       // Cluster: closes what slotMap holds

	wake chan struct{} // buffered 1: the router should read the slot map now
	wg   sync.WaitGroup

	mu       sync.Mutex        // guards what follows (lock order above)
	shards   map[string]*shard // by node address ("" for the single shard)
	route    map[string]*shard // channel -> the shard holding it
	homeless map[string]bool   // Cluster: channels waiting for a shard
	slots    []slotRange       // Cluster: the slot map, by start; nil until read
	closed   bool
}

// slotRange is one line of the slot map: slots start..end belong to the
// master at addr.
type slotRange struct {
	start, end int
	addr       string
}

// startBus starts the Broker's bus: the single shard, or the Cluster's
// router (shards start as channels need them).
func startBus(b *Broker, bs *bus) *bus {
	bs.b, bs.ctx = b, b.ctx
	bs.wake = make(chan struct{}, 1)
	bs.shards = make(map[string]*shard)
	bs.route = make(map[string]*shard)
	bs.homeless = make(map[string]bool)
	bs.probePrefix = b.cfg.Prefix + ":probe:"
	if bs.sharded {
		bs.kick() // read the slot map now
		bs.wg.Add(1)
		go bs.router()
	} else {
		bs.shards[""] = newShard(bs, "")
	}
	return bs
}

// add makes the bus hold ch. Its confirmation reaches Broker.confirmed.
func (bs *bus) add(ch string) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.closed {
		return
	}
	if !bs.sharded {
		s := bs.shards[""]
		bs.route[ch] = s
		s.add(ch)
		return
	}
	bs.placeLocked(ch, "")
}

// placeLocked gives ch to the shard of addr, or of its slot's master when
// addr is "", or leaves it homeless for the router when the slot map does
// not know it yet.
func (bs *bus) placeLocked(ch, addr string) {
	if addr == "" {
		var ok bool
		if addr, ok = bs.ownerLocked(slotOf(ch)); !ok {
			bs.homeless[ch] = true
			bs.kick()
			return
		}
	}
	delete(bs.homeless, ch)
	s := bs.shards[addr]
	if s == nil {
		s = newShard(bs, addr)
		bs.shards[addr] = s
	}
	bs.route[ch] = s
	s.add(ch)
}

// remove stops holding ch.
func (bs *bus) remove(ch string) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	delete(bs.homeless, ch)
	if s := bs.route[ch]; s != nil {
		delete(bs.route, ch)
		s.remove(ch)
	}
}

// displaced takes back a channel its shard lost (a slot move, a refused
// subscribe) and gives it to the node to, or to the router when to is "".
func (bs *bus) displaced(from *shard, ch, to string) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.closed || bs.route[ch] != from {
		return // unsubscribed, or already moved
	}
	delete(bs.route, ch)
	if to != "" && to != from.addr {
		bs.placeLocked(ch, to)
	} else {
		bs.homeless[ch] = true
	}
	bs.kick()
}

// trouble tells the router that a connection failed: on a Cluster the
// slot map may have changed (a failover).
func (bs *bus) trouble() {
	if bs.sharded {
		bs.kick()
	}
}

func (bs *bus) kick() {
	select {
	case bs.wake <- struct{}{}:
	default:
	}
}

// ownerLocked returns the master of slot in the slot map.
func (bs *bus) ownerLocked(slot int) (string, bool) {
	i := sort.Search(len(bs.slots), func(i int) bool { return bs.slots[i].end >= slot })
	if i < len(bs.slots) && bs.slots[i].start <= slot {
		return bs.slots[i].addr, true
	}
	return "", false
}

// probeChannel names a probe channel for s: on a single Redis any name
// unique to the shard; on a Cluster one whose slot s's node owns, or ""
// when it owns none.
func (bs *bus) probeChannel(s *shard) string {
	if !bs.sharded {
		return bs.probePrefix + s.id
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	tag := tagFor(func(slot int) bool {
		addr, ok := bs.ownerLocked(slot)
		return ok && addr == s.addr
	})
	if tag == "" {
		return ""
	}
	return bs.probePrefix + s.id + ":{" + tag + "}"
}

// router keeps a Cluster's slot map and each channel on the shard of its
// slot's master. It reads the map every TopologyInterval, when kicked (a
// connection failed, a channel was displaced), and every settleInterval
// while some channel is not on a live connection: a failover shows in the
// map once the replica is promoted, and the channels follow at once.
func (bs *bus) router() {
	defer bs.wg.Done()
	const settleInterval = 250 * time.Millisecond
	every := time.NewTicker(bs.b.cfg.TopologyInterval)
	defer every.Stop()
	backoff := 100 * time.Millisecond
	for {
		var settle <-chan time.Time
		var st *time.Timer
		if bs.unsettled() {
			st = time.NewTimer(settleInterval)
			settle = st.C
		}
		select {
		case <-bs.ctx.Done():
		case <-every.C:
		case <-bs.wake:
		case <-settle:
		}
		if st != nil {
			st.Stop()
		}
		if bs.ctx.Err() != nil {
			return
		}
		if err := bs.refresh(); err != nil {
			bs.b.cfg.Logger.Warn("redis: cannot read the cluster's slot map", "err", err)
			bs.kick() // try again after the backoff
			if backoff < 2*time.Second {
				backoff *= 2
			}
		} else {
			backoff = 100 * time.Millisecond
		}
		// At most one read per backoff, however often shards call.
		t := time.NewTimer(backoff)
		select {
		case <-bs.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// unsettled reports whether a channel waits for a shard, or a shard that
// holds channels is down.
func (bs *bus) unsettled() bool {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if len(bs.homeless) > 0 {
		return true
	}
	for _, s := range bs.shards {
		if !s.healthy.Load() && !s.idle() {
			return true
		}
	}
	return false
}

// refresh reads the slot map and moves every channel whose slot's master
// changed to its new master's shard, places the homeless ones, and stops
// the shards of nodes that are no longer masters and hold nothing.
func (bs *bus) refresh() error {
	ctx, cancel := context.WithTimeout(bs.ctx, bs.readTimeout)
	defer cancel()
	slots, err := bs.slotMap(ctx)
	if err != nil {
		return err
	}
	if len(slots) == 0 {
		return errors.New("the slot map is empty")
	}
	var moved []string
	var stopped []*shard
	bs.mu.Lock()
	if bs.closed {
		bs.mu.Unlock()
		return nil
	}
	changed := !slices.Equal(bs.slots, slots)
	bs.slots = slots
	for ch, s := range bs.route {
		if addr, ok := bs.ownerLocked(slotOf(ch)); !ok || addr != s.addr {
			delete(bs.route, ch)
			s.remove(ch)
			bs.homeless[ch] = true
			moved = append(moved, ch)
		}
	}
	for ch := range bs.homeless {
		if addr, ok := bs.ownerLocked(slotOf(ch)); ok {
			bs.placeLocked(ch, addr)
		}
	}
	masters := make(map[string]bool)
	for _, r := range slots {
		masters[r.addr] = true
	}
	for addr, s := range bs.shards {
		if !masters[addr] && s.idle() {
			delete(bs.shards, addr)
			stopped = append(stopped, s)
		}
	}
	bs.mu.Unlock()
	if changed {
		bs.b.cfg.Logger.Debug("redis: the cluster's slot map changed", "ranges", len(slots), "moved", len(moved), "shards", len(bs.shards))
	}
	if changed && bs.reload != nil {
		// go-redis reads the slot map on MOVED, or when its copy is
		// older than a while; after a failover the dead master answers
		// nothing, so tell it now.
		bs.reload()
	}
	for _, s := range stopped {
		s.stop()
	}
	if len(moved) > 0 {
		bs.b.lostChannels(moved, "", errors.New("redis: the slot of the channel moved to another node"))
	}
	return nil
}

// healthy returns nil when every channel is on a connection that is up:
// on a Cluster, the slot map is known and no channel waits for a shard.
func (bs *bus) healthy() error {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.sharded {
		if bs.slots == nil {
			return errors.New("the cluster's slot map is not known yet")
		}
		if n := len(bs.homeless); n > 0 {
			return fmt.Errorf("%d channels wait for their node", n)
		}
	}
	for addr, s := range bs.shards {
		if !s.healthy.Load() && (!bs.sharded || !s.idle()) {
			if addr == "" {
				return errors.New("pub/sub connection down")
			}
			return fmt.Errorf("pub/sub connection to %s down", addr)
		}
	}
	return nil
}

// close stops the router and every shard.
func (bs *bus) close() {
	bs.mu.Lock()
	bs.closed = true
	shards := make([]*shard, 0, len(bs.shards))
	for _, s := range bs.shards {
		shards = append(shards, s)
	}
	bs.mu.Unlock()
	bs.wg.Wait() // the router (the Broker's context has ended)
	for _, s := range shards {
		s.stop()
	}
	if bs.closeSlots != nil {
		bs.closeSlots()
	}
}

// slotReader reads a Cluster's slot map with CLUSTER SLOTS, asking the
// nodes it knows (the seeds, and every node of the last map, replicas
// included) one after another, each with a short timeout, until one
// answers. The cluster client would send it to any master, the dead one
// included, and wait out its dial retries.
type slotReader struct {
	opt   func(addr string) *goredis.Options
	seeds []string

	mu      sync.Mutex
	known   []string                   // nodes of the last map, then the seeds not among them
	clients map[string]*goredis.Client // by address
	next    int                        // where the next read starts in known
}

func (r *slotReader) read(ctx context.Context) ([]slotRange, error) {
	r.mu.Lock()
	addrs := append([]string(nil), r.known...)
	if len(addrs) == 0 {
		addrs = append(addrs, r.seeds...)
	}
	start := r.next % len(addrs)
	r.next++
	r.mu.Unlock()
	var firstErr error
	for i := range addrs {
		addr := addrs[(start+i)%len(addrs)]
		nctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		//lint:ignore SA1019 CLUSTER SLOTS is what go-redis's cluster client routes by too; its replacement, CLUSTER SHARDS, says the same in more words
		res, err := r.client(addr).ClusterSlots(nctx).Result()
		cancel()
		if err == nil && len(res) > 0 {
			return r.learn(res), nil
		}
		if err == nil {
			err = errors.New("empty slot map")
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", addr, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

// learn turns CLUSTER SLOTS into the slot map, and remembers its nodes.
func (r *slotReader) learn(res []goredis.ClusterSlot) []slotRange {
	out := make([]slotRange, 0, len(res))
	seen := make(map[string]bool)
	var known []string
	for _, sr := range res {
		for _, n := range sr.Nodes {
			if n.Addr != "" && !seen[n.Addr] {
				seen[n.Addr] = true
				known = append(known, n.Addr)
			}
		}
		if len(sr.Nodes) > 0 {
			out = append(out, slotRange{start: sr.Start, end: sr.End, addr: sr.Nodes[0].Addr})
		}
	}
	for _, a := range r.seeds {
		if !seen[a] {
			known = append(known, a)
		}
	}
	slices.SortFunc(out, func(a, b slotRange) int { return a.start - b.start })
	r.mu.Lock()
	r.known = known
	r.mu.Unlock()
	return out
}

func (r *slotReader) client(addr string) *goredis.Client {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.clients[addr]
	if c == nil {
		c = goredis.NewClient(r.opt(addr))
		r.clients[addr] = c
	}
	return c
}

func (r *slotReader) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.clients {
		c.Close()
	}
	clear(r.clients)
}

// lostChannels tells the Handler that the topics of chans are lost (those
// still subscribed): each is reported Subscribed again once it is back.
func (b *Broker) lostChannels(chans []string, node string, err error) {
	b.mu.Lock()
	topics := make([]broker.Topic, 0, len(chans))
	for _, ch := range chans {
		if !b.subs[ch] {
			continue
		}
		if t, ok := b.topicOf(ch); ok {
			topics = append(topics, t)
		}
	}
	b.mu.Unlock()
	b.cfg.Logger.Warn("redis: pub/sub connection lost", "node", node, "topics", len(topics), "err", err)
	if b.cfg.Handler != nil && len(topics) > 0 {
		b.cfg.Handler.Lost(topics, err)
	}
}
