package main

// Shared by the client commands (chat, send, tail; bench takes the
// argument parsing and one-line errors): the connection flags, argument
// parsing with flags and arguments in any order, dialing with a one-line
// error, error and reason lines, message ids, a send pacer under the
// gateway's rate limit, and the escaping of untrusted text before it
// reaches a terminal.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/parley-chat/parley/pkg/client"
	"github.com/parley-chat/parley/pkg/protocol"
)

// defaultURL is where `parley serve` listens by default.
const defaultURL = "ws://localhost:8080/ws"

// clientOptions are the connection flags every terminal client takes
// (each also settable as PARLEY_<FLAG>).
type clientOptions struct {
	url    string // --url: the gateway's WebSocket endpoint; default defaultURL
	user   string // --user: user name, for gateways run with --dev-auth; default ""
	token  string // --token: JWT whose sub is the user, wins over --user; default ""
	device string // --device: device name stamped on the messages sent; default "terminal"
}

func (o *clientOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.url, "url", defaultURL, "the gateway's WebSocket endpoint (ws:// or wss://)")
	fs.StringVar(&o.user, "user", "", "user name, for gateways run with --dev-auth")
	fs.StringVar(&o.token, "token", "", "JWT whose sub is the user (wins over --user); prefer PARLEY_TOKEN, as other local users can read command lines")
	fs.StringVar(&o.device, "device", "terminal", "device name stamped on your messages")
}

// clientEnvNote is the part of every client's --help about the environment.
const clientEnvNote = "Flags and arguments may come in any order; \"--\" ends the flags. Each flag may\n" +
	"also be set as PARLEY_<FLAG> (PARLEY_URL, PARLEY_USER, PARLEY_TOKEN, ...);\n" +
	"a flag on the command line wins.\n"

// check validates the options before any connection is tried.
func (o *clientOptions) check() error {
	u, err := url.Parse(o.url)
	if err != nil || u.Host == "" {
		return fmt.Errorf("--url %q: want ws://host:port/ws or wss://host/ws", o.url)
	}
	switch u.Scheme {
	case "ws", "wss", "http", "https":
	default:
		return fmt.Errorf("--url %q: scheme %q is not ws or wss", o.url, u.Scheme)
	}
	if o.user == "" && o.token == "" {
		return errors.New("set --user (gateways with --dev-auth) or --token (PARLEY_USER / PARLEY_TOKEN)")
	}
	if o.user != "" && !protocol.ValidRoom(o.user) {
		return fmt.Errorf("--user %q: 1-64 characters of A-Z a-z 0-9 . _ : -, starting with a letter or digit", o.user)
	}
	if len(o.device) > 64 {
		return errors.New("--device: at most 64 bytes")
	}
	return nil
}

// dial connects and says hello. With retry it keeps trying, with backoff,
// until ctx ends, unless the credentials are refused. The error is one line
// that names the URL and what the server (or the network) answered.
func (o *clientOptions) dial(ctx context.Context, retry bool) (*client.Client, error) {
	c, err := client.Dial(ctx, client.Config{
		URL:        o.url,
		User:       o.user,
		Token:      o.token,
		Device:     o.device,
		MinBackoff: 100 * time.Millisecond,
		MaxBackoff: 3 * time.Second,
		RetryDial:  retry,
	})
	if err != nil {
		cause := err
		if u := errors.Unwrap(err); u != nil {
			cause = u // drop the SDK's "parley client: dial URL:" prefix
		}
		return nil, fmt.Errorf("cannot connect to %s: %s", o.url, oneLine(cause.Error()))
	}
	return c, nil
}

// parseArgs parses flags and positional arguments in any order (the flag
// package alone stops at the first argument), then fills every flag not
// given from PARLEY_<FLAG>. "--" ends the flags.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			return nil, err
		}
		left := fs.Args()
		if used := rest[:len(rest)-len(left)]; len(used) > 0 && used[len(used)-1] == "--" {
			pos = append(pos, left...)
			break
		}
		if len(left) == 0 {
			break
		}
		pos = append(pos, left[0])
		rest = left[1:]
	}
	// fs remembers the flags set above; applyEnv's Parse(nil) keeps them.
	if err := applyEnv(fs, nil); err != nil {
		return nil, err
	}
	return pos, nil
}

// newClientFlags returns the flag set of a terminal client, with the
// connection flags registered. It prints nothing itself: see flagExit.
func newClientFlags(name string, o *clientOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("parley "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	o.register(fs)
	return fs
}

// flagExit turns a parse error into an exit code: for --help it prints
// help and the flags and returns 0; otherwise it prints one line and
// returns 2.
func flagExit(fs *flag.FlagSet, help string, err error, stderr io.Writer) int {
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, help, clientEnvNote, "\nFlags:\n")
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		return 0
	}
	fmt.Fprintf(stderr, "%s: %s (%s --help)\n", fs.Name(), oneLine(err.Error()), fs.Name())
	return 2
}

// describe renders an error from a call for a human: the server's code
// and words for an error frame, the error text otherwise.
func describe(err error) string {
	var perr *protocol.Error
	if errors.As(err, &perr) {
		return perr.Code + ": " + oneLine(perr.Msg)
	}
	return oneLine(err.Error())
}

// reason renders why the Client's connection changed state, for a status
// line.
func reason(err error) string {
	if err == nil {
		return "unknown reason"
	}
	return oneLine(err.Error())
}

// oneLine replaces line breaks so that an error stays on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// randomHex returns n random bytes in hex (message ids).
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sanitize makes text from other users safe to print on a terminal:
// control characters (escape sequences, carriage returns, bells) and bidi
// overrides are shown as Go escapes instead of acting on the terminal.
// Tabs stay; newlines are handled by the caller.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\t':
			b.WriteRune(r)
		case r == unicode.ReplacementChar:
			b.WriteRune(r)
		case unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r):
			q := fmt.Sprintf("%+q", r) // e.g. '\x1b', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// pacer spaces sends so that a pasted or piped burst stays under the
// gateway's default rate limit (20 frames/s, burst 40) instead of being
// answered with rate_limited.
type pacer struct {
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newPacer() *pacer { return &pacer{rate: 15, burst: 25, tokens: 25} }

// wait blocks until a send may go, or ctx ends.
func (p *pacer) wait(ctx context.Context) error {
	now := time.Now()
	if !p.last.IsZero() {
		p.tokens = min(p.burst, p.tokens+now.Sub(p.last).Seconds()*p.rate)
	}
	p.last = now
	if p.tokens >= 1 {
		p.tokens--
		return nil
	}
	d := time.Duration((1 - p.tokens) / p.rate * float64(time.Second))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	p.last = time.Now()
	p.tokens = 0
	return nil
}
