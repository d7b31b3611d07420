package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
	"github.com/parley-chat/parley/pkg/webhook"
)

// Webhooks: the gateway turns what happens (notify.go) into events in the
// broker's outbox (broker.Outbox, shared by the cluster), and its workers
// deliver them to one URL, signed the Standard Webhooks way (pkg/webhook),
// at least once: an event a worker took and did not settle (its gateway
// died) is taken over by another gateway's ticker after ClaimIdle.

// Webhook event types.
const (
	EventMessageOffline = "message.offline" // a direct message or a mention for a user with no device online
	EventMessagePosted  = "message.posted"  // every message published
	EventMemberAdded    = "member.added"    // a membership made
	EventMemberRemoved  = "member.removed"  // a membership ended
)

// webhookEvents are the event types there are.
var webhookEvents = []string{EventMessageOffline, EventMessagePosted, EventMemberAdded, EventMemberRemoved}

// WebhookConfig configures webhooks. Zero fields take the stated defaults.
type WebhookConfig struct {
	// URL receives the events (POST). Required: empty turns webhooks off.
	URL string
	// Secret signs them: "whsec_<base64>" (webhook.ParseSecret).
	// Required. Never logged.
	Secret string
	// Events are the event types sent. Default ["message.offline"].
	Events []string
	// Workers is how many deliveries this gateway makes at once.
	// Default 4.
	Workers int
	// Attempts is how many times an event is tried before it becomes a
	// dead letter. Default 8.
	Attempts int
	// RetryBase and RetryMax bound the backoff between attempts: after n
	// failed attempts the next waits a random time in
	// [0, min(RetryMax, RetryBase*2^(n-1))). Defaults 1s and 5m.
	RetryBase time.Duration
	RetryMax  time.Duration
	// Timeout bounds one POST. Default 10s.
	Timeout time.Duration
	// ClaimIdle is how long an event may stay taken by a gateway and not
	// settled before another takes it over (the first one died). Keep it
	// well over Timeout. Default 60s.
	ClaimIdle time.Duration
	// Tick is how often a gateway moves retries whose time came back
	// into the queue and takes over events left by dead gateways.
	// Default 1s.
	Tick time.Duration
	// Client sends the POSTs. Default: an http.Client of its own.
	Client *http.Client
}

