// Package memgw runs an in-process gateway on the memory broker for tests
// of clients (the Go SDK, the commands, the load generator): one node, dev
// auth, no Redis.
package memgw

import (
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/memory"
	"github.com/parley-chat/parley/pkg/gateway"
)

// Start runs a gateway named node with dev auth on a memory broker, after
// tweak (if not nil) has changed its config, and returns its WebSocket URL
// (ws://.../ws) and its server. Both end with the test.
func Start(t testing.TB, node string, tweak func(*gateway.Config)) (string, *httptest.Server) {
	t.Helper()
	cfg := gateway.Config{
		NodeID:  node,
		DevAuth: true,
		Logger:  slog.New(slog.DiscardHandler),
		NewBroker: func(h broker.Handler) (broker.Broker, error) {
			return memory.New(memory.Config{Handler: h}), nil
		},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	g, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		_ = g.Close()
		srv.Close()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws", srv
}
