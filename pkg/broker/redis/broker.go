package redis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/pkg/broker"
)

// Config configures a Broker. Zero fields take the stated defaults.
// Exactly one of URL, ClusterAddrs and SentinelMaster says where Redis is.
type Config struct {
	// URL is a redis:// or rediss:// URL of a single Redis.
	URL string
	// ClusterAddrs are seed nodes (host:port) of a Redis Cluster (Redis 7
	// or later): the Broker reads the rest of the cluster from them, and
	// uses sharded pub/sub (SSUBSCRIBE, SPUBLISH).
	ClusterAddrs []string
	// SentinelMaster is the name of a master that the Redis Sentinels at
	// SentinelAddrs (host:port) watch: the Broker follows it across
	// failovers.
	SentinelMaster string
	SentinelAddrs  []string
	// Username and Password authenticate to a Cluster's nodes or to
	// Sentinel's master (a URL carries its own). Default none.
	Username string
	Password string
	// Prefix starts every key and channel. Default "parley".
	Prefix string
	// Retention is how many messages each room's history keeps.
	// Default broker.DefaultRetention (1000).
	Retention int
	// IdempotencyWindow is how long a send's ack is remembered.
	// Default broker.DefaultIdempotencyWindow (5m); at least 2m.
	IdempotencyWindow time.Duration
	// Handler receives the messages and events of subscribed topics.
	// Required for Subscribe.
	Handler broker.Handler
	// Logger for connection events. Default slog.Default().
	Logger *slog.Logger
	// PingInterval is how long a pub/sub connection may receive nothing
	// before it is probed: a nonce published through the client the way
	// messages are must come back through it within ProbeTimeout, or the
	// connection counts as lost. Default 15s.
	PingInterval time.Duration
	// ProbeTimeout bounds a probe's round trip. Default 3s.
	ProbeTimeout time.Duration
	// TopologyInterval is how often a Cluster's slot map is read again,
	// besides at once when a pub/sub connection fails or a slot moves.
	// Default 30s.
	TopologyInterval time.Duration
	// PublishPipelines is how many pipelines carry publishes to Redis at
	// once, each on a pooled connection. A publish that finds one free and
	// nothing queued is sent at once; the others queue and share round
	// trips. Default 4.
	PublishPipelines int
	// PublishBatch is the most publishes one pipeline carries (each is
	// still its own EVALSHA). Up to PublishPipelines*PublishBatch more wait
	// in a queue. Default 64.
	PublishBatch int
}

// Broker is a broker.Broker backed by Redis.
type Broker struct {
	cfg    Config
	client goredis.UniversalClient
	bus    *bus
	pubCmd string // the publish script's command: PUBLISH, or SPUBLISH on a Cluster
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the pipeliners

	groupMade atomic.Bool // the outbox's consumer group exists (outbox.go)

	pubq      chan *publishReq // publishes waiting for a pipeliner
	slots     chan struct{}    // one token per pipeline in flight
	pubDone   chan struct{}    // closed once Close has drained pubq
	closeOnce sync.Once

	mu      sync.Mutex                 // never held while bus.mu or a shard's mu is taken
	waiters map[string][]chan struct{} // channel -> Subscribe calls waiting for confirmation
	subs    map[string]bool            // channels subscribed (or being subscribed) and not unsubscribed

	pingMu sync.Mutex
	ping   *pingCall // Ready's PING in flight, if any
}

// pingCall is one PING for Ready, shared by the Ready calls that come
// while it is in flight.
type pingCall struct {
	done chan struct{} // closed when err is set
	err  error
}

var _ broker.Broker = (*Broker)(nil)

