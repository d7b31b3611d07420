package gateway

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type metrics struct {
	connections      prometheus.Gauge
	rooms            prometheus.Gauge
	framesIn         prometheus.Counter
	framesOut        prometheus.Counter
	publishSeconds   prometheus.Histogram
	slowCloses       prometheus.Counter
	ephemeralDropped prometheus.Counter
	choresDropped    prometheus.Counter
	pubsubLost       prometheus.Counter
	pubsubSilent     prometheus.Counter
	gapsRepaired     prometheus.Counter
	brokerUp         prometheus.Gauge
	draining         prometheus.Gauge
	refused          *prometheus.CounterVec
	errors           *prometheus.CounterVec
	sseStreams       prometheus.Gauge       // open Server-Sent Events streams (sse.go), also counted in connections
	pollsWaiting     prometheus.Gauge       // long-polls waiting for a message (poll.go)
	polls            *prometheus.CounterVec // long-polls with a wait answered, by result: data, timeout, drain
	webhookSent      *prometheus.CounterVec
	webhookFailures  prometheus.Counter
	webhookRetries   prometheus.Counter
	webhookDead      prometheus.Counter
	webhookDropped   prometheus.Counter
	webhookSeconds   prometheus.Histogram
	gatherer         prometheus.Gatherer
}

func newMetrics(reg prometheus.Registerer, gat prometheus.Gatherer, node string) (*metrics, error) {
	labels := prometheus.Labels{"node": node}
	m := &metrics{
		gatherer: gat,
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "parley_connections",
			Help: "Open client connections: WebSockets, Server-Sent Events streams and waiting long-polls.", ConstLabels: labels}),
		rooms: prometheus.NewGauge(prometheus.GaugeOpts{Name: "parley_rooms",
			Help: "Rooms with at least one local member (each is one Redis subscription).", ConstLabels: labels}),
		framesIn: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_frames_in_total",
			Help: "Frames received from clients.", ConstLabels: labels}),
		framesOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_frames_out_total",
			Help: "Frames written to clients.", ConstLabels: labels}),
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "parley_publish_seconds",
			Help: "Time to store and publish one message.", ConstLabels: labels,
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}),
		slowCloses: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_slow_consumer_closes_total",
			Help: "Connections closed with 1013 because their outbound queue overflowed.", ConstLabels: labels}),
		ephemeralDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_ephemeral_dropped_total",
			Help: "Ephemeral events (typing, presence) dropped because a connection's outbound queue was full.", ConstLabels: labels}),
		choresDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_presence_dropped_total",
			Help: "Presence entries not recorded because the gateway's queue of store writes was full.", ConstLabels: labels}),
		pubsubLost: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_pubsub_reconnects_total",
			Help: "Losses of pub/sub subscriptions, one per subscriber connection lost or Redis Cluster slot moved (each followed by a resubscribe and a history re-read).", ConstLabels: labels}),
		pubsubSilent: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_pubsub_silent_total",
			Help: "Pub/sub connections dropped because a probe published through Redis did not come back through them (also counted in parley_pubsub_reconnects_total).", ConstLabels: labels}),
		gapsRepaired: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_gaps_repaired_total",
			Help: "Messages that pub/sub lost and the gateway re-read from history.", ConstLabels: labels}),
		brokerUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "parley_redis_up",
			Help: "1 when the last health check of the message store (Redis) passed, else 0.", ConstLabels: labels}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{Name: "parley_draining",
			Help: "1 while the node drains (SIGTERM), else 0.", ConstLabels: labels}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_connections_refused_total",
			Help: "Connections refused by a limit, by reason.", ConstLabels: labels}, []string{"reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_errors_total",
			Help: "Error frames sent, by code.", ConstLabels: labels}, []string{"code"}),
		sseStreams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "parley_sse_streams",
			Help: "Open Server-Sent Events streams (also counted in parley_connections).", ConstLabels: labels}),
		pollsWaiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "parley_polls_waiting",
			Help: "Long-polls waiting for a message now.", ConstLabels: labels}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_polls_total",
			Help: "Long-polls with a wait answered, by result: data (messages came), timeout (none came), drain (answered early: the node drains or the caller was disconnected).", ConstLabels: labels}, []string{"result"}),
		webhookSent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_webhook_sent_total",
			Help: "Webhooks delivered (answered 2xx), by event type.", ConstLabels: labels}, []string{"type"}),
		webhookFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_webhook_failures_total",
			Help: "Webhook attempts that failed (an error or an answer other than 2xx).", ConstLabels: labels}),
		webhookRetries: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_webhook_retries_total",
			Help: "Failed webhooks scheduled for another attempt.", ConstLabels: labels}),
		webhookDead: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_webhook_dead_total",
			Help: "Webhooks that failed their last attempt and became dead letters.", ConstLabels: labels}),
		webhookDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_webhook_dropped_total",
			Help: "Webhook notices lost before the outbox: the notifier's queue was full, or the outbox unreachable.", ConstLabels: labels}),
		webhookSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "parley_webhook_delivery_seconds",
			Help: "Time from an event's enqueueing to its delivery.", ConstLabels: labels,
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900}}),
	}
	for _, c := range []prometheus.Collector{m.connections, m.rooms, m.framesIn, m.framesOut, m.publishSeconds,
		m.slowCloses, m.ephemeralDropped, m.choresDropped, m.pubsubLost, m.pubsubSilent, m.gapsRepaired, m.brokerUp, m.draining, m.refused, m.errors,
		m.sseStreams, m.pollsWaiting, m.polls,
		m.webhookSent, m.webhookFailures, m.webhookRetries, m.webhookDead, m.webhookDropped, m.webhookSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	// An embedder's registry may hold the process-wide collectors already.
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{})
}
