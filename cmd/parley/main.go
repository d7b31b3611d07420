// Command parley runs a Parley chat gateway and its tools.
//
//	parley serve [flags]        run a gateway node
//	parley healthcheck [flags]  exit 0 when the local gateway is ready
//
// Every serve flag can also be set in the environment as PARLEY_<FLAG>, with
// dashes as underscores: PARLEY_ADDR, PARLEY_REDIS, PARLEY_NODE_ID, ...
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
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "parley: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
}
