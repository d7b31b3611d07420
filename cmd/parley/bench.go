package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/parley-chat/parley/internal/loadgen"
)

const benchHelp = `Usage: parley bench [flags]

Load-tests gateways and checks delivery: opens --conns protocol-v1
connections (dev-auth users bench-0, bench-1, ...; the gateways need
--dev-auth), each joined to one room (connection i joins room i % --rooms, so
a room has conns/rooms members), and publishes --rate messages per second in
total, spread evenly over the rooms by separate publisher connections, each
kept under the gateway's rate limit. Every receiver measures the latency from
send to receipt (messages sent after --warmup) and checks that each room's
seqs arrive consecutively, exactly once.

Prints one progress line per second to standard error (unless --quiet) and a
table, or with --json one JSON object, to standard output. The JSON fields
(connections, connect_rate, sent_per_sec, delivered_per_sec, latency_ms.p50
.. p99_9 and max, gaps, duplicates, missing, errors, closes, resume_storm,
...) are documented on loadgen.Result and are stable.

With --resume-storm M, after the steady run (or instead of it with
--duration 0) a fresh set of --conns connections joins, all disconnect, M
messages are published to every room, and all reconnect at once and resume
with since; the storm reports the resume rate and the time until every
connection received every missed message exactly once.

With --hold D, nothing is published: the --conns connections connect and
join, "bench: holding N connections" is printed to standard error, they stay
idle for D, and the bench exits (for measuring what idle connections cost a
gateway; --rate may be 0).

With --raw-ceiling, --url is ignored: the bench starts an in-process raw
WebSocket fan-out server on 127.0.0.1 (no Redis, no gateway: each send is
encoded once and the same frame is written to every member) and runs the same
load against it, which gives the fan-out ceiling of this machine. With
--raw-serve ADDR the bench only runs that raw server, in its own process, on
ADDR until SIGINT or SIGTERM (point another bench's --url at it, so server and
load generator are separate processes, as with a gateway).

Exit status: 0 when every message arrived exactly once; 1 when a gateway is
unreachable or any gap, duplicate or missing message was seen; 2 for bad flags.

`

// urlList is a repeatable --url that also takes comma-separated URLs.
type urlList []string

func (u *urlList) String() string { return strings.Join(*u, ",") }
func (u *urlList) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*u = append(*u, p)
		}
	}
	return nil
}

// benchConfig is what `parley bench` runs with: its flags (defaults as
// given, each also settable as PARLEY_<FLAG>) and the load generator's
// config parseBench makes of them.
type benchConfig struct {
	urls          urlList       // --url, repeatable: the gateways' WebSocket endpoints; default [defaultURL]
	conns         int           // --conns: receiving connections; default 100
	rooms         int           // --rooms: rooms, connection i joins room i % rooms; default 1
	members       int           // --members: members per room, rooms = conns / members when set; default 0: not set
	rate          float64       // --rate: messages per second published in total; default 10; 0 only with --hold
	body          int           // --body: message body size in bytes; default 64
	warmup        time.Duration // --warmup: publishing time before measuring starts; default 5s
	duration      time.Duration // --duration: measured publishing time; default 20s; 0: only the resume storm
	sources       string        // --sources: local source addresses; default "": the system's choice
	publishers    int           // --publishers: least number of publisher connections; default 1
	publisherRate float64       // --publisher-rate: most messages per second per publisher; default 15
	concurrency   int           // --connect-concurrency: connections dialed at once; default 64
	drain         time.Duration // --drain: wait for outstanding acks and deliveries; default 5s
	storm         int           // --resume-storm: messages per room in a resume storm; default 0: none
	asJSON        bool          // --json: one JSON object instead of the table; default false
	quiet         bool          // --quiet: no progress lines on standard error; default false
	hold          time.Duration // --hold: hold the connections idle this long, publish nothing; default 0: off
	raw           bool          // --raw-ceiling: run against an in-process raw fan-out server; default false
	rawServe      string        // --raw-serve: only serve the raw fan-out server on this address; default "": off

	// load is the load generator's config, checked (its defaults filled
	// in); runBench adds Progress. Unset with --raw-serve.
	load loadgen.Config
}

