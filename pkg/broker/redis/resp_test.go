package redis

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"testing"
)

// wireOf is a wire that reads in.
func wireOf(in string) *wire {
	a, b := net.Pipe()
	b.Close()
	w := newWire(a)
	w.r = bufio.NewReaderSize(strings.NewReader(in), 64)
	return w
}

func TestWireReadsPubSubReplies(t *testing.T) {
	w := wireOf("*3\r\n$8\r\nsmessage\r\n$3\r\n{r}\r\n$5\r\nhello\r\n" +
		"*3\r\n$10\r\nssubscribe\r\n$3\r\n{r}\r\n:1\r\n" +
		"-MOVED 12 127.0.0.1:7000\r\n" +
		"+OK\r\n" +
		"*2\r\n$4\r\npong\r\n$0\r\n\r\n" +
		"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$-1\r\n")
	for _, want := range []reply{
		{kind: '*', elems: []string{"smessage", "{r}", "hello"}},
		{kind: '*', elems: []string{"ssubscribe", "{r}", "1"}},
		{kind: '-', str: "MOVED 12 127.0.0.1:7000"},
		{kind: '+', str: "OK"},
		{kind: '*', elems: []string{"pong", ""}},
		{kind: '*', elems: []string{"message", "c", ""}},
	} {
		got, err := w.read()
		if err != nil {
			t.Fatal(err)
		}
		if got.kind != want.kind || got.str != want.str || strings.Join(got.elems, "|") != strings.Join(want.elems, "|") {
			t.Fatalf("read %+v, want %+v", got, want)
		}
	}
}

// What is not RESP ends the connection with errProtocol, never a panic
// or a wrong reply.
func TestWireRefusesWhatIsNotRESP(t *testing.T) {
	for _, in := range []string{
		"\r\n",
		"hello\r\n",
		"*x\r\n",
		"*-2\r\n",
		"*1\r\n*1\r\n:1\r\n",
		"$3\r\nabcd\r\n",
		"$-5\r\n",
		"*1\r\n\r\n",
		"+OK\n",
		"$99999999999\r\n",
		"*1\r\n$" + strings.Repeat("9", 100) + "\r\n",
	} {
		_, err := wireOf(in).read()
		if !errors.Is(err, errProtocol) {
			t.Errorf("%q: %v, want errProtocol", in, err)
		}
	}
}
