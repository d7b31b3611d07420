// Package terminal holds the process-level tests of the terminal clients:
// `parley chat` driven through a real tmux pane, `parley tail` following a
// room across a gateway's kill and restart, and `parley send` reading
// stdin, each against real `parley serve` processes on a real redis-server,
// all on loopback.
package terminal
