// Command parley runs a Parley chat gateway and its tools.
//
//	parley serve [flags]        run a gateway node
//	parley healthcheck [flags]  exit 0 when the local gateway is ready
//	parley chat [flags] ROOM    chat in a room from a terminal
//	parley send [flags] ROOM [MESSAGE...]  send messages, print their seqs
//	parley tail [flags] ROOM    print a room's messages as JSON lines, live
//	parley bench [flags]        load-test gateways and check delivery
//
// Every flag of serve, healthcheck and the clients can also be set in the
// environment as PARLEY_<FLAG>, with dashes as underscores: PARLEY_ADDR,
// PARLEY_REDIS, PARLEY_NODE_ID, PARLEY_URL, PARLEY_USER, ...
package main

import (
	"fmt"
	"os"
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

The clients take --url (default ws://localhost:8080/ws) and --user (dev auth)
or --token; PARLEY_URL, PARLEY_USER and PARLEY_TOKEN work too.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		os.Exit(serve(os.Args[2:], os.Stderr))
	case "healthcheck":
		os.Exit(healthcheck(os.Args[2:], os.Stdout, os.Stderr))
	case "chat":
		os.Exit(chat(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	case "send":
		os.Exit(send(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	case "tail":
		os.Exit(tail(os.Args[2:], os.Stdout, os.Stderr))
	case "bench":
		os.Exit(bench(os.Args[2:], os.Stdout, os.Stderr))
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "parley: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
}
