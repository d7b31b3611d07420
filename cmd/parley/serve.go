package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/memory"
	"github.com/parley-chat/parley/pkg/broker/redis"
	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/webhook"
)

// serveConfig is what `parley serve` runs with: its flags (defaults as
// given, each also settable as PARLEY_<FLAG>) and what parseServe derives
// from them.
type serveConfig struct {
	addr           string        // --addr: listen address; default ":8080"
	redisURL       string        // --redis: Redis URL; default "": the embedded memory broker, one node only (unless the next two)
	redisCluster   string        // --redis-cluster: seed nodes host:port,... of a Redis Cluster; default ""
	redisSentinel  string        // --redis-sentinel: master-name@host:port,... of Redis Sentinels; default ""
	redisUsername  string        // --redis-username: for --redis-cluster and --redis-sentinel; default ""
	redisPassword  string        // --redis-password: for --redis-cluster and --redis-sentinel; default ""; never logged
	nodeID         string        // --node-id: node name in welcome frames, logs and metrics; default "": the hostname
	history        int           // --history: messages kept per room; default broker.DefaultRetention (1000)
	backlog        int           // --backlog: messages a join without since receives; default 50
	devAuth        bool          // --dev-auth: hello may name its user without a token; default false
	jwtSecret      string        // --jwt-secret: HS256 secret of client tokens; default ""
	jwtPublicKey   string        // --jwt-public-key: PEM RSA or EC P-256 public key file of client tokens (RS256/ES256); default ""
	jwksURL        string        // --jwks-url: JWKS of client tokens' keys, by kid; default "" (one of the three, or --dev-auth, is required)
	origins        string        // --allowed-origins: comma-separated origin host patterns; default "": the gateway's own host only
	logLevel       string        // --log-level: debug, info, warn or error; default "info"
	pprofAddr      string        // --pprof-addr: private address of net/http/pprof; default "": off
	metricsAddr    string        // --metrics-addr: private address of /metrics; default "": on the gateway's listener
	drainTimeout   time.Duration // --drain-timeout: how long a drain waits for connections to leave; default 20s
	drainSpread    time.Duration // --drain-spread: time over which a drain spreads the 1012 closes; default 3s
	trustedProxies string        // --trusted-proxies: comma-separated CIDRs whose X-Forwarded-For is believed; default "": none

	// limits
	maxFrame        int           // --max-frame-bytes: largest frame a client may send; default 64 KiB
	maxBody         int           // --max-body-bytes: largest message body; default 4 KiB
	rateLimit       float64       // --rate-limit: frames per second per connection, sustained; default 20
	rateBurst       int           // --rate-burst: frames at once above the rate; default 40
	outboundQueue   int           // --outbound-queue: live frames waiting for a writer before 1013; default 4096
	outboundBytes   int           // --outbound-bytes: bytes of those frames before 1013; default 2 MiB
	maxConnsPerUser int           // --max-conns-per-user: connections per user; default 100; -1: no limit
	maxConnsPerIP   int           // --max-conns-per-ip: connections per client address; default 0: no limit
	helloTimeout    time.Duration // --hello-timeout: how long a connection may take to say hello; default 10s
	typingInterval  time.Duration // --typing-interval: shortest time between two typing notices a connection relays; default 2s
	maxRoomsPerUser int           // --max-rooms-per-user: rooms one user may be a member of; default 1000; -1: no limit
	maxRoomMembers  int           // --max-room-members: members an invite may bring a room to; default 1000; -1: no limit
	presenceBeat    time.Duration // --presence-interval: how often the node beats (presence heartbeat); default 5s
	presenceTTL     time.Duration // --presence-ttl: how long a beat lasts; a killed node's users are gone within it and a beat; default 20s
	presenceDetail  int           // --presence-detail: rooms with more connections get presence counts only, no events; default 100
	maxPollWait     time.Duration // --max-poll-wait: the longest wait a long-poll may ask for; default 55s
	sseHeartbeat    time.Duration // --sse-heartbeat: how often an idle Server-Sent Events stream gets a comment; default 15s

	// the server API
	apiKeys   []gateway.APIKey // --api-key NAME:SECRET (repeatable), and PARLEY_API_KEYS (comma-separated): both add up; default none
	apiKeyErr error            // the first bad --api-key, reported by parseServe (the flag package would echo the secret)

	// webhooks (docs/webhooks.md)
	webhookURL       string        // --webhook-url: where events are POSTed; default "": no webhooks
	webhookSecret    string        // --webhook-secret: whsec_<base64> signing secret; required with --webhook-url; never logged
	webhookEvents    string        // --webhook-events: comma-separated event types; default "message.offline"
	webhookAttempts  int           // --webhook-attempts: attempts before a dead letter; default 8
	webhookRetryBase time.Duration // --webhook-retry-base: first backoff ceiling; default 1s
	webhookRetryMax  time.Duration // --webhook-retry-max: largest backoff ceiling; default 5m
	webhookClaimIdle time.Duration // --webhook-claim-idle: how long an event taken by a gateway waits before another takes it over; default 60s

	// derived by parseServe
	level      slog.Level     // from --log-level
	redis      redis.Config   // from --redis, --redis-cluster or --redis-sentinel; its zero value: the memory broker
	proxies    []netip.Prefix // from --trusted-proxies
	hookEvents []string       // from --webhook-events
}

