package gateway

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// What sets off a webhook event. A publish and a membership change hand a
// notice to the notifier, a goroutine of the gateway, without waiting: a
// send's ack never waits for webhooks. The notifier works out the events
// (who is offline, who is mentioned) and enqueues them in the outbox.
// Until then a notice is in memory only: a full queue drops it (counted in
// parley_webhook_dropped_total and logged), and so does a crash of the
// gateway. From the outbox on, nothing is lost.

// maxMentions is how many distinct users one message may notify by
// mention.
const maxMentions = 20

// notice is what happened, for the notifier: a message published (msg) or
// a membership made or ended.
type notice struct {
	room string
	at   time.Time // when it happened

	// a message
	msg  bool
	ack  broker.Ack
	from string
	body string

	// a membership
	user, kind, state string
}

// messageData is the data of message.offline (with user) and
// message.posted (without).
type messageData struct {
	User  string `json:"user,omitempty"`
	Room  string `json:"room"`
	Epoch string `json:"epoch"`
	Seq   int64  `json:"seq"`
	ID    string `json:"id"`
	From  string `json:"from"`
	Body  string `json:"body"`
	TS    string `json:"ts"`
}

// memberData is the data of member.added and member.removed.
type memberData struct {
	Room string `json:"room"`
	User string `json:"user"`
	Kind string `json:"kind,omitempty"`
}

// eventPayload is a webhook's body.
type eventPayload struct {
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	Data      any    `json:"data"`
}

// noticeMessage hands a new (not duplicate) message to the notifier, when
// some configured event may follow from it. A message with no '@' in a
// room that is not direct costs a byte scan when only message.offline is
// sent.
func (g *Gateway) noticeMessage(p principal, room string, ack broker.Ack, body string) {
	h := g.hooks
	if h == nil || ack.Duplicate {
		return
	}
	offline := h.events[EventMessageOffline] && (protocol.DirectRoom(room) || strings.IndexByte(body, '@') >= 0)
	if !offline && !h.events[EventMessagePosted] {
		return
	}
	g.notice(h, notice{room: room, at: time.Now(), msg: true, ack: ack, from: p.user, body: body})
}

// noticeMembership hands a membership frame (state member or left) of
// user to the notifier, when member events are sent.
func (g *Gateway) noticeMembership(user string, f *protocol.Frame) {
	h := g.hooks
	if h == nil || f.Type != protocol.TypeMembership {
		return
	}
	if (f.State == "member" && !h.events[EventMemberAdded]) || (f.State == "left" && !h.events[EventMemberRemoved]) {
		return
	}
	g.notice(h, notice{room: f.Room, at: time.Now(), user: user, kind: f.Kind, state: f.State})
}

// notice queues n, or drops it when the queue is full.
func (g *Gateway) notice(h *hooks, n notice) {
	select {
	case h.notices <- n:
	default:
		g.dropped(h, "the notifier's queue is full", n.room)
	}
}

// dropped counts a notice lost before the outbox, and logs it at most
// once a second.
func (g *Gateway) dropped(h *hooks, why, room string) {
	g.metrics.webhookDropped.Inc()
	now := time.Now().Unix()
	if last := h.dropLog.Load(); last != now && h.dropLog.CompareAndSwap(last, now) {
		g.log.Warn("webhook notice dropped", "why", why, "room", room)
	}
}

// notifier turns notices into outbox events. Owned by g.bg. When the
// gateway closes, the notices still queued are enqueued within one
// RequestTimeout all told (Close closes the broker only after g.bg), so a
// graceful end loses none; what is left after it is dropped and counted.
func (g *Gateway) notifier(h *hooks) {
	defer g.bg.Done()
	for {
		select {
		case n := <-h.notices:
			// Not g.ctx: a notice being handled when the gateway closes
			// is finished, not cut.
			ctx, cancel := context.WithTimeout(context.Background(), g.cfg.RequestTimeout)
			g.handleNotice(ctx, h, n)
			cancel()
		case <-g.ctx.Done():
			ctx, cancel := context.WithTimeout(context.Background(), g.cfg.RequestTimeout)
			defer cancel()
			for {
				select {
				case n := <-h.notices:
					if ctx.Err() != nil {
						g.dropped(h, "the gateway closed", n.room)
						continue
					}
					g.handleNotice(ctx, h, n)
				default:
					return
				}
			}
		}
	}
}

