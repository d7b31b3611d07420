package gateway

import (
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/pkg/auth"
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
	// Auth verifies client tokens (pkg/auth): their "sub" is the user,
	// their "rooms" the rooms they allow, their "exp" ends the connection
	// unless the client refreshes. Default: HS256 with JWTSecret when it
	// is set. One of Auth, JWTSecret and DevAuth is required.
	Auth *auth.Verifier
	// JWTSecret verifies HS256 tokens when Auth is nil. Default none.
	JWTSecret []byte
	// RefreshWindow is how long before a token's exp a v1 connection is
	// sent token_expiring, to refresh it. Default 60s.
	RefreshWindow time.Duration
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
	// OutboundQueue is how many live frames may wait for a connection's
	// writer, and OutboundBytes how many bytes of them, before the
	// connection is closed with 1013 as a slow consumer. A catch-up (a
	// join's missed messages, a history repair's merge) does not count:
	// only a client that does not read fills them. Defaults 4096 frames
	// and 2 MiB.
	OutboundQueue int
	OutboundBytes int
	// ReadBufferSize and WriteBufferSize are the sizes of each connection's
	// read and write buffers. A connection holds both for its whole life,
	// idle or not, so they are most of what an idle connection costs;
	// larger frames are read and written past them, a little slower.
	// Defaults 1 KiB and 2 KiB.
	ReadBufferSize  int
	WriteBufferSize int
	// MaxRoomsPerUser is the most rooms one user may be a member of; a
	// join or create past it is forbidden. Default 1000; -1: no limit.
	MaxRoomsPerUser int
	// MaxRoomMembers is the most members an invite may bring a room to.
	// Default 1000; -1: no limit.
	MaxRoomMembers int
	// PresenceInterval is how often the node beats: the heartbeat that
	// keeps its connections present in their rooms. Default 5s.
	PresenceInterval time.Duration
	// PresenceTTL is how long a beat lasts: a node that stops beating (it
	// was killed, or cut off from Redis) has its users gone from their
	// rooms within PresenceTTL + PresenceInterval. Default 20s.
	PresenceTTL time.Duration
	// PresenceDetail is the most connections a room may have for its
	// presence to name users: in bigger rooms a presence request gets the
	// count only, and joins and leaves send no presence events (the
	// join/leave storms of big rooms). Default 100.
	PresenceDetail int
	// TypingInterval is the shortest time between two typing notices a
	// connection relays; more within it are dropped. Default 2s.
	TypingInterval time.Duration
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
	// Registerer receives the gateway's metrics, and Gatherer is what
	// /metrics (and MetricsHandler) serves. Set both to share an
	// application's registry: the Go and process collectors are added
	// unless it holds them already. Default: a new registry for both.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// PrivateMetrics keeps /metrics off the gateway's own handler (404),
	// for an embedder that serves MetricsHandler on a private address
	// (parley serve --metrics-addr). Default false: /metrics is served.
	PrivateMetrics bool
	// HealthInterval is how often the gateway checks its broker (Redis) in
	// the background, each check bounded by the interval; /healthz/deep
	// and the parley_redis_up metric answer from the last check, so they
	// never wait on Redis. Default 1s.
	HealthInterval time.Duration
	// MaxConnsPerUser is how many connections one user may hold on this
	// gateway; the next one is closed with 1008 after its hello. Default
	// 100; -1 means no limit.
	MaxConnsPerUser int
	// MaxConnsPerIP is how many connections one client address may hold on
	// this gateway; the next upgrade is answered HTTP 429. The address is
	// the connection's peer, or, when the peer is in TrustedProxies, the
	// last address X-Forwarded-For names. Default 0: no limit (behind a
	// load balancer without TrustedProxies every client has its address).
	MaxConnsPerIP int
	// TrustedProxies are the networks whose X-Forwarded-For is believed
	// (a load balancer's). Default none.
	TrustedProxies []netip.Prefix
	// APIKeys are the backends' keys to the server API (/v1/). Default
	// none: the endpoints that need a key answer 401.
	APIKeys []APIKey
	// APIRateLimit is the sustained number of requests per second one API
	// key may make to this gateway, and APIRateBurst the burst above it;
	// more are answered 429 with Retry-After. A user calling the HTTP API
	// with a token has RateLimit and RateBurst, as a connection does.
	// Defaults 1000/s and 2000.
	APIRateLimit float64
	APIRateBurst int
	// SSEHeartbeat is how often an idle Server-Sent Events stream gets a
	// comment line, so proxies keep it open and a dead client is found.
	// Default 15s.
	SSEHeartbeat time.Duration
	// MaxPollWait is the longest wait a long-poll may ask for; a longer
	// one waits this long. Default 55s (under the usual 60s proxy timeouts).
	MaxPollWait time.Duration
	// Webhooks sends events (a message for an offline user, memberships)
	// to a URL through the broker's outbox (broker.Outbox): see
	// WebhookConfig and docs/webhooks.md. Default nil: none (nor an empty
	// URL).
	Webhooks *WebhookConfig
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
		c.OutboundQueue = 4096
	}
	if c.OutboundBytes <= 0 {
		c.OutboundBytes = 2 << 20
	}
	if c.ReadBufferSize <= 0 {
		c.ReadBufferSize = 1 << 10
	}
	if c.WriteBufferSize <= 0 {
		c.WriteBufferSize = 2 << 10
	}
	if c.PresenceInterval <= 0 {
		c.PresenceInterval = 5 * time.Second
	}
	if c.PresenceTTL <= 0 {
		c.PresenceTTL = 20 * time.Second
	}
	if c.PresenceDetail == 0 {
		c.PresenceDetail = 100
	}
	if c.MaxRoomsPerUser == 0 {
		c.MaxRoomsPerUser = 1000
	}
	if c.MaxRoomMembers == 0 {
		c.MaxRoomMembers = 1000
	}
	if c.TypingInterval <= 0 {
		c.TypingInterval = 2 * time.Second
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
	if c.Registerer == nil && c.Gatherer == nil {
		r := prometheus.NewRegistry()
		c.Registerer, c.Gatherer = r, r
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry() // counted, never served
	}
	if c.Gatherer == nil {
		c.Gatherer = prometheus.NewRegistry() // serves nothing
	}
	if c.HealthInterval <= 0 {
		c.HealthInterval = time.Second
	}
	if c.RefreshWindow <= 0 {
		c.RefreshWindow = 60 * time.Second
	}
	if c.APIRateLimit <= 0 {
		c.APIRateLimit = 1000
	}
	if c.APIRateBurst <= 0 {
		c.APIRateBurst = 2000
	}
	if c.SSEHeartbeat <= 0 {
		c.SSEHeartbeat = 15 * time.Second
	}
	if c.MaxPollWait <= 0 {
		c.MaxPollWait = 55 * time.Second
	}
	if c.MaxConnsPerUser == 0 {
		c.MaxConnsPerUser = 100
	}
}