func serveFlags(cfg *serveConfig, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("parley serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", ":8080", "listen address")
	fs.StringVar(&cfg.redisURL, "redis", "", "Redis URL (redis://host:6379/0); empty (and no --redis-cluster or --redis-sentinel): embedded memory broker, one node only")
	fs.StringVar(&cfg.redisCluster, "redis-cluster", "", "seed nodes of a Redis Cluster (Redis 7+), host:port,host:port,...; instead of --redis")
	fs.StringVar(&cfg.redisSentinel, "redis-sentinel", "", "a master watched by Redis Sentinels, master-name@host:port,host:port,...; instead of --redis")
	fs.StringVar(&cfg.redisUsername, "redis-username", "", "ACL user for --redis-cluster and --redis-sentinel (a --redis URL carries its own)")
	fs.StringVar(&cfg.redisPassword, "redis-password", "", "password for --redis-cluster and --redis-sentinel (a --redis URL carries its own); better set as PARLEY_REDIS_PASSWORD")
	fs.StringVar(&cfg.nodeID, "node-id", "", "node name in welcome frames, logs and metrics (default: hostname)")
	fs.IntVar(&cfg.history, "history", broker.DefaultRetention, "messages kept per room")
	fs.IntVar(&cfg.backlog, "backlog", 50, "messages a join without since receives")
	fs.BoolVar(&cfg.devAuth, "dev-auth", false, "let hello name its user without a token (development only)")
	fs.StringVar(&cfg.jwtSecret, "jwt-secret", "", "HS256 secret that signs client tokens (sub = user)")
	fs.StringVar(&cfg.jwtPublicKey, "jwt-public-key", "", "PEM file of the RSA or EC P-256 public key that verifies client tokens (RS256 or ES256, by key type)")
	fs.StringVar(&cfg.jwksURL, "jwks-url", "", "URL of a JWKS whose keys (by kid) verify client tokens (RS256, ES256); refetched when a token names an unknown kid, at most every 10s")
	fs.StringVar(&cfg.origins, "allowed-origins", "", "comma-separated origin host patterns allowed besides the gateway's own host")
	fs.StringVar(&cfg.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cfg.pprofAddr, "pprof-addr", "", "serve net/http/pprof on this separate address (e.g. 127.0.0.1:6060); empty: off. Never expose it publicly")
	fs.DurationVar(&cfg.drainTimeout, "drain-timeout", 20*time.Second, "how long SIGTERM waits for connections to leave")
	fs.DurationVar(&cfg.drainSpread, "drain-spread", 3*time.Second, "time over which SIGTERM spreads the 1012 closes; keep it under the load balancer's mark-down time")
	fs.StringVar(&cfg.metricsAddr, "metrics-addr", "", "serve /metrics on this separate address (e.g. :9090) instead of the gateway's own listener; empty: on the gateway's listener")
	fs.IntVar(&cfg.maxFrame, "max-frame-bytes", 64<<10, "largest frame a client may send (larger: close 1009)")
	fs.IntVar(&cfg.maxBody, "max-body-bytes", 4<<10, "largest message body (larger: error too_large)")
	fs.DurationVar(&cfg.typingInterval, "typing-interval", 2*time.Second, "shortest time between two typing notices a connection relays (more are dropped)")
	fs.IntVar(&cfg.maxRoomsPerUser, "max-rooms-per-user", 1000, "rooms one user may be a member of (more: forbidden); -1: no limit")
	fs.IntVar(&cfg.maxRoomMembers, "max-room-members", 1000, "members an invite may bring a room to (more: forbidden); -1: no limit")
	fs.DurationVar(&cfg.presenceBeat, "presence-interval", 5*time.Second, "how often the node beats: the heartbeat that keeps its users present in their rooms")
	fs.DurationVar(&cfg.presenceTTL, "presence-ttl", 20*time.Second, "how long a beat lasts: a killed node's users are gone from presence within it and one interval")
	fs.IntVar(&cfg.presenceDetail, "presence-detail", 100, "rooms with more connections than this get presence counts only, and no per-user presence events")
	fs.Float64Var(&cfg.rateLimit, "rate-limit", 20, "frames per second a connection may send, sustained")
	fs.IntVar(&cfg.rateBurst, "rate-burst", 40, "frames a connection may send at once above the rate; more than this many refused in a row closes it (1008 flood)")
	fs.IntVar(&cfg.outboundQueue, "outbound-queue", 4096, "live frames that may wait for a connection's writer before it is closed as a slow consumer (1013)")
	fs.IntVar(&cfg.outboundBytes, "outbound-bytes", 2<<20, "bytes of live frames that may wait for a connection's writer before it is closed as a slow consumer (1013)")
	fs.IntVar(&cfg.maxConnsPerUser, "max-conns-per-user", 100, "connections one user may hold on this gateway (more: close 1008); -1: no limit")
	fs.IntVar(&cfg.maxConnsPerIP, "max-conns-per-ip", 0, "connections one client address may hold on this gateway (more: HTTP 429); 0: no limit")
	fs.StringVar(&cfg.trustedProxies, "trusted-proxies", "", "comma-separated networks (CIDR) of load balancers whose X-Forwarded-For names the client address")
	fs.DurationVar(&cfg.helloTimeout, "hello-timeout", 10*time.Second, "how long a connection may take to send hello (else close 1008)")
	fs.Var(apiKeysFlag{&cfg.apiKeys, &cfg.apiKeyErr}, "api-key", "a backend's key to the server API (/v1/), NAME:SECRET with a secret of 16+ characters; repeatable; PARLEY_API_KEYS adds more, comma-separated")
	fs.DurationVar(&cfg.maxPollWait, "max-poll-wait", 55*time.Second, "the longest wait a long-poll may ask for (a longer one is cut to it); keep it under the load balancer's timeouts")
	fs.DurationVar(&cfg.sseHeartbeat, "sse-heartbeat", 15*time.Second, "how often an idle Server-Sent Events stream gets a heartbeat comment; keep it under the load balancer's timeouts")
	fs.StringVar(&cfg.webhookURL, "webhook-url", "", "URL that receives webhooks (POST, signed the Standard Webhooks way); empty: no webhooks")
	fs.StringVar(&cfg.webhookSecret, "webhook-secret", "", "secret that signs webhooks: whsec_<base64 of at least 16 bytes>; required with --webhook-url")
	fs.StringVar(&cfg.webhookEvents, "webhook-events", gateway.EventMessageOffline, "comma-separated webhook events: message.offline, message.posted, member.added, member.removed")
	fs.IntVar(&cfg.webhookAttempts, "webhook-attempts", 8, "attempts of a webhook before it becomes a dead letter")
	fs.DurationVar(&cfg.webhookRetryBase, "webhook-retry-base", time.Second, "backoff after a webhook's first failure (up to it, at random; doubling after each failure)")
	fs.DurationVar(&cfg.webhookRetryMax, "webhook-retry-max", 5*time.Minute, "largest backoff between two attempts of a webhook")
	fs.DurationVar(&cfg.webhookClaimIdle, "webhook-claim-idle", 60*time.Second, "how long a webhook taken by a gateway may stay unsettled before another gateway takes it over (keep it over 10s, a POST's timeout)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: parley serve [flags]\n\nRuns one gateway node. Each flag may also be set as PARLEY_<FLAG> (e.g. PARLEY_REDIS, PARLEY_NODE_ID).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// parseServe parses and checks serve's flags (and PARLEY_* variables). It
// reports ok false with the exit code when there is nothing to run: --help
// (0) or a bad value, said in one line on stderr (2); a flag the flag
// package cannot parse gets the flag package's message and the usage
// before that line.
func parseServe(args []string, stderr io.Writer) (cfg serveConfig, code int, ok bool) {
	fs := serveFlags(&cfg, stderr)
	if err := applyEnv(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, 0, false
		}
		fmt.Fprintf(stderr, "parley serve: %v\n", err)
		return cfg, 2, false
	}
	if err := cfg.level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		fmt.Fprintf(stderr, "parley serve: --log-level: %v\n", err)
		return cfg, 2, false
	}
	if cfg.history <= 0 || cfg.backlog <= 0 || cfg.drainSpread <= 0 || cfg.drainTimeout <= 0 {
		fmt.Fprintln(stderr, "parley serve: --history, --backlog, --drain-spread and --drain-timeout must be positive")
		return cfg, 2, false
	}
	for _, bad := range []struct {
		flag, want string
		bad        bool
	}{
		{"--max-frame-bytes", "positive", cfg.maxFrame <= 0},
		{"--max-body-bytes", "positive", cfg.maxBody <= 0},
		{"--rate-limit", "positive", cfg.rateLimit <= 0},
		{"--rate-burst", "positive", cfg.rateBurst <= 0},
		{"--outbound-queue", "positive", cfg.outboundQueue <= 0},
		{"--outbound-bytes", "positive", cfg.outboundBytes <= 0},
		{"--hello-timeout", "positive", cfg.helloTimeout <= 0},
		{"--max-poll-wait", "positive", cfg.maxPollWait <= 0},
		{"--sse-heartbeat", "positive", cfg.sseHeartbeat <= 0},
		{"--max-conns-per-user", "positive, or -1 for no limit", cfg.maxConnsPerUser == 0 || cfg.maxConnsPerUser < -1},
		{"--max-conns-per-ip", "0 (no limit) or more", cfg.maxConnsPerIP < 0},
	} {
		if bad.bad {
			fmt.Fprintf(stderr, "parley serve: %s must be %s\n", bad.flag, bad.want)
			return cfg, 2, false
		}
	}
	if err := cfg.parseRedis(); err != nil {
		fmt.Fprintf(stderr, "parley serve: %v\n", err)
		return cfg, 2, false
	}
	for _, p := range strings.Split(cfg.trustedProxies, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			fmt.Fprintf(stderr, "parley serve: --trusted-proxies: %q is not a network like 10.0.0.0/8: %v\n", p, err)
			return cfg, 2, false
		}
		cfg.proxies = append(cfg.proxies, pfx)
	}
	if cfg.apiKeyErr != nil {
		fmt.Fprintf(stderr, "parley serve: --api-key: %v\n", cfg.apiKeyErr)
		return cfg, 2, false
	}
	envKeys, err := gateway.ParseAPIKeys(os.Getenv("PARLEY_API_KEYS"))
	if err != nil {
		fmt.Fprintf(stderr, "parley serve: PARLEY_API_KEYS: %v\n", err)
		return cfg, 2, false
	}
	cfg.apiKeys = append(cfg.apiKeys, envKeys...)
	names := map[string]bool{}
	for _, k := range cfg.apiKeys {
		if names[k.Name] {
			fmt.Fprintf(stderr, "parley serve: API key %q is given twice (--api-key, PARLEY_API_KEYS)\n", k.Name)
			return cfg, 2, false
		}
		names[k.Name] = true
	}
	if cfg.webhookURL != "" {
		if _, err := webhook.ParseSecret(cfg.webhookSecret); err != nil {
			// The secret itself is never echoed.
			fmt.Fprintf(stderr, "parley serve: --webhook-secret: %v\n", err)
			return cfg, 2, false
		}
		events, err := gateway.ParseWebhookEvents(cfg.webhookEvents)
		if err != nil {
			fmt.Fprintf(stderr, "parley serve: --webhook-events: %v\n", err)
			return cfg, 2, false
		}
		if cfg.webhookAttempts <= 0 || cfg.webhookRetryBase <= 0 || cfg.webhookRetryMax <= 0 || cfg.webhookClaimIdle <= 0 {
			fmt.Fprintln(stderr, "parley serve: --webhook-attempts, --webhook-retry-base, --webhook-retry-max and --webhook-claim-idle must be positive")
			return cfg, 2, false
		}
		cfg.hookEvents = events
	}
	if !cfg.devAuth && cfg.jwtSecret == "" && cfg.jwtPublicKey == "" && cfg.jwksURL == "" {
		fmt.Fprintln(stderr, "parley serve: set --jwt-secret (PARLEY_JWT_SECRET), --jwt-public-key or --jwks-url, or --dev-auth for development")
		return cfg, 2, false
	}
	return cfg, 0, true
}

