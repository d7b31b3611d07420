package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/parley-chat/parley/pkg/client"
)

// Example connects to a gateway, joins a room, posts a message and prints
// what arrives. It needs a running gateway, so it has no Output section.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, err := client.Dial(ctx, client.Config{
		URL:  "ws://localhost:8080/ws",
		User: "alice", // dev auth; set Token instead in production
	})
	if err != nil {
		log.Fatal(err) // a rejected token shows up here with close code 1008
	}
	defer c.Close()
	fmt.Println("connected to", c.Welcome().Node)

	joined, err := c.Join(ctx, "general", nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("joined general at seq", joined.Seq)

	ack, err := c.Send(ctx, "general", "hello, world")
	if err != nil {
		log.Fatal(err) // a *protocol.Error if the server refused it
	}
	fmt.Println("stored as seq", ack.Seq)

	// Read Events until our own message comes back. A real application
	// reads Events in its own goroutine for as long as the Client lives:
	// an unread Events channel stalls the connection.
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				return // the Client stopped
			}
			switch {
			case ev.Message != nil:
				fmt.Printf("%s #%d %s: %s\n", ev.Message.Room, ev.Message.Seq, ev.Message.From, ev.Message.Body)
				if ev.Message.ID == ack.ID {
					return
				}
			case ev.Joined != nil:
				if r := ev.Joined.Recovered; r != nil && !*r {
					fmt.Println("some messages in", ev.Joined.Room, "were lost")
				}
			case ev.Error != nil:
				fmt.Println("server error:", ev.Error.Code, ev.Error.Message)
			case ev.Retry != nil:
				// Refused for now (rate_limited, unavailable); the Client
				// resends it by itself.
				fmt.Println(ev.Retry.Request.Type, "delayed:", ev.Retry.Err, "retrying in", ev.Retry.After)
			default:
				fmt.Println("connection", ev.State, ev.Err) // reconnecting, connected, closed
			}
		case <-ctx.Done():
			log.Fatal(ctx.Err())
		}
	}
}