// parseBench parses and checks bench's flags (and PARLEY_* variables). It
// reports ok false with the exit code when there is nothing to run: --help
// (0) or a bad flag or argument, one line on stderr (2). With --raw-serve
// the other flags are not checked: only the server runs.
func parseBench(args []string, stderr io.Writer) (cfg benchConfig, code int, ok bool) {
	fs := flag.NewFlagSet("parley bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.Var(&cfg.urls, "url", "a gateway's WebSocket endpoint; repeat it (or separate with commas) to spread connections round-robin (default "+defaultURL+")")
	fs.IntVar(&cfg.conns, "conns", 100, "receiving connections")
	fs.IntVar(&cfg.rooms, "rooms", 1, "rooms; connection i joins room i % rooms")
	fs.IntVar(&cfg.members, "members", 0, "members per room; when set, rooms = conns / members (conns must be a multiple)")
	fs.Float64Var(&cfg.rate, "rate", 10, "messages per second published in total, spread over the rooms")
	fs.IntVar(&cfg.body, "body", 64, "message body size in `BYTES` (22..4096)")
	fs.DurationVar(&cfg.warmup, "warmup", 5*time.Second, "publishing time before measuring starts")
	fs.DurationVar(&cfg.duration, "duration", 20*time.Second, "measured publishing time after the warm-up (0: only the --resume-storm)")
	fs.StringVar(&cfg.sources, "sources", "", "local source addresses, e.g. 127.0.0.1-127.0.0.8 (comma-separated, IPv4 ranges allowed), so loopback runs do not run out of ephemeral ports")
	fs.IntVar(&cfg.publishers, "publishers", 1, "least number of publisher connections (more are used when --rate needs them)")
	fs.Float64Var(&cfg.publisherRate, "publisher-rate", 15, "most messages per second per publisher connection; keep it under the gateway's rate limit (20/s)")
	fs.IntVar(&cfg.concurrency, "connect-concurrency", 64, "connections dialed at once")
	fs.DurationVar(&cfg.drain, "drain", 5*time.Second, "how long to wait for outstanding acks and deliveries after publishing stops")
	fs.IntVar(&cfg.storm, "resume-storm", 0, "run a resume storm with `M` messages per room published while every connection is away (0: none)")
	fs.BoolVar(&cfg.asJSON, "json", false, "print one JSON object instead of the table")
	fs.BoolVar(&cfg.quiet, "quiet", false, "no progress lines on standard error")
	fs.DurationVar(&cfg.hold, "hold", 0, "connect and join --conns connections, hold them idle this long, publish nothing, exit")
	fs.BoolVar(&cfg.raw, "raw-ceiling", false, "run against an in-process raw fan-out server (no Redis, no gateway) instead of --url")
	fs.StringVar(&cfg.rawServe, "raw-serve", "", "only serve the raw fan-out server on this `ADDR` (e.g. 127.0.0.1:9000) until interrupted")
	pos, err := parseArgs(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, benchHelp, "Each flag may also be set as PARLEY_<FLAG> (PARLEY_URL, PARLEY_CONNS, ...);\na flag on the command line wins.\n\nFlags:\n")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return cfg, 0, false
		}
		return cfg, flagExit(fs, benchHelp, err, stderr), false
	}
	usage := func(format string, a ...any) (benchConfig, int, bool) {
		fmt.Fprintf(stderr, "parley bench: "+format+" (parley bench --help)\n", a...)
		return cfg, 2, false
	}
	if len(pos) != 0 {
		return usage("unexpected argument %q", pos[0])
	}
	if cfg.rawServe != "" {
		return cfg, 0, true
	}
	if len(cfg.urls) == 0 {
		cfg.urls = urlList{defaultURL}
	}
	if cfg.conns <= 0 || cfg.rooms <= 0 || cfg.members < 0 || cfg.rate < 0 || (cfg.rate == 0 && cfg.hold == 0) || cfg.storm < 0 || cfg.duration < 0 || cfg.hold < 0 {
		return usage("--conns, --rooms and --rate must be positive (--rate 0 only with --hold); --members, --duration, --hold and --resume-storm not negative")
	}
	if cfg.hold > 0 && (cfg.storm > 0 || cfg.raw) {
		return usage("--hold does not go with --resume-storm or --raw-ceiling")
	}
	if cfg.raw && cfg.storm > 0 {
		return usage("--raw-ceiling does not go with --resume-storm")
	}
	if cfg.members > 0 {
		roomsSet := false
		fs.Visit(func(f *flag.Flag) { roomsSet = roomsSet || f.Name == "rooms" })
		switch {
		case cfg.conns%cfg.members != 0:
			return usage("--conns %d is not a multiple of --members %d", cfg.conns, cfg.members)
		case roomsSet && cfg.rooms*cfg.members != cfg.conns:
			return usage("--rooms %d × --members %d is not --conns %d", cfg.rooms, cfg.members, cfg.conns)
		}
		cfg.rooms = cfg.conns / cfg.members
	}
	if cfg.duration == 0 && cfg.storm == 0 && cfg.hold == 0 {
		return usage("--duration 0 needs --resume-storm")
	}
	cfg.load = loadgen.Config{
		URLs: cfg.urls, Conns: cfg.conns, Rooms: cfg.rooms, Rate: cfg.rate, BodyBytes: cfg.body,
		Warmup: cfg.warmup, Duration: cfg.duration, Publishers: cfg.publishers, PublisherRate: cfg.publisherRate,
		ConnectConcurrency: cfg.concurrency, Drain: cfg.drain, StormMessages: cfg.storm,
	}
	if cfg.sources != "" {
		if cfg.load.Sources, err = loadgen.ParseSources(cfg.sources); err != nil {
			return usage("--sources: %v", err)
		}
	}
	if err := cfg.load.Check(); err != nil {
		return usage("%s", strings.TrimPrefix(err.Error(), loadgen.ErrConfig.Error()+": "))
	}
	return cfg, 0, true
}