func (c *WebhookConfig) setDefaults() {
	if len(c.Events) == 0 {
		c.Events = []string{EventMessageOffline}
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.Attempts <= 0 {
		c.Attempts = 8
	}
	if c.RetryBase <= 0 {
		c.RetryBase = time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Minute
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.ClaimIdle <= 0 {
		c.ClaimIdle = 60 * time.Second
	}
	if c.Tick <= 0 {
		c.Tick = time.Second
	}
	if c.Client == nil {
		c.Client = &http.Client{}
	}
}

// ParseWebhookEvents reads a comma-separated list of event types.
func ParseWebhookEvents(s string) ([]string, error) {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		if !slices.Contains(webhookEvents, e) {
			return nil, fmt.Errorf("unknown webhook event %q (known: %s)", e, strings.Join(webhookEvents, ", "))
		}
		out = append(out, e)
	}
	return out, nil
}

// Webhook pacing.
const (
	notifyQueue   = 8192            // notices waiting for the notifier (notify.go)
	nextBlock     = 2 * time.Second // how long a worker's Next waits for an event
	outboxBackoff = time.Second     // the wait after a failed outbox call
	reclaimBatch  = 100             // events one tick takes over
	dueBatch      = 1000            // retries one tick moves back
)

// hooks is the gateway's webhook machinery; nil when webhooks are off.
type hooks struct {
	cfg     WebhookConfig
	outbox  broker.Outbox
	sender  *webhook.Sender
	backoff webhook.Backoff
	events  map[string]bool
	notices chan notice             // to the notifier (notify.go)
	claimed chan broker.OutboxEntry // taken over by the ticker, to the workers

	outage  atomic.Bool  // the last outbox call failed (logged once per outage)
	dropLog atomic.Int64 // unix seconds of the last log of a dropped notice
}

// startWebhooks checks the webhook configuration and, when webhooks are
// on, starts the notifier, the workers and the ticker (owned by g.bg).
func (g *Gateway) startWebhooks() error {
	wc := g.cfg.Webhooks
	if wc == nil || wc.URL == "" {
		return nil
	}
	cfg := *wc
	cfg.setDefaults()
	secret, err := webhook.ParseSecret(cfg.Secret)
	if err != nil {
		return fmt.Errorf("gateway: webhooks: %w", err)
	}
	events := map[string]bool{}
	for _, e := range cfg.Events {
		if !slices.Contains(webhookEvents, e) {
			return fmt.Errorf("gateway: webhooks: unknown event %q (known: %s)", e, strings.Join(webhookEvents, ", "))
		}
		events[e] = true
	}
	ob, ok := g.broker.(broker.Outbox)
	if !ok {
		return fmt.Errorf("gateway: webhooks are configured but the broker (%T) has no outbox to queue them in", g.broker)
	}
	h := &hooks{
		cfg:     cfg,
		outbox:  ob,
		sender:  &webhook.Sender{URL: cfg.URL, Secret: secret, Client: cfg.Client, Timeout: cfg.Timeout},
		backoff: webhook.Backoff{Base: cfg.RetryBase, Max: cfg.RetryMax},
		events:  events,
		notices: make(chan notice, notifyQueue),
		claimed: make(chan broker.OutboxEntry, reclaimBatch),
	}
	g.hooks = h
	g.bg.Add(2 + cfg.Workers)
	go g.notifier(h)
	go g.webhookTicker(h)
	for range cfg.Workers {
		go g.webhookWorker(h)
	}
	g.log.Info("webhooks on", "events", cfg.Events, "workers", cfg.Workers, "attempts", cfg.Attempts)
	return nil
}

// webhookWorker delivers events: those the ticker took over first, then
// new ones from the outbox. Owned by g.bg; ends with g.ctx.
func (g *Gateway) webhookWorker(h *hooks) {
	defer g.bg.Done()
	consumer := g.nodeKey()
	for g.ctx.Err() == nil {
		select {
		case e := <-h.claimed:
			g.deliver(h, e)
			continue
		default:
		}
		es, err := h.outbox.Next(g.ctx, consumer, 1, nextBlock)
		if err != nil {
			g.outboxFailed(h, "next", err)
			continue
		}
		g.outboxOK(h)
		for _, e := range es {
			g.deliver(h, e)
		}
	}
}

// webhookTicker, every Tick, moves retries whose time came back into the
// outbox (Due) and takes over events other gateways took and left
// (Reclaim), for the workers. Owned by g.bg; ends with g.ctx.
func (g *Gateway) webhookTicker(h *hooks) {
	defer g.bg.Done()
	t := time.NewTicker(h.cfg.Tick)
	defer t.Stop()
	consumer := g.nodeKey()
	for {
		select {
		case <-t.C:
		case <-g.ctx.Done():
			return
		}
		ctx, cancel := context.WithTimeout(g.ctx, g.cfg.RequestTimeout)
		_, err := h.outbox.Due(ctx, time.Now(), dueBatch)
		var es []broker.OutboxEntry
		if err == nil {
			es, err = h.outbox.Reclaim(ctx, consumer, h.cfg.ClaimIdle, reclaimBatch)
		}
		cancel()
		if err != nil {
			g.outboxFailed(h, "tick", err)
			continue
		}
		g.outboxOK(h)
		if len(es) > 0 {
			g.log.Info("webhooks: took over events left by a gateway", "events", len(es))
		}
		for _, e := range es {
			select {
			case h.claimed <- e:
			case <-g.ctx.Done():
				return
			}
		}
	}
}

// deliver sends one event and settles it: done, retried later, or dead
// after its last attempt. An event cut by the gateway's Close is left
// taken: another gateway takes it over after ClaimIdle.
func (g *Gateway) deliver(h *hooks, e broker.OutboxEntry) {
	err := h.sender.Send(g.ctx, e.Key, time.Now(), e.Payload)
	if err != nil && g.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(g.ctx), g.cfg.RequestTimeout)
	defer cancel()
	m := g.metrics
	var serr error
	switch {
	case err == nil:
		m.webhookSent.WithLabelValues(e.Type).Inc()
		m.webhookSeconds.Observe(time.Since(e.Enqueued).Seconds())
		serr = h.outbox.Done(ctx, e)
	case e.Attempts+1 >= h.cfg.Attempts:
		m.webhookFailures.Inc()
		m.webhookDead.Inc()
		g.log.Warn("webhook failed its last attempt: a dead letter now", "id", e.Key, "type", e.Type, "attempts", e.Attempts+1, "err", err)
		serr = h.outbox.Dead(ctx, e, err.Error())
	default:
		m.webhookFailures.Inc()
		m.webhookRetries.Inc()
		delay := h.backoff.Delay(e.Attempts, nil)
		g.log.Debug("webhook failed; retrying", "id", e.Key, "type", e.Type, "attempt", e.Attempts+1, "in", delay, "err", err)
		serr = h.outbox.Retry(ctx, e, time.Now().Add(delay), err.Error())
	}
	if serr != nil {
		// Left taken: another gateway (or this one) takes it over after
		// ClaimIdle and sends it again.
		g.log.Warn("webhook outcome not recorded", "id", e.Key, "err", serr)
	}
}