// parseRedis derives cfg.redis from the --redis* flags.
func (cfg *serveConfig) parseRedis() error {
	set := 0
	for _, v := range []string{cfg.redisURL, cfg.redisCluster, cfg.redisSentinel} {
		if v != "" {
			set++
		}
	}
	switch {
	case set > 1:
		return errors.New("--redis, --redis-cluster and --redis-sentinel name where Redis is in three ways: set one")
	case cfg.redisURL != "" && (cfg.redisUsername != "" || cfg.redisPassword != ""):
		return errors.New("--redis-username and --redis-password are for --redis-cluster and --redis-sentinel: put them in the --redis URL, as in redis://user:password@host:6379/0")
	case set == 0 && (cfg.redisUsername != "" || cfg.redisPassword != ""):
		return errors.New("--redis-username and --redis-password need --redis-cluster or --redis-sentinel")
	}
	addrs := func(flag, list string) ([]string, error) {
		var out []string
		for _, a := range strings.Split(list, ",") {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				return nil, fmt.Errorf("%s: %q is not host:port", flag, a)
			}
			out = append(out, a)
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%s: no host:port given", flag)
		}
		return out, nil
	}
	if set == 0 {
		return nil // the memory broker
	}
	cfg.redis = redis.Config{Username: cfg.redisUsername, Password: cfg.redisPassword, Retention: cfg.history}
	switch {
	case cfg.redisURL != "":
		cfg.redis.URL = cfg.redisURL
	case cfg.redisCluster != "":
		a, err := addrs("--redis-cluster", cfg.redisCluster)
		if err != nil {
			return err
		}
		cfg.redis.ClusterAddrs = a
	case cfg.redisSentinel != "":
		name, list, ok := strings.Cut(cfg.redisSentinel, "@")
		if !ok || strings.TrimSpace(name) == "" {
			return fmt.Errorf("--redis-sentinel: %q is not master-name@host:port (more sentinels after commas)", cfg.redisSentinel)
		}
		a, err := addrs("--redis-sentinel", list)
		if err != nil {
			return err
		}
		cfg.redis.SentinelMaster, cfg.redis.SentinelAddrs = strings.TrimSpace(name), a
	}
	return nil
}

