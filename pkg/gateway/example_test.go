package gateway_test

import (
	"log"
	"net/http"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/redis"
	"github.com/parley-chat/parley/pkg/gateway"
)

// Embedding a gateway in your own server, publishing through Redis.
func Example() {
	g, err := gateway.New(gateway.Config{
		NodeID:    "gw-1",
		JWTSecret: []byte("change me"),
		NewBroker: func(h broker.Handler) (broker.Broker, error) {
			return redis.New(redis.Config{URL: "redis://127.0.0.1:6379/0", Handler: h})
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer g.Close()
	mux := http.NewServeMux()
	mux.Handle("/ws", g)
	mux.Handle("/readyz", g)
	_ = http.ListenAndServe(":8080", mux)
}
