package memory_test

import (
	"context"
	"fmt"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/memory"
)

func Example() {
	b := memory.New(memory.Config{Retention: 100})
	defer b.Close()
	ctx := context.Background()
	for _, id := range []string{"a", "b", "a"} { // "a" twice: the resend is deduplicated
		ack, _ := b.Publish(ctx, broker.Publication{Room: "general", ID: id, From: "alice", Body: "hi " + id})
		fmt.Println(ack.Seq, ack.Duplicate)
	}
	r, _ := b.After(ctx, "general", 0, 0)
	for _, m := range r.Messages {
		fmt.Println(m.Seq, m.Body)
	}
	// Output:
	// 1 false
	// 2 false
	// 1 true
	// 1 hi a
	// 2 hi b
}