// New returns a Broker connected to the Redis that cfg names. It does not
// wait for Redis: a Broker whose Redis is down starts, reports not ready,
// and recovers when Redis comes. A malformed or missing address is an
// error.
func New(cfg Config) (*Broker, error) {
	modes := 0
	for _, set := range []bool{cfg.URL != "", len(cfg.ClusterAddrs) > 0, cfg.SentinelMaster != "" || len(cfg.SentinelAddrs) > 0} {
		if set {
			modes++
		}
	}
	if modes != 1 {
		return nil, errors.New("redis: set exactly one of a URL, cluster seed nodes and a Sentinel master")
	}
	if cfg.SentinelMaster == "" && len(cfg.SentinelAddrs) > 0 || cfg.SentinelMaster != "" && len(cfg.SentinelAddrs) == 0 {
		return nil, errors.New("redis: Sentinel needs a master name and at least one sentinel address")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "parley"
	}
	if cfg.Retention <= 0 {
		cfg.Retention = broker.DefaultRetention
	}
	if cfg.IdempotencyWindow == 0 {
		cfg.IdempotencyWindow = broker.DefaultIdempotencyWindow
	}
	if cfg.IdempotencyWindow < broker.MinIdempotencyWindow {
		return nil, fmt.Errorf("redis: idempotency window %v is shorter than %v", cfg.IdempotencyWindow, broker.MinIdempotencyWindow)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 15 * time.Second
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = 3 * time.Second
	}
	if cfg.TopologyInterval <= 0 {
		cfg.TopologyInterval = 30 * time.Second
	}
	if cfg.PublishPipelines <= 0 {
		cfg.PublishPipelines = 4
	}
	if cfg.PublishBatch <= 0 {
		cfg.PublishBatch = 64
	}
	// Fail fast while Redis is down: sends get "unavailable" in about the
	// dial timeout instead of hanging.
	const (
		dialTimeout  = 2 * time.Second
		readTimeout  = 3 * time.Second
		writeTimeout = 3 * time.Second
	)
	bs := &bus{dialTimeout: dialTimeout, readTimeout: readTimeout, writeTimeout: writeTimeout,
		pingInterval: cfg.PingInterval, probeTimeout: cfg.ProbeTimeout}
	var client goredis.UniversalClient
	pubCmd := "PUBLISH"
	switch {
	case cfg.URL != "":
		opt, err := goredis.ParseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("redis: invalid URL %q: %w", cfg.URL, err)
		}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = dialTimeout, readTimeout, writeTimeout
		opt.MaxRetries = 1
		opt.Protocol = 2
		c := goredis.NewClient(opt)
		client = c
		bs.username, bs.password = opt.Username, opt.Password
		bs.dial = nodeDialer(c.Options())
	case len(cfg.ClusterAddrs) > 0:
		for _, a := range cfg.ClusterAddrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, fmt.Errorf("redis: cluster seed node %q: %w", a, err)
			}
		}
		opt := &goredis.ClusterOptions{
			Addrs:    cfg.ClusterAddrs,
			Username: cfg.Username, Password: cfg.Password,
			DialTimeout: dialTimeout, ReadTimeout: readTimeout, WriteTimeout: writeTimeout,
			MaxRetries: 1,
			Protocol:   2,
			// One dial, no retries: a dead master fails a send at once,
			// and the router moves its slots as soon as a replica has them.
			DialerRetries: 1,
			// go-redis re-reads the slot map on MOVED, and when its copy is
			// older than this; the router also has it re-read whenever the
			// map it reads has changed (a failover answers no MOVED: the dead
			// master answers nothing).
			ClusterStateReloadInterval: 5 * time.Second,
		}
		c := goredis.NewClusterClient(opt)
		client = c
		pubCmd = "SPUBLISH"
		bs.sharded = true
		bs.username, bs.password = cfg.Username, cfg.Password
		d := goredis.NewDialer(&goredis.Options{DialTimeout: dialTimeout, TLSConfig: opt.TLSConfig})
		bs.dial = func(ctx context.Context, addr string) (net.Conn, error) { return d(ctx, "tcp", addr) }
		sr := &slotReader{seeds: cfg.ClusterAddrs, clients: make(map[string]*goredis.Client), opt: func(addr string) *goredis.Options {
			return &goredis.Options{Addr: addr, Username: cfg.Username, Password: cfg.Password, TLSConfig: opt.TLSConfig,
				DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second,
				MaxRetries: -1, DialerRetries: 1, PoolSize: 1, Protocol: 2}
		}}
		bs.slotMap, bs.closeSlots = sr.read, sr.close
		bs.reload = func() { c.ReloadState(context.Background()) }
	default:
		for _, a := range cfg.SentinelAddrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, fmt.Errorf("redis: sentinel %q: %w", a, err)
			}
		}
		c := goredis.NewFailoverClient(&goredis.FailoverOptions{
			MasterName: cfg.SentinelMaster, SentinelAddrs: cfg.SentinelAddrs,
			Username: cfg.Username, Password: cfg.Password,
			DialTimeout: dialTimeout, ReadTimeout: readTimeout, WriteTimeout: writeTimeout,
			MaxRetries: 1,
			Protocol:   2,
		})
		client = c
		bs.username, bs.password = cfg.Username, cfg.Password
		// The failover client's dialer asks the sentinels for the master
		// on every dial.
		bs.dial = nodeDialer(c.Options())
	}
	if bs.sharded {
		bs.publish = func(ctx context.Context, ch, payload string) (int64, error) {
			return client.SPublish(ctx, ch, payload).Result()
		}
	} else {
		bs.publish = func(ctx context.Context, ch, payload string) (int64, error) {
			return client.Publish(ctx, ch, payload).Result()
		}
	}
	quietGoRedis()
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		cfg:     cfg,
		client:  client,
		pubCmd:  pubCmd,
		ctx:     ctx,
		cancel:  cancel,
		waiters: make(map[string][]chan struct{}),
		subs:    make(map[string]bool),
		pubq:    make(chan *publishReq, cfg.PublishPipelines*cfg.PublishBatch),
		slots:   make(chan struct{}, cfg.PublishPipelines),
		pubDone: make(chan struct{}),
	}
	b.bus = startBus(b, bs)
	b.wg.Add(cfg.PublishPipelines)
	for range cfg.PublishPipelines {
		go b.pipeliner()
	}
	return b, nil
}

