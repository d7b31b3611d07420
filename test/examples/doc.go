// Package examples proves the clients in examples/ against real Parley
// gateways: the tutorial-style browser page (a plain WebSocket sending raw
// text, served by plain-text mode) and the WeChat mini-program's chat logic
// (protocol v1 with resume, the read cursor and typing), each run in a real
// headless Chromium next to a Go SDK client, with a real redis-server and
// real `parley serve` processes, all on loopback. The mini-program's handling of the gateway's
// "not now" answers (rate_limited, unavailable) is tested against a fake
// gateway (internal/fakegw) that gives them on cue.
//
// The example files are served over loopback by an httptest file server, so
// the pages' Origin is http://127.0.0.1:<port>; the gateways run with
// --allowed-origins 127.0.0.1:* to accept them, as a deployment that serves
// the pages from another origin must.
package examples
