package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/pkg/client"
	"github.com/parley-chat/parley/pkg/protocol"
)

const sendHelp = `Usage: parley send [flags] ROOM [MESSAGE...]

Sends one message, the MESSAGE words joined by spaces, to ROOM; without
MESSAGE, sends each non-empty line of standard input as it is read, in
order. Prints "seq N" for each message once the gateway has acknowledged it
(stored and published). A gateway that is restarting or busy does not stop
it: the connection is retried with backoff for up to --timeout, and a
message the server answers "rate_limited" or "unavailable" is resent with
the same id until acknowledged or --timeout passes. A message the server
refuses (forbidden, too_large, bad_request) ends it at once with exit 1 and
the server's code and words, naming the message; so does any other failure.
A message that is not acknowledged within --timeout may or may not have
been stored: send it again with the --id printed in the error and it is
stored at most once. Use "--" before a message that starts with "-".

`

// sendConfig is what `parley send` runs with: its flags (defaults as
// given, each also settable as PARLEY_<FLAG>) and its arguments.
type sendConfig struct {
	clientOptions               // --url, --user, --token, --device
	room          string        // ROOM, the first argument
	message       string        // the MESSAGE arguments joined by spaces: the one message to send
	readStdin     bool          // no MESSAGE arguments: send each non-empty line of standard input instead
	id            string        // --id: the message's idempotency key, for a single message only; default "": a random one per message
	timeout       time.Duration // --timeout: how long to keep trying to connect, and to wait for each ack; default 30s
}

// parseSend parses and checks send's flags and arguments (and PARLEY_*
// variables). It reports ok false with the exit code when there is nothing
// to run: --help (0) or a bad flag or argument, one line on stderr (2).
func parseSend(args []string, stderr io.Writer) (cfg sendConfig, code int, ok bool) {
	fs := newClientFlags("send", &cfg.clientOptions)
	fs.StringVar(&cfg.id, "id", "", "idempotency key of the message (1-64 printable ASCII, no spaces): sending again with the same id stores nothing new and prints the original seq; only for a single message")
	fs.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "how long to keep trying to connect, and to wait for each message's ack, across reconnects and resends")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return cfg, flagExit(fs, sendHelp, err, stderr), false
	}
	usage := func(format string, a ...any) (sendConfig, int, bool) {
		fmt.Fprintf(stderr, "parley send: "+format+"\n", a...)
		return cfg, 2, false
	}
	if len(pos) == 0 {
		return usage("want ROOM [MESSAGE...] (parley send --help)")
	}
	cfg.room = pos[0]
	if !protocol.ValidRoom(cfg.room) {
		return usage("invalid room name %q", cfg.room)
	}
	if cfg.id != "" && !protocol.ValidID(cfg.id) {
		return usage("--id %q: 1-64 printable ASCII characters without spaces", cfg.id)
	}
	if cfg.timeout <= 0 {
		return usage("--timeout must be positive")
	}
	if err := cfg.check(); err != nil {
		return usage("%v", err)
	}
	cfg.message = strings.Join(pos[1:], " ")
	cfg.readStdin = len(pos) == 1
	return cfg, 0, true
}