// nodeDialer dials what a client's options name: its address, or, for a
// failover client, the master its sentinels name now.
func nodeDialer(opt *goredis.Options) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, _ string) (net.Conn, error) {
		return opt.Dialer(ctx, opt.Network, opt.Addr)
	}
}

func (b *Broker) key(room, kind string) string {
	return b.cfg.Prefix + ":{" + room + "}:" + kind
}

// idemKind names the idempotency key of the pair (from, id) within a room:
// "idem:<len(from)>:<from>:<id>". Both may contain ':', so the length of
// from says where it ends; without it user "a" with id "b:c" and user "a:b"
// with id "c" would share a key, and the second send would be acked as a
// duplicate of the first and never stored.
func idemKind(from, id string) string {
	return "idem:" + strconv.Itoa(len(from)) + ":" + from + ":" + id
}

// userMark starts a user topic's channel after the prefix. A room's channel
// has '{' there instead, so the kind of a channel is never in doubt.
const userMark = "u:"

// channel returns the pub/sub channel of a topic: <prefix>:{<room>} for a
// room (the channel the publish script publishes to, which gateways
// already running subscribe: it must not change) and <prefix>:u:{<user>}
// for a user. The hash tag puts each topic on one Cluster slot.
func (b *Broker) channel(t broker.Topic) string {
	if t.Kind == broker.UserTopic {
		return b.cfg.Prefix + ":" + userMark + "{" + t.Name + "}"
	}
	return b.cfg.Prefix + ":{" + t.Name + "}"
}

// topicOf is the inverse of channel. It reports false for a channel that
// is not one of this broker's topics.
func (b *Broker) topicOf(channel string) (broker.Topic, bool) {
	s, ok := strings.CutPrefix(channel, b.cfg.Prefix+":")
	if !ok {
		return broker.Topic{}, false
	}
	kind := broker.RoomTopic
	if rest, user := strings.CutPrefix(s, userMark); user {
		kind, s = broker.UserTopic, rest
	}
	s, ok = strings.CutPrefix(s, "{")
	if !ok {
		return broker.Topic{}, false
	}
	name, ok := strings.CutSuffix(s, "}")
	if !ok {
		return broker.Topic{}, false
	}
	return broker.Topic{Kind: kind, Name: name}, true
}

// checkTopic refuses a topic of a kind this broker has no channel for, so
// that what is subscribed is what Subscribed and Lost report.
func checkTopic(op string, t broker.Topic) error {
	if t.Kind != broker.RoomTopic && t.Kind != broker.UserTopic {
		return fmt.Errorf("redis %s: unknown topic kind %d", op, t.Kind)
	}
	return nil
}

// Payloads on a topic's channel. An envelope is a JSON object, so it
// starts with '{'; an event starts with eventMark, which no envelope does.
const eventMark = '!'

// Client returns the underlying go-redis client (for diagnostics and
// tests): a *goredis.Client, or a *goredis.ClusterClient on a Cluster.
func (b *Broker) Client() goredis.UniversalClient { return b.client }