// handleNotice enqueues the events of one notice.
func (g *Gateway) handleNotice(ctx context.Context, h *hooks, n notice) {
	if n.msg {
		g.messageEvents(ctx, h, n)
	} else {
		g.memberEvent(ctx, h, n)
	}
}

// messageEvents enqueues message.posted and the message.offline events of
// a message.
func (g *Gateway) messageEvents(ctx context.Context, h *hooks, n notice) {
	data := messageData{Room: n.room, Epoch: n.ack.Epoch, Seq: n.ack.Seq, ID: n.ack.ID, From: n.from, Body: n.body, TS: n.ack.TS}
	pos := n.room + "/" + n.ack.Epoch + "/" + strconv.FormatInt(n.ack.Seq, 10)
	if h.events[EventMessagePosted] {
		g.enqueue(ctx, h, EventMessagePosted+"/"+pos, EventMessagePosted, n.at, data)
	}
	if !h.events[EventMessageOffline] {
		return
	}
	for _, u := range g.receivers(ctx, n) {
		online, err := g.userOnline(ctx, u)
		if err != nil {
			g.dropped(h, "the receiver's presence could not be read", n.room)
			continue
		}
		if online > 0 {
			continue
		}
		d := data
		d.User = u
		g.enqueue(ctx, h, EventMessageOffline+"/"+pos+"/"+u, EventMessageOffline, n.at, d)
	}
}

// receivers returns who a message is for, besides its sender: the other
// user of a direct room, and the members of the room it mentions.
func (g *Gateway) receivers(ctx context.Context, n notice) []string {
	var out []string
	a, b, direct := protocol.DirectUsers(n.room)
	if direct {
		if n.from == a {
			out = append(out, b)
		} else {
			out = append(out, a)
		}
	}
	for _, u := range mentions(n.body, maxMentions) {
		if u == n.from || (direct && u == out[0]) {
			continue
		}
		if direct {
			continue // only the room's two users are members
		}
		member, err := g.broker.IsMember(ctx, n.room, u)
		if err != nil {
			g.log.Debug("webhooks: a mention's membership could not be read", "room", n.room, "err", err)
			continue
		}
		if member {
			out = append(out, u)
		}
	}
	return out
}

// memberEvent enqueues member.added or member.removed.
func (g *Gateway) memberEvent(ctx context.Context, h *hooks, n notice) {
	typ := EventMemberAdded
	if n.state == "left" {
		typ = EventMemberRemoved
	}
	key := typ + "/" + n.room + "/" + n.user + "/" + strconv.FormatInt(n.at.UnixMilli(), 10)
	g.enqueue(ctx, h, key, typ, n.at, memberData{Room: n.room, User: n.user, Kind: n.kind})
}

// enqueue puts one event in the outbox, trying three times a second
// apart; after that it is dropped (and counted).
func (g *Gateway) enqueue(ctx context.Context, h *hooks, key, typ string, at time.Time, data any) {
	payload, err := json.Marshal(eventPayload{Type: typ, Timestamp: protocol.FormatTime(at), Data: data})
	if err != nil {
		g.log.Error("webhook payload", "type", typ, "err", err)
		return
	}
	ev := broker.OutboxEvent{Key: key, Type: typ, Payload: payload, Enqueued: at}
	for try := 0; ; try++ {
		// ctx, not g.ctx: a gateway that closes still enqueues the
		// notices it holds (notifier).
		err = h.outbox.Enqueue(ctx, ev)
		if err == nil {
			g.outboxOK(h)
			return
		}
		if try == 2 || ctx.Err() != nil {
			g.dropped(h, "the outbox is unreachable", "")
			return
		}
		g.outboxFailed(h, "enqueue", err)
	}
}

// nameChar reports whether c may be in a user name
// ([A-Za-z0-9._:-]; protocol.ValidUser).
func nameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-'
}

// mentions returns the distinct users body mentions, at most limit, in
// order: a name after an '@' that starts the body or follows a character
// that cannot be in a name. Trailing '.', ':' and '-' are taken for
// punctuation ("hi @bob."), not part of the name.
func mentions(body string, limit int) []string {
	var out []string
	for i := 0; i < len(body) && len(out) < limit; i++ {
		if body[i] != '@' || (i > 0 && nameChar(body[i-1])) {
			continue
		}
		j := i + 1
		for j < len(body) && nameChar(body[j]) {
			j++
		}
		name := strings.TrimRight(body[i+1:j], ".:-")
		i = j - 1
		if protocol.ValidUser(name) && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}