// runBench runs the load cfg describes (or, with --raw-serve, only the raw
// fan-out server until ctx ends) and prints the result: exit 0 when every
// message arrived exactly once, 1 when a gateway is unreachable or any gap,
// duplicate or missing message was seen.
func runBench(ctx context.Context, cfg benchConfig, stdout, stderr io.Writer) int {
	if cfg.rawServe != "" {
		return serveRaw(ctx, cfg.rawServe, stderr)
	}
	load := cfg.load
	if !cfg.quiet {
		load.Progress = stderr
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "parley bench: %s\n", oneLine(err.Error()))
		return 1
	}
	var err error
	res := &loadgen.Result{}
	switch {
	case cfg.hold > 0:
		held := func(n int) {
			if !cfg.quiet {
				fmt.Fprintf(stderr, "bench: holding %d connections for %s\n", n, cfg.hold)
			}
		}
		if res, err = loadgen.Hold(ctx, load, cfg.hold, held); err != nil {
			return fail(err)
		}
	case cfg.raw:
		if res, err = loadgen.RawCeiling(ctx, load); err != nil {
			return fail(err)
		}
	case cfg.duration > 0:
		if res, err = loadgen.Run(ctx, load); err != nil {
			return fail(err)
		}
	}
	if cfg.storm > 0 {
		if !cfg.quiet {
			fmt.Fprintf(stderr, "bench: resume storm: %d conns, %d rooms, %d messages per room\n", load.Conns, load.Rooms, cfg.storm)
		}
		if res.Storm, err = loadgen.Storm(ctx, load); err != nil {
			return fail(err)
		}
		if cfg.duration == 0 {
			res.Config = load.Summary()
			res.Config.WarmupSeconds, res.Config.Seconds = 0, 0 // no steady run
		}
	}
	if cfg.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return fail(err)
		}
	} else if err := res.WriteTable(stdout); err != nil {
		return fail(err)
	}
	if !res.OK() {
		return fail(errors.New("FAIL: " + res.Problem()))
	}
	return 0
}

// serveRaw runs loadgen's raw fan-out server on addr until ctx ends.
func serveRaw(ctx context.Context, addr string, stderr io.Writer) int {
	s, err := loadgen.StartRawServer(addr)
	if err != nil {
		fmt.Fprintf(stderr, "parley bench: --raw-serve: %s\n", oneLine(err.Error()))
		return 1
	}
	fmt.Fprintf(stderr, "bench: raw fan-out server on %s\n", s.URL())
	<-ctx.Done()
	if err := s.Close(); err != nil {
		fmt.Fprintf(stderr, "parley bench: --raw-serve: %s\n", oneLine(err.Error()))
		return 1
	}
	return 0
}
