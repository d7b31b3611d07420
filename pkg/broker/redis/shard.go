package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/pkg/broker"
)

// shard is one pub/sub connection and the channels it holds: the only one
// of a single Redis or of Sentinel's master, or one per master of a Redis
// Cluster. Its goroutine (run) dials, subscribes every channel it holds,
// reads until the connection fails, reports the loss and starts again; its
// prober checks a connection that has received nothing for a while.
type shard struct {
	bus  *bus
	addr string // the node's host:port; "" when the dialer finds it (single Redis, Sentinel)
	id   string // names this shard's probe channel

	ctx    context.Context // ended by stop
	cancel context.CancelFunc
	wg     sync.WaitGroup // run and probe

	mu        sync.Mutex      // guards what follows; taken after bus.mu, never before it
	chans     map[string]bool // the channels this shard must hold
	w         *wire           // the live connection; nil while down
	pending   []pendingCmd    // commands sent on w whose replies are not read yet, in order
	cause     error           // why someone other than the reader closed w (a failed probe)
	probeCh   string          // the probe channel on w; "" when none
	probeLive bool            // its subscription is confirmed
	nonce     string          // the probe in flight; "" when none

	probeBack chan struct{} // buffered 1: the reader saw the nonce come back
	healthy   atomic.Bool   // connected, and Redis has answered on this connection
	lastRecv  atomic.Int64  // when the last reply was read, unix nanoseconds
}

// pendingCmd is a (S)SUBSCRIBE or (S)UNSUBSCRIBE of one channel waiting
// for its reply. Every command names one channel, so each has exactly one
// reply: a confirmation or an error.
type pendingCmd struct {
	sub bool
	ch  string
}

// errSilent is the loss of a connection that received nothing and whose
// probe did not come back.
var errSilent = fmt.Errorf("%w: a probe published to it did not come back", broker.ErrSilent)

func newShard(bs *bus, addr string) *shard {
	var id [6]byte
	_, _ = rand.Read(id[:])
	s := &shard{
		bus:       bs,
		addr:      addr,
		id:        hex.EncodeToString(id[:]),
		chans:     make(map[string]bool),
		probeBack: make(chan struct{}, 1),
	}
	s.ctx, s.cancel = context.WithCancel(bs.ctx)
	s.lastRecv.Store(time.Now().UnixNano())
	s.wg.Add(2)
	go s.run()
	go s.probe()
	return s
}

// stop ends the shard's goroutines and closes its connection. The caller
// has taken the shard's channels elsewhere or no longer wants them.
func (s *shard) stop() {
	s.cancel()
	s.mu.Lock()
	if s.w != nil {
		s.w.c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *shard) subCmd() string {
	if s.bus.sharded {
		return "SSUBSCRIBE"
	}
	return "SUBSCRIBE"
}

func (s *shard) unsubCmd() string {
	if s.bus.sharded {
		return "SUNSUBSCRIBE"
	}
	return "UNSUBSCRIBE"
}

// add makes the shard hold ch: subscribed now if connected, else when it
// connects. The confirmation reaches the Broker through confirmed.
func (s *shard) add(ch string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chans[ch] = true
	if s.w != nil {
		s.sendLocked(pendingCmd{sub: true, ch: ch})
		s.flushLocked()
	}
}

// remove stops holding ch. Its messages already on the way are dropped:
// the shard delivers only what it holds.
func (s *shard) remove(ch string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.chans[ch] {
		return
	}
	delete(s.chans, ch)
	if s.w != nil {
		s.sendLocked(pendingCmd{ch: ch})
		s.flushLocked()
	}
}

// holds reports whether the shard holds ch.
func (s *shard) holds(ch string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chans[ch]
}

// idle reports whether the shard holds no channel.
func (s *shard) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.chans) == 0
}

// sendLocked buffers one command on s.w and records it as pending.
func (s *shard) sendLocked(c pendingCmd) {
	if c.sub {
		s.w.write(s.subCmd(), c.ch)
	} else {
		s.w.write(s.unsubCmd(), c.ch)
	}
	s.pending = append(s.pending, c)
}

// flushLocked sends what is buffered on s.w. A write that fails or takes
// longer than WriteTimeout closes the connection: the reader then fails,
// and the next connection subscribes everything again.
func (s *shard) flushLocked() {
	_ = s.w.c.SetWriteDeadline(time.Now().Add(s.bus.writeTimeout))
	if err := s.w.flush(); err != nil {
		if s.cause == nil {
			s.cause = fmt.Errorf("write: %w", err)
		}
		s.w.c.Close()
	}
}

// run owns the shard's connections, one after another, until stop.
func (s *shard) run() {
	defer s.wg.Done()
	backoff := 50 * time.Millisecond
	for s.ctx.Err() == nil {
		w, err := s.connect()
		if err == nil {
			backoff = 50 * time.Millisecond
			err = s.attach(w)
			if err == nil {
				err = s.read(w)
			}
			err = s.detach(w, err)
		}
		if s.ctx.Err() != nil {
			return
		}
		s.bus.b.cfg.Logger.Debug("redis: pub/sub connection failed", "node", s.addr, "err", err)
		s.lost(err)
		s.bus.trouble()
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			return
		}
		if backoff < time.Second {
			backoff *= 2
		}
	}
}

