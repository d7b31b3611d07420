package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/protocol"
)

// ErrUnreachable is wrapped by Run and Storm when not even the first
// connection could be opened.
var ErrUnreachable = errors.New("cannot connect")

// dialer opens protocol-v1 connections, spreading them over the gateway URLs
// and the local source addresses.
type dialer struct {
	urls    []string
	clients []*http.Client // one per source address; one default client without sources
	timeout time.Duration
}

func newDialer(cfg *Config) *dialer {
	d := &dialer{urls: cfg.URLs, timeout: cfg.ConnectTimeout}
	sources := cfg.Sources
	if len(sources) == 0 {
		sources = []net.IP{nil}
	}
	for _, ip := range sources {
		nd := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
		if ip != nil {
			nd.LocalAddr = &net.TCPAddr{IP: ip}
		}
		d.clients = append(d.clients, &http.Client{Transport: &http.Transport{
			DialContext:         nd.DialContext,
			TLSHandshakeTimeout: cfg.ConnectTimeout,
			MaxIdleConnsPerHost: -1, // upgraded connections are never reused
		}})
	}
	return d
}

// close releases the transports' idle connections.
func (d *dialer) close() {
	for _, c := range d.clients {
		c.CloseIdleConnections()
	}
}

// inFrame is the part of a server frame the bench looks at.
type inFrame struct {
	Type      string `json:"type"`
	Ref       string `json:"ref"`
	Room      string `json:"room"`
	Epoch     string `json:"epoch"`
	Seq       int64  `json:"seq"`
	Recovered *bool  `json:"recovered"`
	Body      string `json:"body"`
	Code      string `json:"code"`
	Message   string `json:"message"`
}

// wsConn is one open, authenticated protocol-v1 connection.
type wsConn struct {
	c   *websocket.Conn
	url string
	buf bytes.Buffer // the frame being read; owned by the one reader
}

// connect dials connection n as user and says hello; with room set, it
// also joins the room (since may be nil) and returns the joined frame. The
// whole exchange is bounded by the dialer's timeout.
func (d *dialer) connect(ctx context.Context, n int, user, room string, since *protocol.Since) (*wsConn, *inFrame, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	u := d.urls[n%len(d.urls)]
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPClient:   d.clients[n%len(d.clients)],
		Subprotocols: []string{protocol.Subprotocol},
	})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %s", u, oneLine(err.Error()))
	}
	c.SetReadLimit(1 << 20)
	w := &wsConn{c: c, url: u}
	fail := func(err error) (*wsConn, *inFrame, error) {
		_ = c.CloseNow()
		return nil, nil, fmt.Errorf("%s: %w", u, err)
	}
	if err := w.write(ctx, &protocol.Frame{Type: protocol.TypeHello, Ref: "h", User: user, Device: "bench"}); err != nil {
		return fail(err)
	}
	if _, err := w.await(ctx, protocol.TypeWelcome, "h"); err != nil {
		return fail(err)
	}
	if room == "" {
		return w, nil, nil
	}
	if err := w.write(ctx, &protocol.Frame{Type: protocol.TypeJoin, Ref: "j", Room: room, Since: since}); err != nil {
		return fail(err)
	}
	f, err := w.await(ctx, protocol.TypeJoined, "j")
	if err != nil {
		return fail(err)
	}
	return w, f, nil
}

// await reads until the reply typ with ref; an error frame for ref fails.
// Other frames before it are dropped (none are expected: the join's
// catch-up follows its joined).
func (w *wsConn) await(ctx context.Context, typ, ref string) (*inFrame, error) {
	for {
		f, err := w.read(ctx)
		if err != nil {
			return nil, err
		}
		switch {
		case f.Type == typ && f.Ref == ref:
			return f, nil
		case f.Type == protocol.TypeError && (f.Ref == ref || f.Ref == ""):
			return nil, fmt.Errorf("%s: %s", f.Code, f.Message)
		}
	}
}

func (w *wsConn) write(ctx context.Context, f *protocol.Frame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return w.c.Write(ctx, websocket.MessageText, b)
}

// read reads and decodes one frame into a new inFrame.
func (w *wsConn) read(ctx context.Context) (*inFrame, error) {
	f := new(inFrame)
	if err := w.readInto(ctx, f); err != nil {
		return nil, err
	}
	return f, nil
}

// readInto reads one frame into w's reused buffer and decodes it into f.
func (w *wsConn) readInto(ctx context.Context, f *inFrame) error {
	_, r, err := w.c.Reader(ctx)
	if err != nil {
		return err
	}
	w.buf.Reset()
	if _, err := w.buf.ReadFrom(r); err != nil {
		return err
	}
	return decodeFrame(w.buf.Bytes(), f)
}

// closeWhenDone closes the connection when ctx ends, so that a loop may
// read with context.Background(): the WebSocket library would otherwise
// register (and allocate) a watch on ctx for every frame read.
func (w *wsConn) closeWhenDone(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = w.c.CloseNow() })
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// closeAll closes every connection with 1000, at most 256 at a time, and
// gives up waiting for close handshakes after timeout (the remaining ones are
// dropped).
func closeAll(conns []*wsConn, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	sem := make(chan struct{}, 256)
	done := make(chan struct{}, len(conns))
	var started int
	for _, w := range conns {
		if w == nil {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			_ = w.c.CloseNow()
			continue
		}
		started++
		go func() {
			defer func() { <-sem; done <- struct{}{} }()
			_ = w.c.Close(websocket.StatusNormalClosure, "bench done")
		}()
	}
	for range started {
		<-done // Close itself gives up after 5s at most
	}
}
