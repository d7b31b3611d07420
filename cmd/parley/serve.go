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
	pprofAddr                                            string
	history, backlog                                     int
	devAuth                                              bool
	drainTimeout, drainSpread                            time.Duration
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

func serve(args []string, stderr io.Writer) int {
	var cfg serveConfig
	fs := serveFlags(&cfg, stderr)
	if err := applyEnv(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "parley serve: %v\n", err)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		fmt.Fprintf(stderr, "parley serve: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	if cfg.history <= 0 || cfg.backlog <= 0 || cfg.drainSpread <= 0 || cfg.drainTimeout <= 0 {
		fmt.Fprintln(stderr, "parley serve: --history, --backlog, --drain-spread and --drain-timeout must be positive")
		return 2
	}
	if !cfg.devAuth && cfg.jwtSecret == "" {
		fmt.Fprintln(stderr, "parley serve: set --jwt-secret (PARLEY_JWT_SECRET), or --dev-auth for development")
		return 2
	}

	gcfg := gateway.Config{
		NodeID:      cfg.nodeID,
		DrainSpread: cfg.drainSpread,
		Backlog:     cfg.backlog,
		DevAuth:     cfg.devAuth,
		JWTSecret:   []byte(cfg.jwtSecret),
		Logger:      log,
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
	var pprofSrv *http.Server
	pprofDone := make(chan struct{})
	if cfg.pprofAddr != "" {
		pln, err := net.Listen("tcp", cfg.pprofAddr)
		if err != nil {
			fmt.Fprintf(stderr, "parley serve: --pprof-addr: listen %s: %v\n", cfg.pprofAddr, err)
			_ = ln.Close()
			_ = g.Close()
			return 1
		}
		pprofSrv = &http.Server{Handler: pprofMux(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			defer close(pprofDone)
			if err := pprofSrv.Serve(pln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Warn("pprof server stopped", "err", err)
			}
		}()
		log.Info("serving pprof", "addr", pln.Addr().String())
	} else {
		close(pprofDone)
	}
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("serving", "addr", ln.Addr().String(), "node", g.NodeID(), "redis", cfg.redisURL != "", "dev_auth", cfg.devAuth)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	code := 0
	select {
	case sig := <-sigs:
		log.Info("signal received: draining", "signal", sig.String())
		ctx, cancel := context.WithTimeout(context.Background(), cfg.drainTimeout)
		if err := g.Drain(ctx); err != nil {
			log.Warn("drain incomplete", "err", err)
		}
		cancel()
	case err := <-served:
		log.Error("http server stopped", "err", err)
		code = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Shutdown(ctx)
	cancel()
	if pprofSrv != nil {
		// Close, not Shutdown: a CPU profile in progress must not hold the exit.
		_ = pprofSrv.Close()
	}
	<-pprofDone
	if err := g.Close(); err != nil {
		log.Warn("close", "err", err)
	}
	log.Info("stopped")
	return code
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
