package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// healthcheckConfig is what `parley healthcheck` runs with: its flags
// (defaults as given, each also settable as PARLEY_<FLAG>, so that it finds
// the address serve uses) and the URL parseHealthcheck makes of them.
type healthcheckConfig struct {
	addr    string        // --addr: the gateway's listen address, as given to serve; default ":8080"
	path    string        // --path: the endpoint checked, /readyz or /healthz; default "/readyz"
	timeout time.Duration // --timeout: how long to wait for the answer; default 2s

	url string // derived: http://HOST:PORT/PATH, HOST 127.0.0.1 when --addr names none
}

// parseHealthcheck parses and checks healthcheck's flags (and PARLEY_*
// variables). It reports ok false with the exit code when there is nothing
// to run: --help (0) or a bad value, said in one line on stderr (2); a
// flag the flag package cannot parse gets the flag package's message and
// the usage before that line.
func parseHealthcheck(args []string, stderr io.Writer) (cfg healthcheckConfig, code int, ok bool) {
	fs := flag.NewFlagSet("parley healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", ":8080", "the gateway's listen address (as given to serve); a missing host means 127.0.0.1")
	fs.StringVar(&cfg.path, "path", "/readyz", "the endpoint to check: /readyz (ready for traffic) or /healthz (process alive)")
	fs.DurationVar(&cfg.timeout, "timeout", 2*time.Second, "how long to wait for the answer")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: parley healthcheck [flags]\n\nExits 0 when GET <path> on the gateway answers 200, 1 otherwise. Each flag may also be set as PARLEY_<FLAG>, so it finds the address serve uses.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := applyEnv(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, 0, false
		}
		fmt.Fprintf(stderr, "parley healthcheck: %v\n", err)
		return cfg, 2, false
	}
	host, port, err := net.SplitHostPort(cfg.addr)
	if err != nil {
		fmt.Fprintf(stderr, "parley healthcheck: --addr %q: %v\n", cfg.addr, err)
		return cfg, 2, false
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	cfg.url = "http://" + net.JoinHostPort(host, port) + cfg.path
	return cfg, 0, true
}

// runHealthcheck asks the gateway on this host for cfg's endpoint, so that
// a container image with no shell or curl can still declare a healthcheck:
// exit 0 when it answers 200 within --timeout (and before ctx ends), 1
// otherwise.
func runHealthcheck(ctx context.Context, cfg healthcheckConfig, stdout, stderr io.Writer) int {
	c := http.Client{Timeout: cfg.timeout}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "parley healthcheck: %v\n", err)
		return 1
	}
	resp, err := c.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "parley healthcheck: %v\n", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "parley healthcheck: %s: %s\n", cfg.url, resp.Status)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s\n", cfg.url, resp.Status)
	return 0
}