// outboxFailed logs a failed outbox call once per outage and waits
// outboxBackoff (or the end of the gateway).
func (g *Gateway) outboxFailed(h *hooks, op string, err error) {
	if g.ctx.Err() != nil {
		return
	}
	if h.outage.CompareAndSwap(false, true) {
		g.log.Warn("webhook outbox unreachable; trying again every second", "op", op, "err", err)
	}
	t := time.NewTimer(outboxBackoff)
	defer t.Stop()
	select {
	case <-t.C:
	case <-g.ctx.Done():
	}
}

// outboxOK ends an outage.
func (g *Gateway) outboxOK(h *hooks) {
	if h.outage.CompareAndSwap(true, false) {
		g.log.Info("webhook outbox reachable again")
	}
}

// deadLetterJSON is a dead letter in GET /v1/webhooks/dead.
type deadLetterJSON struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Attempts  int             `json:"attempts"`
	LastError string          `json:"last_error"`
	FailedAt  string          `json:"failed_at"`
	Payload   json.RawMessage `json:"payload"`
}

// Dead letter listing bounds.
const (
	defaultDeadPage = 100
	maxDeadPage     = 1000
)

// webhookCaller authenticates an API key for the webhook endpoints and
// returns the outbox, or answers the error.
func (g *Gateway) webhookCaller(w http.ResponseWriter, r *http.Request) (*hooks, bool) {
	c, oe := g.httpCaller(r, true, false)
	if oe != nil {
		writeError(w, oe)
		return nil, false
	}
	if !g.allow(w, c) {
		return nil, false
	}
	if g.hooks == nil {
		writeError(w, &opError{protocol.CodeNotFound, "no webhook outbox on this gateway"})
		return nil, false
	}
	return g.hooks, true
}

// apiDeadLetters answers GET /v1/webhooks/dead?limit=100: the dead
// letters, the oldest failure first.
func (g *Gateway) apiDeadLetters(w http.ResponseWriter, r *http.Request) {
	h, ok := g.webhookCaller(w, r)
	if !ok {
		return
	}
	limit := defaultDeadPage
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			writeError(w, &opError{protocol.CodeBadRequest, "limit must be a positive number"})
			return
		}
		limit = min(n, maxDeadPage)
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.RequestTimeout)
	defer cancel()
	ds, err := h.outbox.DeadLetters(ctx, limit)
	if err != nil {
		writeError(w, g.refusal(ctx, err))
		return
	}
	out := make([]deadLetterJSON, len(ds))
	for i, d := range ds {
		payload := json.RawMessage(d.Payload)
		if !json.Valid(payload) {
			payload, _ = json.Marshal(string(d.Payload))
		}
		out[i] = deadLetterJSON{ID: d.Key, Type: d.Type, Attempts: d.Attempts, LastError: d.LastError,
			FailedAt: protocol.FormatTime(d.FailedAt), Payload: payload}
	}
	writeJSON(w, http.StatusOK, struct {
		Dead []deadLetterJSON `json:"dead"`
	}{out})
}

// apiReplayDead answers POST /v1/webhooks/dead/replay {"ids":[...]}: the
// dead letters named (none named, or no body: all of them) go back into
// the outbox with their attempts at 0.
func (g *Gateway) apiReplayDead(w http.ResponseWriter, r *http.Request) {
	h, ok := g.webhookCaller(w, r)
	if !ok {
		return
	}
	var req struct {
		IDs []string `json:"ids"`
	}
	if r.ContentLength != 0 {
		if oe := readJSON(w, r, 1<<20, &req); oe != nil && !(r.ContentLength < 0 && strings.HasSuffix(oe.msg, "EOF")) {
			writeError(w, oe)
			return
		}
	}
	ids := req.IDs
	if len(ids) == 0 {
		ids = nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.RequestTimeout)
	defer cancel()
	n, err := h.outbox.Replay(ctx, ids)
	if err != nil {
		writeError(w, g.refusal(ctx, err))
		return
	}
	g.log.Info("webhook dead letters replayed", "replayed", n, "asked", len(ids))
	writeJSON(w, http.StatusOK, struct {
		Replayed int `json:"replayed"`
	}{n})
}