// runSend sends cfg's message, or each line of stdin, and prints "seq N"
// for each once acknowledged: exit 0 when every message was, 1 when one
// failed (refused, no ack within --timeout, ctx ended) and 2 when --id is
// given and stdin holds more than one message.
func runSend(ctx context.Context, cfg sendConfig, stdin io.Reader, stdout, stderr io.Writer) int {
	// bodies yields the messages: the arguments, or stdin's lines as they
	// come. With --id, stdin is read whole first, so that a second line is
	// refused before anything is sent.
	var bodies func(yield func(string) bool)
	switch {
	case !cfg.readStdin:
		bodies = func(yield func(string) bool) { yield(cfg.message) }
	case cfg.id != "":
		all, err := io.ReadAll(stdin)
		if err != nil {
			fmt.Fprintf(stderr, "parley send: read stdin: %v\n", err)
			return 1
		}
		var msgs []string
		for l := range strings.SplitSeq(string(all), "\n") {
			if l = strings.TrimRight(l, "\r"); strings.TrimSpace(l) != "" {
				msgs = append(msgs, l)
			}
		}
		if len(msgs) != 1 {
			fmt.Fprintf(stderr, "parley send: --id is for one message; stdin holds %d\n", len(msgs))
			return 2
		}
		bodies = func(yield func(string) bool) { yield(msgs[0]) }
	default:
		bodies = func(yield func(string) bool) {
			sc := bufio.NewScanner(stdin)
			sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
			for sc.Scan() {
				l := strings.TrimRight(sc.Text(), "\r")
				if strings.TrimSpace(l) == "" {
					continue
				}
				if !yield(l) {
					return
				}
			}
			if err := sc.Err(); err != nil {
				fmt.Fprintf(stderr, "parley send: read stdin: %v\n", err)
			}
		}
	}

	// A gateway that is stopping (503 on upgrade, or a close before
	// welcome) or not up yet is retried like a reconnect.
	dctx, dcancel := context.WithTimeout(ctx, cfg.timeout)
	c, err := cfg.dial(dctx, true)
	dcancel()
	if err != nil {
		fmt.Fprintf(stderr, "parley send: %v\n", err)
		return 1
	}
	watched := make(chan struct{})
	go func() { // not joined: only errors, retries and state changes arrive
		defer close(watched)
		for ev := range c.Events() {
			switch {
			case ev.Retry != nil && ev.Retry.Attempt == 1:
				// Once per message: the SDK resends it by itself.
				fmt.Fprintf(stderr, "parley send: id %s not stored yet (%s: %s); retrying\n",
					ev.Retry.Request.ID, ev.Retry.Err.Code, oneLine(ev.Retry.Err.Msg))
			case ev.Error != nil:
				fmt.Fprintf(stderr, "parley send: server: %s: %s\n", ev.Error.Code, oneLine(ev.Error.Message))
			case ev.State == client.StateReconnecting:
				fmt.Fprintf(stderr, "parley send: reconnecting: %s\n", reason(ev.Err))
			case ev.State == client.StateConnected:
				fmt.Fprintf(stderr, "parley send: connected to %s\n", c.Welcome().Node)
			}
		}
	}()
	defer func() {
		_ = c.Close()
		<-watched
	}()

	pace := newPacer()
	n, code := 0, 0
	for body := range bodies {
		n++
		if err := pace.wait(ctx); err != nil {
			code = 1
			break
		}
		mid := cfg.id
		if mid == "" {
			mid = cfg.device + "-" + randomHex(8)
			if !protocol.ValidID(mid) {
				mid = randomHex(16)
			}
		}
		sctx, cancel := context.WithTimeout(ctx, cfg.timeout)
		ack, err := c.SendID(sctx, cfg.room, mid, body)
		cancel()
		if err != nil {
			var refused *protocol.Error
			switch {
			case errors.As(err, &refused):
				// The server's "no": waiting would not change it.
				fmt.Fprintf(stderr, "parley send: message %d %s refused by the server: %s: %s\n",
					n, preview(body), refused.Code, oneLine(refused.Msg))
			case ctx.Err() != nil:
				fmt.Fprintf(stderr, "parley send: message %d: interrupted before its ack; it may or may not be stored (resend it with --id %s)\n", n, mid)
			case errors.Is(err, context.DeadlineExceeded):
				fmt.Fprintf(stderr, "parley send: message %d: no ack within %v; it may or may not be stored (resend it with --id %s): %s\n", n, cfg.timeout, mid, describe(err))
			default:
				fmt.Fprintf(stderr, "parley send: message %d: %s\n", n, describe(err))
			}
			code = 1
			break
		}
		fmt.Fprintf(stdout, "seq %d\n", ack.Seq)
	}
	return code
}

// preview quotes the start of a message body, safe for a terminal, to
// name the message in an error.
func preview(body string) string {
	const max = 40
	r := []rune(body)
	if len(r) > max {
		return strconv.Quote(string(r[:max-1]) + "…")
	}
	return strconv.Quote(body)
}
