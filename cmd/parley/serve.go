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
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/memory"
	"github.com/parley-chat/parley/pkg/broker/redis"
	"github.com/parley-chat/parley/pkg/gateway"
)

type serveConfig struct {
	addr, redisURL, nodeID, jwtSecret, origins, logLevel string
	pprofAddr, metricsAddr, trustedProxies               string
	history, backlog                                     int
	devAuth                                              bool
	drainTimeout, drainSpread                            time.Duration

	// limits
	maxFrame, maxBody, rateBurst, outboundQueue, outboundBytes int
	maxConnsPerUser, maxConnsPerIP                             int
	rateLimit                                                  float64
	helloTimeout                                               time.Duration
}

func serveFlags(cfg *serveConfig, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("parley serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", ":8080", "listen address")
	fs.StringVar(&cfg.redisURL, "redis", "", "Redis URL (redis://host:6379/0); empty: embedded memory broker, one node only")
	fs.StringVar(&cfg.nodeID, "node-id", "", "node name in welcome frames, logs and metrics (default: hostname)")
	fs.IntVar(&cfg.history, "history", broker.DefaultRetention, "messages kept per room")
	fs.IntVar(&cfg.backlog, "backlog", 50, "messages a join without since receives")
	fs.BoolVar(&cfg.devAuth, "dev-auth", false, "let hello name its user without a token (development only)")
	fs.StringVar(&cfg.jwtSecret, "jwt-secret", "", "HS256 secret that signs client tokens (sub = user)")
	fs.StringVar(&cfg.origins, "allowed-origins", "", "comma-separated origin host patterns allowed besides the gateway's own host")
	fs.StringVar(&cfg.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cfg.pprofAddr, "pprof-addr", "", "serve net/http/pprof on this separate address (e.g. 127.0.0.1:6060); empty: off. Never expose it publicly")
	fs.DurationVar(&cfg.drainTimeout, "drain-timeout", 20*time.Second, "how long SIGTERM waits for connections to leave")
	fs.DurationVar(&cfg.drainSpread, "drain-spread", 3*time.Second, "time over which SIGTERM spreads the 1012 closes; keep it under the load balancer's mark-down time")
	fs.StringVar(&cfg.metricsAddr, "metrics-addr", "", "serve /metrics on this separate address (e.g. :9090) instead of the gateway's own listener; empty: on the gateway's listener")
	fs.IntVar(&cfg.maxFrame, "max-frame-bytes", 64<<10, "largest frame a client may send (larger: close 1009)")
	fs.IntVar(&cfg.maxBody, "max-body-bytes", 4<<10, "largest message body (larger: error too_large)")
	fs.Float64Var(&cfg.rateLimit, "rate-limit", 20, "frames per second a connection may send, sustained")
	fs.IntVar(&cfg.rateBurst, "rate-burst", 40, "frames a connection may send at once above the rate; more than this many refused in a row closes it (1008 flood)")
	fs.IntVar(&cfg.outboundQueue, "outbound-queue", 4096, "live frames that may wait for a connection's writer before it is closed as a slow consumer (1013)")
	fs.IntVar(&cfg.outboundBytes, "outbound-bytes", 2<<20, "bytes of live frames that may wait for a connection's writer before it is closed as a slow consumer (1013)")
	fs.IntVar(&cfg.maxConnsPerUser, "max-conns-per-user", 100, "connections one user may hold on this gateway (more: close 1008); -1: no limit")
	fs.IntVar(&cfg.maxConnsPerIP, "max-conns-per-ip", 0, "connections one client address may hold on this gateway (more: HTTP 429); 0: no limit")
	fs.StringVar(&cfg.trustedProxies, "trusted-proxies", "", "comma-separated networks (CIDR) of load balancers whose X-Forwarded-For names the client address")
	fs.DurationVar(&cfg.helloTimeout, "hello-timeout", 10*time.Second, "how long a connection may take to send hello (else close 1008)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: parley serve [flags]\n\nRuns one gateway node. Each flag may also be set as PARLEY_<FLAG> (e.g. PARLEY_REDIS, PARLEY_NODE_ID).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// applyEnv sets every flag not given on the command line from PARLEY_<FLAG>.
func applyEnv(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := "PARLEY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

// serve is `parley serve`: it parses the flags into a config, then runs
// the gateway until SIGTERM or SIGINT, which drains it.
func serve(args []string, stderr io.Writer) int {
	cfg, code, ok := parseServe(args, stderr)
	if !ok {
		return code
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan struct{})
	go func() { // ends at the first signal, or when serve returns
		defer close(done)
		select {
		case sig := <-sigs:
			cancel(fmt.Errorf("signal %s", sig))
		case <-ctx.Done():
		}
	}()
	code = runServe(ctx, cfg, stderr)
	cancel(nil)
	<-done
	return code
}

// serveRun is what runServe needs: the parsed flags, checked.
type serveRun struct {
	serveConfig
	level   slog.Level
	proxies []netip.Prefix
}

// parseServe parses and checks serve's flags (and PARLEY_* variables). It
// reports ok false with the exit code when there is nothing to run: --help
// (0) or a bad value, said in one line on stderr (2).
func parseServe(args []string, stderr io.Writer) (run serveRun, code int, ok bool) {
	cfg := &run.serveConfig
	fs := serveFlags(cfg, stderr)
	if err := applyEnv(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return run, 0, false
		}
		fmt.Fprintf(stderr, "parley serve: %v\n", err)
		return run, 2, false
	}
	if err := run.level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		fmt.Fprintf(stderr, "parley serve: --log-level: %v\n", err)
		return run, 2, false
	}
	if cfg.history <= 0 || cfg.backlog <= 0 || cfg.drainSpread <= 0 || cfg.drainTimeout <= 0 {
		fmt.Fprintln(stderr, "parley serve: --history, --backlog, --drain-spread and --drain-timeout must be positive")
		return run, 2, false
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
		{"--max-conns-per-user", "positive, or -1 for no limit", cfg.maxConnsPerUser == 0 || cfg.maxConnsPerUser < -1},
		{"--max-conns-per-ip", "0 (no limit) or more", cfg.maxConnsPerIP < 0},
	} {
		if bad.bad {
			fmt.Fprintf(stderr, "parley serve: %s must be %s\n", bad.flag, bad.want)
			return run, 2, false
		}
	}
	for _, p := range strings.Split(cfg.trustedProxies, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			fmt.Fprintf(stderr, "parley serve: --trusted-proxies: %q is not a network like 10.0.0.0/8: %v\n", p, err)
			return run, 2, false
		}
		run.proxies = append(run.proxies, pfx)
	}
	if !cfg.devAuth && cfg.jwtSecret == "" {
		fmt.Fprintln(stderr, "parley serve: set --jwt-secret (PARLEY_JWT_SECRET), or --dev-auth for development")
		return run, 2, false
	}
	return run, 0, true
}