// usesRedis reports whether the gateway runs on Redis rather than the
// memory broker.
func (cfg *serveConfig) usesRedis() bool {
	return cfg.redis.URL != "" || len(cfg.redis.ClusterAddrs) > 0 || cfg.redis.SentinelMaster != ""
}

// redisMode names where Redis is, for the start log: never an address's
// credentials.
func (cfg *serveConfig) redisMode() string {
	switch {
	case len(cfg.redis.ClusterAddrs) > 0:
		return "cluster"
	case cfg.redis.SentinelMaster != "":
		return "sentinel"
	case cfg.redis.URL != "":
		return "single"
	}
	return "memory"
}

// runServe runs a gateway with cfg until ctx ends, then drains it (its
// cause, a signal, is logged) and returns the exit code. Errors that stop
// it from starting are one line on stderr and exit 1.
func runServe(ctx context.Context, cfg serveConfig, stderr io.Writer) int {
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.level}))

	gcfg := gateway.Config{
		NodeID:           cfg.nodeID,
		DrainSpread:      cfg.drainSpread,
		Backlog:          cfg.backlog,
		DevAuth:          cfg.devAuth,
		Logger:           log,
		MaxFrameBytes:    int64(cfg.maxFrame),
		MaxBodyBytes:     cfg.maxBody,
		RateLimit:        cfg.rateLimit,
		RateBurst:        cfg.rateBurst,
		OutboundQueue:    cfg.outboundQueue,
		OutboundBytes:    cfg.outboundBytes,
		MaxConnsPerUser:  cfg.maxConnsPerUser,
		TypingInterval:   cfg.typingInterval,
		MaxRoomsPerUser:  cfg.maxRoomsPerUser,
		MaxRoomMembers:   cfg.maxRoomMembers,
		PresenceInterval: cfg.presenceBeat,
		PresenceTTL:      cfg.presenceTTL,
		PresenceDetail:   cfg.presenceDetail,
		MaxConnsPerIP:    cfg.maxConnsPerIP,
		TrustedProxies:   cfg.proxies,
		HelloTimeout:     cfg.helloTimeout,
		MaxPollWait:      cfg.maxPollWait,
		SSEHeartbeat:     cfg.sseHeartbeat,
		PrivateMetrics:   cfg.metricsAddr != "",
		APIKeys:          cfg.apiKeys,
	}
	if cfg.webhookURL != "" {
		gcfg.Webhooks = &gateway.WebhookConfig{URL: cfg.webhookURL, Secret: cfg.webhookSecret, Events: cfg.hookEvents,
			Attempts: cfg.webhookAttempts, RetryBase: cfg.webhookRetryBase, RetryMax: cfg.webhookRetryMax, ClaimIdle: cfg.webhookClaimIdle}
	}
	if cfg.jwtSecret != "" || cfg.jwtPublicKey != "" || cfg.jwksURL != "" {
		v, err := auth.New(auth.Config{HMACSecret: []byte(cfg.jwtSecret), PublicKeyFile: cfg.jwtPublicKey, JWKSURL: cfg.jwksURL})
		if err != nil {
			fmt.Fprintf(stderr, "parley serve: %v\n", err)
			return 1
		}
		gcfg.Auth = v
	}
	if cfg.origins != "" {
		for _, o := range strings.Split(cfg.origins, ",") {
			if o = strings.TrimSpace(o); o != "" {
				gcfg.AllowedOrigins = append(gcfg.AllowedOrigins, o)
			}
		}
	}
	if !cfg.usesRedis() {
		gcfg.NewBroker = func(h broker.Handler) (broker.Broker, error) {
			return memory.New(memory.Config{Handler: h, Retention: cfg.history}), nil
		}
	} else {
		gcfg.NewBroker = func(h broker.Handler) (broker.Broker, error) {
			rc := cfg.redis
			rc.Handler, rc.Logger = h, log
			return redis.New(rc)
		}
	}
	g, err := gateway.New(gcfg)
	if err != nil {
		fmt.Fprintf(stderr, "parley serve: %v\n", err)
		return 1
	}
	keyNames := make([]string, len(cfg.apiKeys))
	for i, k := range cfg.apiKeys {
		keyNames[i] = k.Name // never the secret
	}
	log.Info("server API keys", "names", keyNames)
	if !cfg.usesRedis() {
		log.Warn("no --redis given: using the embedded memory broker; this node is a cluster of one and history is lost on exit")
	}

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		fmt.Fprintf(stderr, "parley serve: listen %s: %v\n", cfg.addr, err)
		_ = g.Close()
		return 1
	}
	// Side servers on private addresses: pprof, and metrics when they are
	// kept off the gateway's listener. Each is closed (not shut down: a CPU
	// profile in progress must not hold the exit) and waited for at exit.
	var sides []*sideServer
	closeSides := func() {
		for _, s := range sides {
			s.close()
		}
	}
	metricsMux := http.NewServeMux()
	metricsMux.Handle("/metrics", g.MetricsHandler())
	for _, side := range []struct {
		flag, addr, name string
		handler          http.Handler
	}{
		{"--pprof-addr", cfg.pprofAddr, "pprof", pprofMux()},
		{"--metrics-addr", cfg.metricsAddr, "metrics", metricsMux},
	} {
		if side.addr == "" {
			continue
		}
		s, err := startSide(log, side.name, side.addr, side.handler)
		if err != nil {
			fmt.Fprintf(stderr, "parley serve: %s: %v\n", side.flag, err)
			_ = ln.Close()
			closeSides()
			_ = g.Close()
			return 1
		}
		sides = append(sides, s)
	}
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("serving", "addr", ln.Addr().String(), "node", g.NodeID(), "redis", cfg.redisMode(), "dev_auth", cfg.devAuth)

	code := 0
	select {
	case <-ctx.Done():
		log.Info("stopping: draining", "cause", context.Cause(ctx).Error())
		// Stop accepting first: the listener closes, so the load balancer's
		// next connection to this node is refused and it retries another
		// gateway at once, instead of sending reconnecting clients here
		// until its health checks mark the node down. Shutdown closes the
		// listener and idle HTTP connections at once, then waits for
		// requests in progress (upgraded WebSockets are the gateway's, not
		// the server's, and are drained below).
		shut := make(chan struct{})
		go func() {
			defer close(shut)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = srv.Shutdown(ctx)
			cancel()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), cfg.drainTimeout)
		if err := g.Drain(ctx); err != nil {
			log.Warn("drain incomplete", "err", err)
		}
		cancel()
		<-shut
	case err := <-served:
		log.Error("http server stopped", "err", err)
		code = 1
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(ctx)
		cancel()
	}
	closeSides()
	if err := g.Close(); err != nil {
		log.Warn("close", "err", err)
	}
	log.Info("stopped")
	return code
}

