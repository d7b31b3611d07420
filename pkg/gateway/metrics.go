package gateway

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type metrics struct {
	connections    prometheus.Gauge
	rooms          prometheus.Gauge
	framesIn       prometheus.Counter
	framesOut      prometheus.Counter
	publishSeconds prometheus.Histogram
	slowCloses     prometheus.Counter
	pubsubLost     prometheus.Counter
	gapsRepaired   prometheus.Counter
	errors         *prometheus.CounterVec
	registry       *prometheus.Registry
}

func newMetrics(reg *prometheus.Registry, node string) *metrics {
	labels := prometheus.Labels{"node": node}
	m := &metrics{
		registry: reg,
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "parley_connections",
			Help: "Open WebSocket connections.", ConstLabels: labels}),
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
		pubsubLost: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_pubsub_reconnects_total",
			Help: "Losses of the pub/sub connection (each followed by a reconnect and a history re-read).", ConstLabels: labels}),
		gapsRepaired: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_gaps_repaired_total",
			Help: "Messages that pub/sub lost and the gateway re-read from history.", ConstLabels: labels}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_errors_total",
			Help: "Error frames sent, by code.", ConstLabels: labels}, []string{"code"}),
	}
	reg.MustRegister(m.connections, m.rooms, m.framesIn, m.framesOut, m.publishSeconds,
		m.slowCloses, m.pubsubLost, m.gapsRepaired, m.errors)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}