func unavailable(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("redis %s: %w: %w", op, broker.ErrUnavailable, err)
	}
	// EOF: Redis closed the connection (it died or was killed) and
	// go-redis's retry met another dead pooled connection.
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, goredis.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		strings.Contains(err.Error(), "connection refused") ||
		strings.HasPrefix(err.Error(), "LOADING") ||
		// A Redis Cluster between a master's failure and its replica's
		// promotion, or a slot's keys half moved: both pass.
		strings.HasPrefix(err.Error(), "CLUSTERDOWN") || strings.HasPrefix(err.Error(), "TRYAGAIN") {
		return fmt.Errorf("redis %s: %w: %w", op, broker.ErrUnavailable, err)
	}
	return fmt.Errorf("redis %s: %w", op, err)
}

// Publish implements broker.Broker with one EVALSHA of the publish script.
// Concurrent publishes share round trips: see Config.PublishPipelines.
func (b *Broker) Publish(ctx context.Context, p broker.Publication) (broker.Ack, error) {
	if b.ctx.Err() != nil {
		return broker.Ack{}, broker.ErrClosed
	}
	if p.TS == "" {
		p.TS = broker.Now()
	}
	head, tail := broker.EnvelopeParts(p)
	keys := []string{b.key(p.Room, "meta"), b.key(p.Room, "log"), b.key(p.Room, idemKind(p.From, p.ID))}
	res, err := b.enqueue(ctx, &publishReq{
		ctx:  ctx,
		keys: keys,
		args: []any{head, tail, b.cfg.Retention, b.cfg.IdempotencyWindow.Milliseconds(), broker.NewEpoch(), b.channel(broker.Room(p.Room)), p.TS, b.pubCmd},
		res:  make(chan publishResult, 1),
	})
	if err != nil {
		return broker.Ack{}, err
	}
	if len(res) != 2 {
		return broker.Ack{}, fmt.Errorf("redis publish: unexpected reply %v", res)
	}
	fresh, _ := res[0].(int64)
	ackStr, _ := res[1].(string)
	parts := strings.SplitN(ackStr, "|", 3)
	if len(parts) != 3 {
		return broker.Ack{}, fmt.Errorf("redis publish: malformed ack %q", ackStr)
	}
	seq, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return broker.Ack{}, fmt.Errorf("redis publish: malformed seq in ack %q: %w", ackStr, err)
	}
	return broker.Ack{Room: p.Room, ID: p.ID, Seq: seq, Epoch: parts[1], TS: parts[2], Duplicate: fresh == 0}, nil
}

func (b *Broker) read(ctx context.Context, room, mode string, bound int64, limit int) (broker.Range, error) {
	res, err := readScript.Run(ctx, b.client, []string{b.key(room, "meta"), b.key(room, "log")}, mode, bound, limit).Slice()
	if err != nil {
		return broker.Range{}, unavailable("read", err)
	}
	if len(res) < 3 {
		return broker.Range{}, fmt.Errorf("redis read: unexpected reply %v", res)
	}
	var r broker.Range
	r.Epoch, _ = res[0].(string)
	r.Seq, _ = res[1].(int64)
	r.First, _ = res[2].(int64)
	if n := len(res) - 3; n > 0 {
		r.Messages = make([]broker.Envelope, 0, n)
	}
	for _, item := range res[3:] {
		s, _ := item.(string)
		env, err := broker.ParseEnvelope([]byte(s))
		if err != nil {
			return broker.Range{}, fmt.Errorf("redis read %s: %w", room, err)
		}
		r.Messages = append(r.Messages, env)
	}
	return r, nil
}

// After implements broker.Broker.
func (b *Broker) After(ctx context.Context, room string, after int64, limit int) (broker.Range, error) {
	return b.read(ctx, room, "after", after, limit)
}

// Before implements broker.Broker.
func (b *Broker) Before(ctx context.Context, room string, before int64, limit int) (broker.Range, error) {
	return b.read(ctx, room, "before", before, limit)
}

// Head implements broker.Broker.
func (b *Broker) Head(ctx context.Context, room string) (broker.Position, error) {
	r, err := b.read(ctx, room, "before", 1, 0) // bound 1: no messages, just the head
	return r.Position, err
}

