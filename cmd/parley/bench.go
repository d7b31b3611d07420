package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
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

func bench(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runBench(ctx, args, stdout, stderr)
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parley bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var urls urlList
	fs.Var(&urls, "url", "a gateway's WebSocket endpoint; repeat it (or separate with commas) to spread connections round-robin (default "+defaultURL+")")
	conns := fs.Int("conns", 100, "receiving connections")
	rooms := fs.Int("rooms", 1, "rooms; connection i joins room i % rooms")
	members := fs.Int("members", 0, "members per room; when set, rooms = conns / members (conns must be a multiple)")
	rate := fs.Float64("rate", 10, "messages per second published in total, spread over the rooms")
	body := fs.Int("body", 64, "message body size in `BYTES` (22..4096)")
	warmup := fs.Duration("warmup", 5*time.Second, "publishing time before measuring starts")
	duration := fs.Duration("duration", 20*time.Second, "measured publishing time after the warm-up (0: only the --resume-storm)")
	sources := fs.String("sources", "", "local source addresses, e.g. 127.0.0.1-127.0.0.8 (comma-separated, IPv4 ranges allowed), so loopback runs do not run out of ephemeral ports")
	publishers := fs.Int("publishers", 1, "least number of publisher connections (more are used when --rate needs them)")
	pubRate := fs.Float64("publisher-rate", 15, "most messages per second per publisher connection; keep it under the gateway's rate limit (20/s)")
	concurrency := fs.Int("connect-concurrency", 64, "connections dialed at once")
	drain := fs.Duration("drain", 5*time.Second, "how long to wait for outstanding acks and deliveries after publishing stops")
	storm := fs.Int("resume-storm", 0, "run a resume storm with `M` messages per room published while every connection is away (0: none)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of the table")
	quiet := fs.Bool("quiet", false, "no progress lines on standard error")
	hold := fs.Duration("hold", 0, "connect and join --conns connections, hold them idle this long, publish nothing, exit")
	raw := fs.Bool("raw-ceiling", false, "run against an in-process raw fan-out server (no Redis, no gateway) instead of --url")
	rawServe := fs.String("raw-serve", "", "only serve the raw fan-out server on this `ADDR` (e.g. 127.0.0.1:9000) until interrupted")
	pos, err := parseArgs(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, benchHelp, "Each flag may also be set as PARLEY_<FLAG> (PARLEY_URL, PARLEY_CONNS, ...);\na flag on the command line wins.\n\nFlags:\n")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return 0
		}
		return flagExit(fs, benchHelp, err, stderr)
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "parley bench: "+format+" (parley bench --help)\n", a...)
		return 2
	}
	if len(pos) != 0 {
		return usage("unexpected argument %q", pos[0])
	}
	if *rawServe != "" {
		return serveRaw(ctx, *rawServe, stderr)
	}
	if len(urls) == 0 {
		urls = urlList{defaultURL}
	}
	if *conns <= 0 || *rooms <= 0 || *members < 0 || *rate < 0 || (*rate == 0 && *hold == 0) || *storm < 0 || *duration < 0 || *hold < 0 {
		return usage("--conns, --rooms and --rate must be positive (--rate 0 only with --hold); --members, --duration, --hold and --resume-storm not negative")
	}
	if *hold > 0 && (*storm > 0 || *raw) {
		return usage("--hold does not go with --resume-storm or --raw-ceiling")
	}
	if *raw && *storm > 0 {
		return usage("--raw-ceiling does not go with --resume-storm")
	}
	if *members > 0 {
		roomsSet := false
		fs.Visit(func(f *flag.Flag) { roomsSet = roomsSet || f.Name == "rooms" })
		switch {
		case *conns%*members != 0:
			return usage("--conns %d is not a multiple of --members %d", *conns, *members)
		case roomsSet && *rooms**members != *conns:
			return usage("--rooms %d × --members %d is not --conns %d", *rooms, *members, *conns)
		}
		*rooms = *conns / *members
	}
	if *duration == 0 && *storm == 0 && *hold == 0 {
		return usage("--duration 0 needs --resume-storm")
	}
	cfg := loadgen.Config{
		URLs: urls, Conns: *conns, Rooms: *rooms, Rate: *rate, BodyBytes: *body,
		Warmup: *warmup, Duration: *duration, Publishers: *publishers, PublisherRate: *pubRate,
		ConnectConcurrency: *concurrency, Drain: *drain, StormMessages: *storm,
	}
	if *sources != "" {
		if cfg.Sources, err = loadgen.ParseSources(*sources); err != nil {
			return usage("--sources: %v", err)
		}
	}
	if !*quiet {
		cfg.Progress = stderr
	}
	if err := (&cfg).Check(); err != nil {
		return usage("%s", strings.TrimPrefix(err.Error(), loadgen.ErrConfig.Error()+": "))
	}

	fail := func(err error) int {
		fmt.Fprintf(stderr, "parley bench: %s\n", oneLine(err.Error()))
		return 1
	}
	res := &loadgen.Result{}
	switch {
	case *hold > 0:
		held := func(n int) {
			if !*quiet {
				fmt.Fprintf(stderr, "bench: holding %d connections for %s\n", n, *hold)
			}
		}
		if res, err = loadgen.Hold(ctx, cfg, *hold, held); err != nil {
			return fail(err)
		}
	case *raw:
		if res, err = loadgen.RawCeiling(ctx, cfg); err != nil {
			return fail(err)
		}
	case *duration > 0:
		if res, err = loadgen.Run(ctx, cfg); err != nil {
			return fail(err)
		}
	}
	if *storm > 0 {
		if !*quiet {
			fmt.Fprintf(stderr, "bench: resume storm: %d conns, %d rooms, %d messages per room\n", cfg.Conns, cfg.Rooms, *storm)
		}
		if res.Storm, err = loadgen.Storm(ctx, cfg); err != nil {
			return fail(err)
		}
		if *duration == 0 {
			res.Config = cfg.Summary()
			res.Config.WarmupSeconds, res.Config.Seconds = 0, 0 // no steady run
		}
	}
	if *asJSON {
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