// runServe runs a gateway with cfg until ctx ends, then drains it (its
// cause, a signal, is logged) and returns the exit code. Errors that stop
// it from starting are one line on stderr and exit 1.
func runServe(ctx context.Context, run serveRun, stderr io.Writer) int {
	cfg := &run.serveConfig
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: run.level}))

	gcfg := gateway.Config{
		NodeID:          cfg.nodeID,
		DrainSpread:     cfg.drainSpread,
		Backlog:         cfg.backlog,
		DevAuth:         cfg.devAuth,
		JWTSecret:       []byte(cfg.jwtSecret),
		Logger:          log,
		MaxFrameBytes:   int64(cfg.maxFrame),
		MaxBodyBytes:    cfg.maxBody,
		RateLimit:       cfg.rateLimit,
		RateBurst:       cfg.rateBurst,
		OutboundQueue:   cfg.outboundQueue,
		OutboundBytes:   cfg.outboundBytes,
		MaxConnsPerUser: cfg.maxConnsPerUser,
		MaxConnsPerIP:   cfg.maxConnsPerIP,
		TrustedProxies:  run.proxies,
		HelloTimeout:    cfg.helloTimeout,
		PrivateMetrics:  cfg.metricsAddr != "",
	}
	if cfg.origins != "" {
		for _, o := range strings.Split(cfg.origins, ",") {
			if o = strings.TrimSpace(o); o != "" {
				gcfg.AllowedOrigins = append(gcfg.AllowedOrigins, o)
			}
		}
	}
	if cfg.redisURL == "" {
		gcfg.NewBroker = func(h broker.Handler) (broker.Broker, error) {
			return memory.New(memory.Config{Handler: h, Retention: cfg.history}), nil
		}
	} else {
		gcfg.NewBroker = func(h broker.Handler) (broker.Broker, error) {
			return redis.New(redis.Config{URL: cfg.redisURL, Retention: cfg.history, Handler: h, Logger: log})
		}
	}
	g, err := gateway.New(gcfg)
	if err != nil {
		fmt.Fprintf(stderr, "parley serve: %v\n", err)
		return 1
	}
	if cfg.redisURL == "" {
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
	log.Info("serving", "addr", ln.Addr().String(), "node", g.NodeID(), "redis", cfg.redisURL != "", "dev_auth", cfg.devAuth)

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
