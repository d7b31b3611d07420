package redis

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
)

// wire is one pub/sub connection's RESP2 framing: commands out, replies
// in. The shard that owns it serializes writes (shard.mu) and reads from
// one goroutine.
//
// Parley speaks RESP2 itself on its pub/sub connections, not through
// go-redis's PubSub, for two reasons. go-redis sends a reconnection's
// resubscription as one SSUBSCRIBE of every shard channel, which Redis
// Cluster refuses (CROSSSLOT) as soon as they span slots, and a room's
// channel must share its room's slot. And a shard connection must tell
// which command an error answers (MOVED to SSUBSCRIBE of one channel),
// which needs the replies matched to the commands in order.
type wire struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func newWire(c net.Conn) *wire {
	return &wire{c: c, r: bufio.NewReaderSize(c, 32<<10), w: bufio.NewWriterSize(c, 4<<10)}
}

// write buffers one command: an array of bulk strings.
func (w *wire) write(args ...string) {
	w.w.WriteByte('*')
	w.w.WriteString(strconv.Itoa(len(args)))
	w.w.WriteString("\r\n")
	for _, a := range args {
		w.w.WriteByte('$')
		w.w.WriteString(strconv.Itoa(len(a)))
		w.w.WriteString("\r\n")
		w.w.WriteString(a)
		w.w.WriteString("\r\n")
	}
}

// flush sends what write buffered.
func (w *wire) flush() error { return w.w.Flush() }

// reply is one RESP2 reply as a pub/sub connection gets them: an array of
// bulk strings and integers (a push: message, smessage, subscribe, pong...),
// a simple string (+OK, +PONG), an integer, or an error.
type reply struct {
	kind  byte     // '*', '+', ':', '-' or '$'
	str   string   // a simple string, an error's text, a bulk string
	elems []string // an array's elements; integers in decimal, nil bulk as ""
}

// errProtocol is a reply Parley cannot read: the connection is dropped.
var errProtocol = errors.New("redis pub/sub: protocol error")

// read reads one reply. Arrays nested in arrays are not expected on a
// pub/sub connection and are a protocol error.
func (w *wire) read() (reply, error) {
	line, err := w.line()
	if err != nil {
		return reply{}, err
	}
	if len(line) == 0 {
		return reply{}, fmt.Errorf("%w: empty line", errProtocol)
	}
	switch line[0] {
	case '+', '-', ':':
		return reply{kind: line[0], str: string(line[1:])}, nil
	case '$':
		s, err := w.bulk(line)
		return reply{kind: '$', str: s}, err
	case '*':
		n, err := strconv.Atoi(string(line[1:]))
		if err != nil || n < -1 || n > 1<<20 {
			return reply{}, fmt.Errorf("%w: array length %q", errProtocol, line)
		}
		r := reply{kind: '*'}
		if n > 0 {
			r.elems = make([]string, 0, n)
		}
		for range n {
			el, err := w.line()
			if err != nil {
				return reply{}, err
			}
			if len(el) == 0 {
				return reply{}, fmt.Errorf("%w: empty element", errProtocol)
			}
			switch el[0] {
			case '$':
				s, err := w.bulk(el)
				if err != nil {
					return reply{}, err
				}
				r.elems = append(r.elems, s)
			case ':', '+':
				r.elems = append(r.elems, string(el[1:]))
			default:
				return reply{}, fmt.Errorf("%w: array element %q", errProtocol, el)
			}
		}
		return r, nil
	}
	return reply{}, fmt.Errorf("%w: reply %q", errProtocol, line)
}

// line reads one CRLF-terminated line, without its CRLF. The slice is only
// valid until the next read.
func (w *wire) line() ([]byte, error) {
	line, err := w.r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: line too long", errProtocol)
		}
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("%w: line without CRLF", errProtocol)
	}
	return line[:len(line)-2], nil
}

// bulk reads the body of a bulk string whose header is line ("$<n>").
func (w *wire) bulk(line []byte) (string, error) {
	n, err := strconv.Atoi(string(line[1:]))
	if err != nil || n < -1 || n > 512<<20 {
		return "", fmt.Errorf("%w: bulk length %q", errProtocol, line)
	}
	if n == -1 {
		return "", nil
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(w.r, buf); err != nil {
		return "", err
	}
	if buf[n] != '\r' || buf[n+1] != '\n' {
		return "", fmt.Errorf("%w: bulk string without CRLF", errProtocol)
	}
	return string(buf[:n]), nil
}
