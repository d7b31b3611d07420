package gateway

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
)

// leanWriter is the http.ResponseWriter handed to websocket.Accept. Its
// Hijack gives the WebSocket connection read and write buffers of the
// configured sizes instead of net/http's 4 KiB each: an idle connection
// keeps its buffers for as long as it lives, so at 10,000 connections the
// difference is tens of megabytes. net/http's own buffers are garbage once
// ServeHTTP returns, which serveWS does right after the upgrade.
type leanWriter struct {
	http.ResponseWriter
	readSize, writeSize int
}

// Unwrap lets http.ResponseController and the WebSocket library reach the
// underlying writer.
func (w *leanWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack implements http.Hijacker.
func (w *leanWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	// Whatever net/http already buffered (the 101 response it has not
	// flushed, bytes the client sent after the handshake) must not be lost
	// with its buffers.
	if brw.Writer.Buffered() > 0 {
		if err := brw.Writer.Flush(); err != nil {
			_ = nc.Close()
			return nil, nil, fmt.Errorf("hijack: flush: %w", err)
		}
	}
	// Bytes the client sent after its handshake are already in net/http's
	// read buffer; they are moved into the new one, where the WebSocket
	// library looks for them (it re-reads whatever is buffered).
	rsize := w.readSize
	n := brw.Reader.Buffered()
	if n > rsize {
		rsize = n
	}
	var br *bufio.Reader
	if n == 0 {
		br = bufio.NewReaderSize(nc, rsize)
	} else {
		b, _ := brw.Reader.Peek(n) // n bytes are buffered: Peek cannot fail
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(b)), nc), rsize)
		if _, err := br.Peek(n); err != nil { // served from the copy: it does not block
			_ = nc.Close()
			return nil, nil, fmt.Errorf("hijack: move buffered bytes: %w", err)
		}
	}
	return nc, bufio.NewReadWriter(br, bufio.NewWriterSize(nc, w.writeSize)), nil
}
