// Command parley runs a Parley chat gateway and its tools.
//
//	parley serve [flags]        run a gateway node
//	parley healthcheck [flags]  exit 0 when the local gateway is ready
//	parley chat [flags] ROOM    chat in a room from a terminal
//	parley send [flags] ROOM [MESSAGE...]  send messages, print their seqs
//	parley tail [flags] ROOM    print a room's messages as JSON lines, live
//	parley bench [flags]        load-test gateways and check delivery
//	parley token [flags]        sign a client token
//
// Every flag of serve, healthcheck and the clients can also be set in the
// environment as PARLEY_<FLAG>, with dashes as underscores: PARLEY_ADDR,
// PARLEY_REDIS, PARLEY_NODE_ID, PARLEY_URL, PARLEY_USER, ...
//
// Each command has a file of its own (serve.go, healthcheck.go, chat.go,
// send.go, tail.go, bench.go, token.go) with its config, a parseX that turns the
// command line into that config (and prints --help and bad flags), and a
// runX(ctx, config, ...) that does the work until ctx ends. This file
// dispatches to them and owns the signals: SIGINT or SIGTERM ends ctx.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `parley: a horizontally scaled chat cluster.

Usage:
  parley serve [flags]        run a gateway node (parley serve --help for flags)
  parley healthcheck [flags]  exit 0 when the gateway on this host is ready
                              (for container healthchecks; --help for flags)
  parley chat [flags] ROOM    chat in ROOM from a terminal: each line typed is
                              sent; /join, /history, /quit (--help for more)
  parley send [flags] ROOM [MESSAGE...]
                              send MESSAGE, or each line of stdin, to ROOM and
                              print "seq N" per acknowledged message
  parley tail [flags] ROOM    print ROOM's messages as JSON lines and follow it
                              live, resuming across reconnects
  parley bench [flags]        load-test gateways: many connections, steady
                              publishing, latency, gaps (--help for flags)
  parley token --user USER [flags]
                              print a client token signed with --jwt-secret
                              or --jwt-private-key (--help for flags)

The clients take --url (default ws://localhost:8080/ws) and --user (dev auth)
or --token; PARLEY_URL, PARLEY_USER and PARLEY_TOKEN work too.
`

func main() {
	os.Exit(parley(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, untilSignal))
}

// parley runs the command that args[0] names and returns the exit status.
// The command's parseX reads the rest of args into its config; when there
// is nothing to run (--help: 0, a bad flag or argument: 2) that is all.
// Otherwise start runs the command's runX with the context it is to stop
// at: untilSignal's in main, a test's own in tests.
func parley(args []string, stdin io.Reader, stdout, stderr io.Writer, start func(run func(context.Context) int) int) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	name, args := args[0], args[1:]
	switch name {
	case "serve":
		cfg, code, ok := parseServe(args, stderr)
		if !ok {
			return code
		}
		return start(func(ctx context.Context) int { return runServe(ctx, cfg, stderr) })
	case "healthcheck":
		cfg, code, ok := parseHealthcheck(args, stderr)
		if !ok {
			return code
		}
		return start(func(ctx context.Context) int { return runHealthcheck(ctx, cfg, stdout, stderr) })
	case "chat":
		cfg, code, ok := parseChat(args, stderr)
		if !ok {
			return code
		}
		return start(func(ctx context.Context) int { return runChat(ctx, cfg, stdin, stdout, stderr) })
	case "send":
		cfg, code, ok := parseSend(args, stderr)
		if !ok {
			return code
		}
		return start(func(ctx context.Context) int { return runSend(ctx, cfg, stdin, stdout, stderr) })
	case "tail":
		cfg, code, ok := parseTail(args, stderr)
		if !ok {
			return code
		}
		return start(func(ctx context.Context) int { return runTail(ctx, cfg, stdout, stderr) })
	case "bench":
		cfg, code, ok := parseBench(args, stderr)
		if !ok {
			return code
		}
		return start(func(ctx context.Context) int { return runBench(ctx, cfg, stdout, stderr) })
	case "token":
		cfg, code, ok := parseToken(args, stderr)
		if !ok {
			return code
		}
		return start(func(ctx context.Context) int { return runToken(ctx, cfg, stdout, stderr) })
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "parley: unknown command %q\n\n%s", name, usage)
		return 2
	}
}

// untilSignal calls run with a context that ends at the first SIGINT or
// SIGTERM, its cause naming the signal ("signal terminated"), and returns
// run's exit status once run and the goroutine that waits for the signal
// have both returned. Until then a further signal is caught and ignored:
// the command's own shutdown (serve's drain, chat's goodbye) decides how
// long the exit takes.
func untilSignal(run func(context.Context) int) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan struct{})
	go func() { // ends at the first signal, or when run returns
		defer close(done)
		select {
		case sig := <-sigs:
			cancel(fmt.Errorf("signal %s", sig))
		case <-ctx.Done():
		}
	}()
	code := run(ctx)
	cancel(nil)
	<-done
	return code
}

// applyEnv parses args into fs, then sets every flag not given on the
// command line from PARLEY_<FLAG> (dashes as underscores).
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