// Subscribe implements broker.Broker: it gives the topic's channel to the
// pub/sub connection that must hold it (the one connection, or on a
// Cluster its slot's master's) and waits for Redis to confirm the
// subscription. If ctx ends first, Subscribe undoes itself before it
// returns the error (see abandon).
func (b *Broker) Subscribe(ctx context.Context, t broker.Topic) error {
	if err := checkTopic("subscribe", t); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis subscribe %s: %w: %w", t, broker.ErrUnavailable, err)
	}
	if b.ctx.Err() != nil {
		return broker.ErrClosed
	}
	ch := b.channel(t)
	done := make(chan struct{})
	b.mu.Lock()
	b.waiters[ch] = append(b.waiters[ch], done)
	b.subs[ch] = true
	b.mu.Unlock()
	// Sent now when the connection is up, else when it comes back; we
	// wait either way.
	b.bus.add(ch)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		if b.abandon(ch, done) {
			return nil // confirmed after all: the subscription stands
		}
		return fmt.Errorf("redis subscribe %s: %w: %w", t, broker.ErrUnavailable, ctx.Err())
	case <-b.ctx.Done():
		return broker.ErrClosed
	}
}

// abandon undoes a Subscribe whose ctx ended before Redis confirmed it, so
// that a failed Subscribe leaves nothing to undo: the caller treats the topic
// as not subscribed and will not call Unsubscribe. It reports true if the
// confirmation came first after all, and then undoes nothing.
//
// Once abandon returns false nothing of the channel reaches the Handler:
// the channel is out of b.subs, so its messages and events are dropped and a
// late confirmation of the SUBSCRIBE already sent is not reported (see
// confirmed); it is out of its connection's set, so no reconnection
// subscribes it again; and on a live connection UNSUBSCRIBE follows the
// SUBSCRIBE.
func (b *Broker) abandon(ch string, done chan struct{}) (confirmed bool) {
	b.mu.Lock()
	if !b.dropWaiterLocked(ch, done) {
		b.mu.Unlock()
		return true // confirmed took the waiter: done is closed or about to be
	}
	delete(b.subs, ch)
	b.mu.Unlock()
	b.bus.remove(ch)
	return false
}

// dropWaiterLocked removes done from the channel's waiters and reports
// whether it was still there. Called with b.mu held.
func (b *Broker) dropWaiterLocked(ch string, done chan struct{}) bool {
	ws := b.waiters[ch]
	for i, w := range ws {
		if w == done {
			b.waiters[ch] = append(ws[:i], ws[i+1:]...)
			if len(b.waiters[ch]) == 0 {
				delete(b.waiters, ch)
			}
			return true
		}
	}
	return false
}

// Unsubscribe implements broker.Broker. Messages and events of the topic
// still in flight on the pub/sub connection are dropped from the moment it
// is called. The UNSUBSCRIBE goes out on the live connection, if any; a
// connection made later does not subscribe the topic.
func (b *Broker) Unsubscribe(ctx context.Context, t broker.Topic) error {
	if err := checkTopic("unsubscribe", t); err != nil {
		return err
	}
	ch := b.channel(t)
	b.mu.Lock()
	delete(b.subs, ch)
	b.mu.Unlock()
	b.bus.remove(ch)
	return nil
}

// Emit implements broker.Broker with one PUBLISH (SPUBLISH on a Cluster)
// of eventMark and the data on the topic's channel, the room's own channel for a room topic: an event
// and the room's messages then reach a subscriber in the order Redis ran
// them. It goes out on its own pooled connection, not through the publish
// pipelines: an event is one command, not a script call, and a gateway
// emits far fewer events than it publishes messages.
func (b *Broker) Emit(ctx context.Context, ev broker.Event) error {
	if err := checkTopic("emit", ev.Topic); err != nil {
		return err
	}
	if b.ctx.Err() != nil {
		return broker.ErrClosed
	}
	payload := make([]byte, 1+len(ev.Data))
	payload[0] = eventMark
	copy(payload[1:], ev.Data)
	var err error
	if b.bus.sharded {
		err = b.client.SPublish(ctx, b.channel(ev.Topic), payload).Err()
	} else {
		err = b.client.Publish(ctx, b.channel(ev.Topic), payload).Err()
	}
	if err != nil {
		if b.ctx.Err() != nil {
			return fmt.Errorf("redis emit: %w: %w", broker.ErrClosed, err)
		}
		return unavailable("emit", err)
	}
	return nil
}

