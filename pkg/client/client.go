package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/pkg/protocol"
)

// Config configures a Client. Only URL and one of User or Token are
// required; every other field has a default.
type Config struct {
	// URL is the gateway's WebSocket endpoint, for example ws://host:8080/ws.
	// Required.
	URL string
	// User is the user name sent in hello under dev auth; used when Token
	// is empty.
	User string
	// Token is the JWT sent in hello.
	Token string
	// TokenSource, when set, returns a fresh JWT for the user. The Client
	// calls it for every hello (the first included: Token and User are
	// then not needed) and when the gateway says the connection's token
	// expires soon (token_expiring), and sends the token it returns in a
	// refresh, so that the connection outlives the token. An error from
	// it is logged: the connection then ends at the token's exp, and the
	// reconnect asks TokenSource again. Optional.
	TokenSource func(ctx context.Context) (string, error)
	// Device is hello.device. Default "go".
	Device string
	// Header holds extra HTTP headers for the WebSocket handshake. Optional.
	Header http.Header
	// MinBackoff is the shortest wait before a reconnect attempt, and
	// before resending a request answered unavailable. Default 100ms.
	MinBackoff time.Duration
	// MaxBackoff caps the wait between reconnect attempts, and between
	// resends of a request answered unavailable. Default 5s.
	MaxBackoff time.Duration
	// AckTimeout is how long a call waits for its reply (a Send for its ack)
	// after it was written before the Client drops the connection and
	// resends the request on a new one; a request refused for now and
	// waiting to be resent, or a send held behind an earlier one, is not
	// counted as waiting. It also bounds dial plus hello, and the re-joins
	// after a reconnect. Default 10s.
	AckTimeout time.Duration
	// RetryDial makes Dial retry a first connection that failed for a
	// reason that may pass (nothing listening, HTTP 503 from a draining
	// gateway, a connection closed before welcome), with the reconnect
	// backoff, until ctx ends; Dial then returns the last attempt's error.
	// A refusal of the credentials (HTTP 401/403, close 1008) still fails
	// at once. Default false: Dial returns the first failure.
	RetryDial bool
	// Logger receives the Client's diagnostics. Default: discard.
	Logger *slog.Logger
	// Buffer is the capacity of the Events channel. Default 1024.
	Buffer int
}

const (
	defaultDevice     = "go"
	defaultMinBackoff = 100 * time.Millisecond
	defaultMaxBackoff = 5 * time.Second
	defaultAckTimeout = 10 * time.Second
	defaultBuffer     = 1024

	// readLimit is the largest frame the Client accepts; history replies
	// can be large.
	readLimit = 1 << 20
)

func (cfg Config) withDefaults() (Config, error) {
	if cfg.URL == "" {
		return cfg, errors.New("parley client: Config.URL is required")
	}
	if cfg.User == "" && cfg.Token == "" && cfg.TokenSource == nil {
		return cfg, errors.New("parley client: Config.User, Config.Token or Config.TokenSource is required")
	}
	if cfg.Device == "" {
		cfg.Device = defaultDevice
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = defaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = defaultMaxBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = defaultAckTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = defaultBuffer
	}
	return cfg, nil
}

// State is the state of a Client's connection, reported in Event.State.
// The zero value is not a state: it is what Event.State holds on events that
// carry a message, a joined frame or an error frame.
type State int

const (
	// StateConnected: connected, every room re-joined and every unanswered
	// request resent. Not emitted for the connection Dial opens.
	StateConnected State = iota + 1
	// StateReconnecting: the connection dropped (Event.Err says why); the
	// Client is reconnecting.
	StateReconnecting
	// StateClosed: the Client has stopped, after Close (Err nil) or after a
	// fatal error such as a rejected token (Err says which). It is the last
	// event before Events is closed.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateConnected:
		return "connected"
	case StateReconnecting:
		return "reconnecting"
	case StateClosed:
		return "closed"
	default:
		return fmt.Sprintf("State(%d)", int(s))
	}
}

// Event is one item on the Events channel. Exactly one of Message, Joined,
// Typing, Presence, Membership, ReadSync, Error and Retry is set, or none
// of them and State is.
type Event struct {
	// Message is a "message" frame, delivered once, in seq order per room.
	Message *protocol.Message
	// Joined is a "joined" frame: the answer to a Join, the answer to a
	// re-join after a reconnect, or an epoch change pushed by the server
	// (recovered false: some messages are lost).
	Joined *protocol.Frame
	// Typing is a "typing" frame: another member of a joined room is
	// typing (user, device, room). It is ephemeral: never replayed.
	Typing *protocol.Frame
	// Presence is a "presence" frame without ref: in a joined room, the
	// connections of another user changed (user, devices, state "online",
	// or "offline" when devices is 0). The gateway sends none in rooms
	// over its presence detail size, and none about the user. The answer
	// to this Client's own Presence is returned by Presence, not
	// delivered here.
	Presence *protocol.Frame
	// Membership is a "membership" frame: another device of the user made
	// (state "member", with the room's kind) or ended (state "left") a
	// membership. Rooms already reflects it. When the room was left and
	// this Client had joined it, the Client leaves it too (it is no longer
	// re-joined; no Leave call is needed).
	Membership *protocol.Frame
	// ReadSync is a "read" frame without ref: another device of the user
	// moved the read cursor of a room (epoch, seq) and unread is what it
	// leaves. Rooms already reflects it. The answer to this Client's own
	// Read is returned by Read, not delivered here.
	ReadSync *protocol.Frame
	// Error is an error frame that answers no pending call: unsolicited, or
	// the answer to an automatic re-join (the room is then no longer
	// joined, unless the code says to retry later).
	Error *protocol.Frame
	// Retry reports a pending request that the server refused for now
	// (rate_limited or unavailable) and that the Client will resend by
	// itself; the call keeps waiting and returns no error for it. An
	// application may use it to show that a message is delayed.
	Retry *Retry
	// State is a connection state change, set when every field above is
	// nil.
	State State
	// Err says why: with StateReconnecting, why the connection dropped
	// (close code and reason, or the network error); with StateClosed, the
	// fatal error, or nil after Close.
	Err error
}

