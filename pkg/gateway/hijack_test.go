package gateway_test

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
)

// maskedText is one masked client text frame, as RFC 6455 section 5.2 lays
// it out.
func maskedText(payload []byte) []byte {
	b := []byte{0x81}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// readServerFrame reads one unmasked, unfragmented server frame.
func readServerFrame(t *testing.T, r *bufio.Reader) (opcode byte, payload []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatalf("read frame header: %v", err)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var x [2]byte
		if _, err := io.ReadFull(r, x[:]); err != nil {
			t.Fatal(err)
		}
		n = uint64(binary.BigEndian.Uint16(x[:]))
	case 127:
		var x [8]byte
		if _, err := io.ReadFull(r, x[:]); err != nil {
			t.Fatal(err)
		}
		n = binary.BigEndian.Uint64(x[:])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		t.Fatalf("read frame payload: %v", err)
	}
	return h[0] & 0x0f, payload
}

// The gateway swaps net/http's buffers for smaller ones at the upgrade.
// A client that sends its first frames in the same packet as the handshake
// (they sit in net/http's read buffer at that moment) must lose none of
// them, and frames larger than both buffers must pass whole, both ways.
func TestUpgradeKeepsPipelinedFramesAndLargeFrames(t *testing.T) {
	g, err := gateway.New(gateway.Config{DevAuth: true, Logger: quietLogger(), ReadBufferSize: 64, WriteBufferSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(func() { srv.Close(); _ = g.Close() })

	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(srv.URL, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))

	body := strings.Repeat("x", 3000) // larger than either 64-byte buffer
	var out []byte
	out = fmt.Appendf(out, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
		strings.TrimPrefix(srv.URL, "http://"), protocol.Subprotocol)
	out = append(out, maskedText([]byte(`{"type":"hello","user":"alice","device":"raw"}`))...)
	out = append(out, maskedText([]byte(`{"type":"join","room":"r","ref":"j"}`))...)
	out = append(out, maskedText(fmt.Appendf(nil, `{"type":"send","room":"r","id":"m1","ref":"s","body":%q}`, body))...)
	if _, err := conn.Write(out); err != nil { // handshake and 3 frames in one write
		t.Fatal(err)
	}

	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s, want 101", resp.Status)
	}
	var types []string
	for len(types) < 4 {
		op, payload := readServerFrame(t, r)
		if op != 1 {
			t.Fatalf("got opcode %d (%q), want a text frame; frames so far: %v", op, payload, types)
		}
		var f protocol.Frame
		if err := json.Unmarshal(payload, &f); err != nil {
			t.Fatalf("frame %q: %v", payload, err)
		}
		types = append(types, f.Type)
		if f.Type == "message" && f.Body != body {
			t.Fatalf("the 3000-byte body came back as %d bytes", len(f.Body))
		}
	}
	// The message and the ack race each other over the writer queue.
	got := strings.Join(types, ",")
	if got != "welcome,joined,message,ack" && got != "welcome,joined,ack,message" {
		t.Fatalf("frames %s, want welcome, joined, then the message and its ack", got)
	}
}