// Ready implements broker.Broker: Redis answers PING and the pub/sub
// connections are up (on a Cluster: the slot map is known, and each
// connection that holds a channel is up). It returns when ctx ends even if the PING has not: the
// client does not set ContextTimeoutEnabled, so go-redis bounds the read of
// the reply by ReadTimeout (3s), not by ctx, and a stalled Redis would hold
// a 1s readiness probe for 3s. The PING goes on in the background; Ready
// calls made meanwhile wait for it instead of sending more, so a stalled
// Redis sees one PING at a time however often Ready is called.
func (b *Broker) Ready(ctx context.Context) error {
	call := b.startPing()
	if call == nil {
		return broker.ErrClosed
	}
	select {
	case <-call.done:
		if call.err != nil {
			return unavailable("ping", call.err)
		}
	case <-ctx.Done():
		return unavailable("ping", ctx.Err())
	}
	if err := b.bus.healthy(); err != nil {
		return fmt.Errorf("redis: %w: %w", broker.ErrUnavailable, err)
	}
	return nil
}

// startPing returns Ready's PING in flight, starting one if there is none,
// or nil once the broker is closed.
func (b *Broker) startPing() *pingCall {
	b.pingMu.Lock()
	defer b.pingMu.Unlock()
	if b.ctx.Err() != nil {
		return nil // closed: Close may be waiting for the last PING already
	}
	if b.ping != nil {
		return b.ping
	}
	call := &pingCall{done: make(chan struct{})}
	b.ping = call
	go func() {
		err := b.client.Ping(b.ctx).Err()
		b.pingMu.Lock()
		b.ping = nil
		b.pingMu.Unlock()
		call.err = err
		close(call.done)
	}()
	return call
}

// Close implements broker.Broker.
func (b *Broker) Close() error {
	b.cancel()
	// No PING starts after the cancel (startPing checks under pingMu), so
	// this is the last one; closing the client ends it.
	b.pingMu.Lock()
	ping := b.ping
	b.pingMu.Unlock()
	b.bus.close()
	b.wg.Wait()
	b.closeQueue()
	err := b.client.Close()
	if ping != nil {
		<-ping.done
	}
	if errors.Is(err, goredis.ErrClosed) {
		err = nil
	}
	return err
}

// dispatch hands one pub/sub message to the Handler: an event (eventMark
// and its data) of any topic, or an envelope (a JSON object) of a room.
// Anything of a channel no longer in b.subs is dropped: it was unsubscribed
// or its Subscribe failed, and the caller no longer expects it.
func (b *Broker) dispatch(ch, payload string) {
	t, ok := b.topicOf(ch)
	b.mu.Lock()
	live := b.subs[ch]
	b.mu.Unlock()
	if !ok || !live || b.cfg.Handler == nil {
		return
	}
	switch {
	case len(payload) > 0 && payload[0] == eventMark:
		b.cfg.Handler.Event(broker.Event{Topic: t, Data: []byte(payload[1:])})
	case len(payload) > 0 && payload[0] == '{' && t.Kind == broker.RoomTopic:
		env, err := broker.ParseEnvelope([]byte(payload))
		if err != nil {
			b.cfg.Logger.Error("redis: dropping malformed envelope", "room", t.Name, "err", err)
			return
		}
		b.cfg.Handler.Deliver(env)
	default:
		// Not something this broker publishes: another program's, or a
		// newer broker's on a shared Redis.
		b.cfg.Logger.Debug("redis: dropping an unknown payload", "topic", t, "bytes", len(payload))
	}
}

// confirmed handles Redis's confirmation of a SUBSCRIBE, the first one or
// a resubscription after a reconnect. A channel no longer in b.subs is not
// reported: its Subscribe failed and was undone, or it was unsubscribed, and
// an UNSUBSCRIBE follows on the connection.
func (b *Broker) confirmed(ch string) {
	b.mu.Lock()
	ws := b.waiters[ch]
	delete(b.waiters, ch)
	live := b.subs[ch]
	b.mu.Unlock()
	if t, ok := b.topicOf(ch); ok && live && b.cfg.Handler != nil {
		b.cfg.Handler.Subscribed(t)
	}
	for _, w := range ws {
		close(w)
	}
}