// connect dials the node and authenticates.
func (s *shard) connect() (*wire, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.bus.dialTimeout)
	defer cancel()
	c, err := s.bus.dial(ctx, s.addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	w := newWire(c)
	if s.bus.password != "" {
		_ = c.SetDeadline(time.Now().Add(s.bus.readTimeout))
		if s.bus.username != "" {
			w.write("AUTH", s.bus.username, s.bus.password)
		} else {
			w.write("AUTH", s.bus.password)
		}
		r, err := w.flushRead()
		if err == nil && r.kind == '-' {
			err = errors.New(r.str)
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("auth: %w", err)
		}
		_ = c.SetDeadline(time.Time{})
	}
	return w, nil
}

// attach makes w the shard's connection and subscribes, in one flush, its
// probe channel and every channel it holds.
func (s *shard) attach(w *wire) error {
	probeCh := s.bus.probeChannel(s) // takes bus.mu: not under s.mu
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		w.c.Close()
		return s.ctx.Err()
	}
	s.w, s.cause, s.pending = w, nil, s.pending[:0]
	s.probeLive, s.nonce = false, ""
	s.probeCh = probeCh
	if s.probeCh != "" {
		s.sendLocked(pendingCmd{sub: true, ch: s.probeCh})
	} else {
		s.healthy.Store(true) // nothing to confirm: the node owns no slot now
	}
	for ch := range s.chans {
		s.sendLocked(pendingCmd{sub: true, ch: ch})
	}
	s.flushLocked()
	return s.cause
}

// detach ends the connection w after its reader stopped with err, and
// returns why it ended: the cause a prober or writer gave, else err.
func (s *shard) detach(w *wire, err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.c.Close()
	if s.w == w {
		s.w = nil
		s.pending = s.pending[:0]
		s.probeLive, s.nonce = false, ""
		if s.cause != nil {
			err = s.cause
		}
	}
	return err
}

// lost reports the loss of a connection that was up: every channel the
// shard holds (those still waiting for a confirmation included) must be
// repaired once it is back.
func (s *shard) lost(err error) {
	if !s.healthy.Swap(false) {
		return
	}
	s.mu.Lock()
	chans := make([]string, 0, len(s.chans))
	for ch := range s.chans {
		chans = append(chans, ch)
	}
	s.mu.Unlock()
	s.bus.b.lostChannels(chans, s.addr, err)
}

// read reads w until it fails, handing each reply on.
func (s *shard) read(w *wire) error {
	b := s.bus.b
	for {
		r, err := w.read()
		if err != nil {
			return err
		}
		s.lastRecv.Store(time.Now().UnixNano())
		switch r.kind {
		case '*':
			if len(r.elems) < 2 {
				continue // a pong with no payload; Parley sends no PING
			}
			ch := r.elems[1]
			switch r.elems[0] {
			case "message", "smessage":
				if len(r.elems) != 3 {
					return fmt.Errorf("%w: message of %d elements", errProtocol, len(r.elems))
				}
				if strings.HasPrefix(ch, s.bus.probePrefix) {
					s.probed(r.elems[2])
					continue
				}
				if s.bus.sharded && !s.holds(ch) {
					continue // moved to another shard, or unsubscribed
				}
				b.dispatch(ch, r.elems[2])
			case "subscribe", "ssubscribe":
				s.subscribed(ch)
			case "unsubscribe", "sunsubscribe":
				s.unsubscribed(ch)
			}
		case '-':
			s.refused(r.str)
		}
	}
}

// popLocked removes the first pending command matching c and reports
// whether there was one. Replies come in the order of the commands, so it
// is the first one but for a reply Redis sent unasked: that costs O(1)
// even with a reconnection's thousands of subscribes pending.
func (s *shard) popLocked(c pendingCmd) bool {
	if len(s.pending) > 0 && s.pending[0] == c {
		s.pending = s.pending[1:]
		return true
	}
	for i, p := range s.pending {
		if p == c {
			s.pending = append(s.pending[:i], s.pending[i+1:]...)
			return true
		}
	}
	return false
}

// subscribed handles the confirmation of a (S)SUBSCRIBE.
func (s *shard) subscribed(ch string) {
	s.mu.Lock()
	s.popLocked(pendingCmd{sub: true, ch: ch})
	if ch == s.probeCh {
		s.probeLive = true
		s.mu.Unlock()
		s.healthy.Store(true)
		return
	}
	held := s.chans[ch]
	s.mu.Unlock()
	if held {
		s.bus.b.confirmed(ch)
	}
}

