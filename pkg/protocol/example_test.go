package protocol_test

import (
	"errors"
	"fmt"

	"github.com/parley-chat/parley/pkg/protocol"
)

func ExampleDecode() {
	f, err := protocol.Decode([]byte(`{"type":"join","room":"general","since":{"epoch":"e1","seq":41}}`))
	if err != nil {
		panic(err)
	}
	fmt.Println(f.Type, f.Room, f.Since.Epoch, f.Since.Seq)

	_, err = protocol.Decode([]byte(`{"type":"join","room":"two words"}`))
	fmt.Println(errors.Is(err, protocol.ErrBadFrame))
	// Output:
	// join general e1 41
	// true
}

func ExampleEncode() {
	b, _ := protocol.Encode(&protocol.Frame{Type: protocol.TypeAck, Ref: "r1", ID: "c-123", Room: "general", Seq: 58, TS: "2026-11-22T10:00:00.000Z"})
	fmt.Println(string(b))
	// Output: {"type":"ack","ref":"r1","room":"general","seq":58,"id":"c-123","ts":"2026-11-22T10:00:00.000Z"}
}

func ExamplePosition_Place() {
	// A client has seen up to seq 41 of epoch e1.
	pos := protocol.Position{Epoch: "e1", Seq: 41}
	fmt.Println(pos.Place("e1", 42)) // the next one: take it and advance
	fmt.Println(pos.Place("e1", 40)) // seen already: drop it
	fmt.Println(pos.Place("e1", 45)) // 42..44 are missing
	fmt.Println(pos.Place("e2", 1))  // the room's store was lost and began again

	// An empty room's zero position takes the first message's epoch.
	var empty protocol.Position
	fmt.Println(empty.Place("e1", 1))
	// Output:
	// next
	// duplicate
	// gap
	// new epoch
	// next
}
