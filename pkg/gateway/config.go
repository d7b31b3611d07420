package gateway

import (
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/memory"
	"github.com/parley-chat/parley/web"
)

// Config configures a Gateway. Zero fields take the stated defaults.
type Config struct {
	// NewBroker returns the broker the gateway publishes through, wired to
	// deliver to h. The gateway owns it and closes it in Close.
	// Default: an in-process memory broker (one node only).
	NewBroker func(h broker.Handler) (broker.Broker, error)
	// NodeID names this gateway in welcome frames, logs and metrics.
	// Default: the hostname.
	NodeID string
	// Backlog is how many recent messages a join without since receives.
	// Default 50.
	Backlog int
	// DevAuth lets hello name its user without a token. Default false.
	DevAuth bool
	// JWTSecret verifies HS256 tokens whose "sub" is the user. Required
	// unless DevAuth is set.
	JWTSecret []byte
	// AllowedOrigins are host patterns (path.Match syntax, e.g.
	// "*.example.com") whose pages may open WebSockets. The gateway's own
	// host is always allowed. Default none.
	AllowedOrigins []string
	// MaxFrameBytes is the largest frame a client may send; a larger one
	// closes the connection with 1009. Default 64 KiB.
	MaxFrameBytes int64
	// MaxBodyBytes is the largest message body. Default 4 KiB.
	MaxBodyBytes int
	// HelloTimeout is how long a connection may take to send hello.
	// Default 10s.
	HelloTimeout time.Duration
	// OutboundQueue is how many frames may wait for a slow connection before
	// it is closed with 1013. Default 512.
	OutboundQueue int
	// ReadBufferSize and WriteBufferSize are the sizes of each connection's
	// read and write buffers. A connection holds both for its whole life,
	// idle or not, so they are most of what an idle connection costs;
	// larger frames are read and written past them, a little slower.
	// Defaults 1 KiB and 2 KiB.
	ReadBufferSize  int
	WriteBufferSize int
	// PingInterval is how often the gateway pings an idle client; a client
	// that does not answer within WriteTimeout is dropped. Default 25s.
	PingInterval time.Duration
	// WriteTimeout bounds one write or ping. Default 10s.
	WriteTimeout time.Duration
	// RequestTimeout bounds one broker call made for a client request.
	// Default 5s.
	RequestTimeout time.Duration
	// RateLimit is the sustained number of frames per second a connection
	// may send, and RateBurst the burst above it. Frames over the limit get
	// a rate_limited error; a connection that keeps flooding (more than
	// RateBurst rejected frames in a row) is closed with 1008.
	// Defaults 20/s and 40.
	RateLimit float64
	RateBurst int
	// DrainSpread is the time over which Drain spreads the 1012 closes of
	// its connections, so they do not all reconnect at once. Default 3s.
	DrainSpread time.Duration
	// Logger receives JSON-able structured logs. Default slog.Default().
	// Message bodies and tokens are never logged.
	Logger *slog.Logger
	// Web serves plain HTTP requests (no WebSocket upgrade) for every path
	// other than /healthz, /readyz and /metrics: the browser client at "/"
	// and its assets. Set it to http.NotFoundHandler() to serve no page.
	// Default: the embedded browser client, web.Handler().
	Web http.Handler
	// Registerer receives the gateway's metrics. Default: a new registry,
	// served by MetricsHandler.
	Registry *prometheus.Registry
}

func (c *Config) setDefaults() {
	if c.NewBroker == nil {
		c.NewBroker = func(h broker.Handler) (broker.Broker, error) {
			return memory.New(memory.Config{Handler: h}), nil
		}
	}
	if c.NodeID == "" {
		c.NodeID, _ = os.Hostname()
		if c.NodeID == "" {
			c.NodeID = "gateway"
		}
	}
	if c.Backlog <= 0 {
		c.Backlog = 50
	}
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = 64 << 10
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 4 << 10
	}
	if c.HelloTimeout <= 0 {
		c.HelloTimeout = 10 * time.Second
	}
	if c.OutboundQueue <= 0 {
		c.OutboundQueue = 512
	}
	if c.ReadBufferSize <= 0 {
		c.ReadBufferSize = 1 << 10
	}
	if c.WriteBufferSize <= 0 {
		c.WriteBufferSize = 2 << 10
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 25 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.RateLimit <= 0 {
		c.RateLimit = 20
	}
	if c.RateBurst <= 0 {
		c.RateBurst = 40
	}
	if c.DrainSpread <= 0 {
		c.DrainSpread = 3 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Web == nil {
		c.Web = web.Handler()
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
}
