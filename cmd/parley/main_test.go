package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/loadgen"
	"github.com/parley-chat/parley/internal/proctest"
)

func TestMain(m *testing.M) { proctest.Main(m) }

// runCmd runs `parley name args...` the way main does, with ctx in place
// of the signals: the command stops when ctx ends.
func runCmd(ctx context.Context, name string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return parley(append([]string{name}, args...), stdin, stdout, stderr, func(run func(context.Context) int) int { return run(ctx) })
}

// parley with no command, an unknown one or help prints the usage and
// runs nothing.
func TestDispatch(t *testing.T) {
	for _, tc := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{nil, 2, "", usage},
		{[]string{"frob"}, 2, "", "parley: unknown command \"frob\"\n\n" + usage},
		{[]string{"--help"}, 0, usage, ""},
		{[]string{"-h"}, 0, usage, ""},
		{[]string{"help"}, 0, usage, ""},
	} {
		var stdout, stderr strings.Builder
		code := parley(tc.args, nil, &stdout, &stderr, func(func(context.Context) int) int {
			t.Errorf("%q: ran a command", tc.args)
			return -1
		})
		if code != tc.code || stdout.String() != tc.stdout || stderr.String() != tc.stderr {
			t.Errorf("parley %q: exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr %q", tc.args, code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
		}
	}
}

// A bad flag, or a bad value of one, is exit 2 from the command's parseX,
// whose last line on stderr names the command and the flag; nothing runs.
func TestBadFlagsAreExit2(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--nope"}, {"serve", "--backlog", "many"},
		{"healthcheck", "--nope"}, {"healthcheck", "--timeout", "soon"},
		{"chat", "--nope", "general"}, {"chat", "--url"},
		{"send", "--nope", "general", "hi"}, {"send", "--timeout", "soon", "general", "hi"},
		{"tail", "--nope", "general"}, {"tail", "--since", "x", "general"},
		{"bench", "--nope"}, {"bench", "--conns", "many"},
	} {
		var stderr strings.Builder
		code := parley(args, strings.NewReader(""), io.Discard, &stderr, func(func(context.Context) int) int {
			t.Errorf("%q: ran", args)
			return -1
		})
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		last := lines[len(lines)-1]
		flag := "-" + strings.TrimLeft(args[1], "-")
		if code != 2 || !strings.HasPrefix(last, "parley "+args[0]+": ") || !strings.Contains(last, flag) {
			t.Errorf("parley %q: exit %d, stderr %q; want exit 2 and a last line naming parley %s and %s", args, code, stderr.String(), args[0], flag)
		}
	}
}

// A bad PARLEY_<FLAG> is refused like the flag, naming the variable.
func TestBadEnvIsExit2(t *testing.T) {
	t.Setenv("PARLEY_TIMEOUT", "soon")
	for _, args := range [][]string{{"healthcheck"}, {"send", "--user", "a", "general", "hi"}} {
		var stderr strings.Builder
		code := parley(args, nil, io.Discard, &stderr, func(func(context.Context) int) int {
			t.Errorf("%q: ran", args)
			return -1
		})
		if code != 2 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), `PARLEY_TIMEOUT="soon"`) {
			t.Errorf("parley %q with PARLEY_TIMEOUT=soon: exit %d, stderr %q; want exit 2 and one line naming the variable", args, code, stderr.String())
		}
	}
}

// untilSignal ends the context at SIGINT, with the signal as its cause,
// and returns what run returned; without a signal it returns at once.
func TestUntilSignal(t *testing.T) {
	if code := untilSignal(func(context.Context) int { return 3 }); code != 3 {
		t.Fatalf("exit %d, want 3", code)
	}
	code := untilSignal(func(ctx context.Context) int {
		if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
			t.Error(err)
			return -1
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			t.Error("no cancel 10s after SIGINT")
			return -1
		}
		if got := context.Cause(ctx).Error(); got != "signal interrupt" {
			t.Errorf("cause %q, want signal interrupt", got)
		}
		return 7
	})
	if code != 7 {
		t.Fatalf("exit %d, want 7", code)
	}
}

// The defaults each config documents are the ones its parseX gives.
func TestDefaultsAreAsDocumented(t *testing.T) {
	for _, env := range os.Environ() {
		if name, _, _ := strings.Cut(env, "="); strings.HasPrefix(name, "PARLEY_") {
			t.Setenv(name, "") // restored at the end
			os.Unsetenv(name)
		}
	}
	check := func(name string, got, want any, ok bool, stderr string) {
		t.Helper()
		if !ok {
			t.Errorf("%s: not ok: %s", name, stderr)
		} else if !reflect.DeepEqual(got, want) {
			t.Errorf("%s defaults:\n got %+v\nwant %+v", name, got, want)
		}
	}
	var stderr strings.Builder
	client := clientOptions{url: defaultURL, user: "a", device: "terminal"}

	serve, _, ok := parseServe([]string{"--dev-auth"}, &stderr)
	check("serve", serve, serveConfig{addr: ":8080", history: 1000, backlog: 50, devAuth: true, logLevel: "info",
		drainTimeout: 20 * time.Second, drainSpread: 3 * time.Second, maxFrame: 64 << 10, maxBody: 4 << 10,
		rateLimit: 20, rateBurst: 40, outboundQueue: 4096, outboundBytes: 2 << 20, maxConnsPerUser: 100,
		helloTimeout: 10 * time.Second, typingInterval: 2 * time.Second, maxRoomsPerUser: 1000, maxRoomMembers: 1000,
		presenceBeat: 5 * time.Second, presenceTTL: 20 * time.Second, presenceDetail: 100, maxPollWait: 55 * time.Second, sseHeartbeat: 15 * time.Second, level: slog.LevelInfo,
		webhookEvents: "message.offline", webhookAttempts: 8, webhookRetryBase: time.Second, webhookRetryMax: 5 * time.Minute,
		webhookClaimIdle: 60 * time.Second}, ok, stderr.String())

	hc, _, ok := parseHealthcheck(nil, &stderr)
	check("healthcheck", hc, healthcheckConfig{addr: ":8080", path: "/readyz", timeout: 2 * time.Second,
		url: "http://127.0.0.1:8080/readyz"}, ok, stderr.String())

	chat, _, ok := parseChat([]string{"--user", "a", "general"}, &stderr)
	check("chat", chat, chatConfig{clientOptions: client, room: "general"}, ok, stderr.String())

	send, _, ok := parseSend([]string{"--user", "a", "general"}, &stderr)
	check("send", send, sendConfig{clientOptions: client, room: "general", readStdin: true, timeout: 30 * time.Second}, ok, stderr.String())

	tail, _, ok := parseTail([]string{"--user", "a", "general"}, &stderr)
	check("tail", tail, tailConfig{clientOptions: client, room: "general", since: -1}, ok, stderr.String())

	bench, _, ok := parseBench(nil, &stderr)
	bench.load = loadgen.Config{} // loadgen's, documented there
	check("bench", bench, benchConfig{urls: urlList{defaultURL}, conns: 100, rooms: 1, rate: 10, body: 64,
		warmup: 5 * time.Second, duration: 20 * time.Second, publishers: 1, publisherRate: 15, concurrency: 64,
		drain: 5 * time.Second}, ok, stderr.String())
}