// sideServer is an HTTP server on a private address of its own, beside
// the gateway's listener.
type sideServer struct {
	srv  *http.Server
	done chan struct{}
}

// startSide listens on addr and serves h there until close.
func startSide(log *slog.Logger, name, addr string, h http.Handler) (*sideServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	s := &sideServer{srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn(name+" server stopped", "err", err)
		}
	}()
	log.Info("serving "+name, "addr", ln.Addr().String())
	return s, nil
}

// close stops the server at once and waits for its goroutine.
func (s *sideServer) close() {
	_ = s.srv.Close()
	<-s.done
}

// pprofMux serves the net/http/pprof handlers on their usual paths, on a
// mux of its own so that the gateway's listener never exposes them.
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// apiKeysFlag is --api-key: each NAME:SECRET adds a key. Its text (in
// --help) names the keys, never a secret, and Set keeps its error in err
// rather than return it: the flag package would print the value with it.
type apiKeysFlag struct {
	keys *[]gateway.APIKey
	err  *error
}

func (f apiKeysFlag) String() string {
	if f.keys == nil {
		return ""
	}
	names := make([]string, len(*f.keys))
	for i, k := range *f.keys {
		names[i] = k.Name
	}
	return strings.Join(names, ",")
}

// Set adds one key, or keeps the first error.
func (f apiKeysFlag) Set(s string) error {
	k, err := gateway.ParseAPIKey(s)
	if err != nil {
		if *f.err == nil {
			*f.err = err
		}
		return nil
	}
	*f.keys = append(*f.keys, k)
	return nil
}
