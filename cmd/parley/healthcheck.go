package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// healthcheck asks the gateway on this host for /readyz, so that a
// container image with no shell or curl can still declare a healthcheck.
func healthcheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parley healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", ":8080", "the gateway's listen address (as given to serve); a missing host means 127.0.0.1")
	path := fs.String("path", "/readyz", "the endpoint to check: /readyz (ready for traffic) or /healthz (process alive)")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the answer")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: parley healthcheck [flags]\n\nExits 0 when GET <path> on the gateway answers 200, 1 otherwise. Each flag may also be set as PARLEY_<FLAG>, so it finds the address serve uses.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := applyEnv(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "parley healthcheck: %v\n", err)
		return 2
	}
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		fmt.Fprintf(stderr, "parley healthcheck: --addr %q: %v\n", *addr, err)
		return 2
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	url := "http://" + net.JoinHostPort(host, port) + *path
	c := http.Client{Timeout: *timeout}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintf(stderr, "parley healthcheck: %v\n", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "parley healthcheck: %s: %s\n", url, resp.Status)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s\n", url, resp.Status)
	return 0
}