// unsubscribed handles an (S)UNSUBSCRIBE's reply, or, when none is
// pending, Redis Cluster's own sunsubscribe: the channel's slot has moved
// to another node, which must now hold it.
func (s *shard) unsubscribed(ch string) {
	s.mu.Lock()
	if s.popLocked(pendingCmd{ch: ch}) {
		s.mu.Unlock()
		return
	}
	if ch == s.probeCh {
		s.probeCh, s.probeLive = "", false // picked again by the next probe
		s.mu.Unlock()
		return
	}
	held := s.chans[ch]
	delete(s.chans, ch)
	s.mu.Unlock()
	if held {
		err := errors.New("redis: the slot of the channel moved to another node")
		s.bus.b.lostChannels([]string{ch}, s.addr, err)
		s.bus.displaced(s, ch, "")
	}
}

// refused handles an error reply: it answers the oldest pending command.
// A refused SSUBSCRIBE goes to the node a MOVED names, or back to the
// router.
func (s *shard) refused(msg string) {
	s.mu.Lock()
	if len(s.pending) == 0 {
		s.mu.Unlock()
		s.bus.b.cfg.Logger.Warn("redis: pub/sub error with no command pending", "node", s.addr, "err", msg)
		return
	}
	c := s.pending[0]
	s.pending = s.pending[1:]
	if !c.sub {
		s.mu.Unlock()
		return
	}
	if c.ch == s.probeCh {
		s.probeCh = ""
		s.mu.Unlock()
		return
	}
	held := s.chans[c.ch]
	delete(s.chans, c.ch)
	s.mu.Unlock()
	if !held {
		return
	}
	to := ""
	if rest, ok := strings.CutPrefix(msg, "MOVED "); ok {
		if _, addr, ok := strings.Cut(rest, " "); ok {
			to = addr
		}
	} else {
		s.bus.b.cfg.Logger.Warn("redis: subscribe refused; retrying", "node", s.addr, "channel", c.ch, "err", msg)
	}
	s.bus.displaced(s, c.ch, to)
}

// probed handles a message on the probe channel.
func (s *shard) probed(payload string) {
	s.mu.Lock()
	ok := s.nonce != "" && payload == s.nonce
	if ok {
		s.nonce = ""
	}
	s.mu.Unlock()
	if ok {
		select {
		case s.probeBack <- struct{}{}:
		default:
		}
	}
}

// probe checks the connection whenever it has received nothing for
// PingInterval: it publishes a nonce to the probe channel through the
// ordinary client, the way messages are published, and the nonce must
// come back through this connection within ProbeTimeout. A PING would
// only show the connection is open; the probe shows it still gets what is
// published, which a connection to a node that is no longer the master
// (after a Sentinel failover, say) does not. A probe that fails closes the
// connection: its channels are reported lost, and repaired from history
// once subscribed again.
func (s *shard) probe() {
	defer s.wg.Done()
	every := s.bus.pingInterval
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(time.Unix(0, s.lastRecv.Load())) < every {
			continue
		}
		w, ch, nonce := s.startProbe()
		if w == nil {
			continue
		}
		err := s.roundTrip(ch, nonce)
		if err == nil || s.ctx.Err() != nil {
			continue
		}
		s.mu.Lock()
		if s.w == w && s.cause == nil {
			s.cause = err
			w.c.Close()
		}
		s.mu.Unlock()
	}
}

// startProbe readies a probe: the live connection, its probe channel and a
// fresh nonce. It returns a nil wire when there is nothing to probe yet,
// and subscribes a new probe channel when the last one moved away.
func (s *shard) startProbe() (*wire, string, string) {
	s.mu.Lock()
	w, none := s.w, s.probeCh == ""
	s.mu.Unlock()
	if w == nil {
		return nil, "", ""
	}
	if none {
		probeCh := s.bus.probeChannel(s) // takes bus.mu: not under s.mu
		s.mu.Lock()
		if s.w == w && s.probeCh == "" && probeCh != "" {
			s.probeCh = probeCh
			s.sendLocked(pendingCmd{sub: true, ch: probeCh})
			s.flushLocked()
		}
		s.mu.Unlock()
		return nil, "", ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != w {
		return nil, "", ""
	}
	if !s.probeLive {
		return nil, "", ""
	}
	var n [8]byte
	_, _ = rand.Read(n[:])
	s.nonce = hex.EncodeToString(n[:])
	select {
	case <-s.probeBack: // a late one from the last probe
	default:
	}
	return s.w, s.probeCh, s.nonce
}

// roundTrip publishes nonce on ch and waits for it to come back.
func (s *shard) roundTrip(ch, nonce string) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.bus.probeTimeout)
	defer cancel()
	n, err := s.bus.publish(ctx, ch, nonce)
	if err != nil {
		return fmt.Errorf("%w: %w", errSilent, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: no subscriber where it was published", errSilent)
	}
	select {
	case <-s.probeBack:
		return nil
	case <-ctx.Done():
		return errSilent
	}
}

// flushRead sends what is buffered and reads one reply.
func (w *wire) flushRead() (reply, error) {
	if err := w.flush(); err != nil {
		return reply{}, err
	}
	return w.read()
}