// Retry describes a request the server refused for now. See Event.Retry.
type Retry struct {
	// Request is the refused request: its Type and Room, and for a send
	// its ID and Body. A re-join after a reconnect is reported too (a
	// join the application did not call).
	Request protocol.Frame
	// Err is the server's answer: code rate_limited or unavailable.
	Err *protocol.Error
	// After is how long the Client waits before it resends the request:
	// the answer's retry_after_ms for rate_limited, a backoff between
	// Config.MinBackoff and Config.MaxBackoff for unavailable.
	After time.Duration
	// Attempt counts this request's refusals so far: 1 the first time.
	Attempt int
}

// Client is a connection to a Parley gateway that reconnects and resumes by
// itself. Its methods are safe for concurrent use.
type Client struct {
	cfg    Config
	log    *slog.Logger
	events chan Event

	ctx    context.Context // ends when Close is called
	cancel context.CancelFunc
	wg     sync.WaitGroup

	nextRef atomic.Uint64

	mu      sync.Mutex
	welcome protocol.Frame
	// rooms holds the position of each joined room: the epoch and the
	// last seq delivered on Events.
	rooms   map[string]*protocol.Position
	pending map[string]*call
	// sends are the pending sends in the order they were made; only the
	// first is ever written (see nextSendLocked).
	sends []*call
	// cur is the connection being resumed or in use; nil while
	// reconnecting.
	cur *conn
	// ready is true once cur is resumed: new requests are written at once.
	// While false they wait in pending and are sent by resume.
	ready bool
	// resumeRooms are the rooms re-joined (or being re-joined) on cur.
	resumeRooms map[string]bool
	// err is set when the Client has stopped; every call returns it.
	err error
	// typedAt is when Typing last sent a notice.
	typedAt time.Time
	// memberships are the user's rooms: welcome's, kept up to date by
	// joins, leaves, creates, messages, and membership and read frames.
	// haveRooms is false while no welcome has listed them.
	memberships map[string]*protocol.RoomState
	haveRooms   bool
}

// TypingInterval is the shortest time between two typing notices a Client
// sends, the server's default relay interval.
const TypingInterval = 2 * time.Second

// Dial connects to cfg.URL, sends hello and waits for welcome. It fails if
// that first attempt fails (unless Config.RetryDial); the error then names
// the close code and reason, or the error frame, the server answered with.
// Once Dial has returned a Client, the Client reconnects by itself until
// Close.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:     cfg,
		log:     cfg.Logger,
		events:  make(chan Event, cfg.Buffer),
		rooms:   make(map[string]*protocol.Position),
		pending: make(map[string]*call),

		memberships: make(map[string]*protocol.RoomState),
	}
	cn, welcome, err := c.connect(ctx)
	bo := &backoff{min: cfg.MinBackoff, max: cfg.MaxBackoff}
	for err != nil && cfg.RetryDial && !isFatal(err) {
		c.log.Warn("parley client: dial failed, retrying", "err", err)
		if !sleep(ctx, bo.next()) {
			break
		}
		var next error
		cn, welcome, next = c.connect(ctx)
		if next != nil && ctx.Err() != nil {
			// Cut short by ctx: the attempt before says more.
			break
		}
		err = next
	}
	if err != nil {
		if ctx.Err() != nil && cfg.RetryDial {
			err = fmt.Errorf("%w (retried until: %w)", err, ctx.Err())
		}
		return nil, fmt.Errorf("parley client: dial %s: %w", cfg.URL, unwrapFatal(err))
	}
	c.setWelcomeLocked(welcome) // no goroutine yet: no lock needed
	c.cur, c.ready = cn, true
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.run(cn)
	return c, nil
}

// Welcome returns the welcome frame of the current (or last) connection:
// the user, device and the gateway node that serves it.
func (c *Client) Welcome() protocol.Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcome
}

// Events returns the channel of messages, joined frames, unsolicited errors
// and state changes. See the package documentation on backpressure. The
// channel is closed when the Client stops.
func (c *Client) Events() <-chan Event { return c.events }

// Close closes the connection with code 1000, stops reconnecting, fails
// pending calls with ErrClosed and waits for the Client's goroutines. It is
// safe to call more than once.
func (c *Client) Close() error {
	c.cancel()
	c.wg.Wait()
	return nil
}
