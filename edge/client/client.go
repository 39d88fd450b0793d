// Package client is a Go client for Causeway's protocol (PROTOCOL.md v1),
// used by tests, the load generator, bots and `causeway client`. Client is
// one connection; Session (session.go) is a connection that survives its
// edge: it reconnects, resubscribes with since, delivers each group's
// timeline once and in order, and retries sends.
//
// Concurrency: all methods are safe for concurrent use. One reader
// goroutine per Client dispatches answers to waiting requests and every
// other frame to Events, in the order received. Events must be drained: if
// nobody reads it, the reader stops reading, the edge's queue for this
// client fills, and the edge disconnects it as a slow consumer. A second
// goroutine per Client pings the edge (Options.PingInterval); the reader
// owns it: it stops it and waits for it before closing Done.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Frame is one edge -> client frame; fields a type does not use are zero.
type Frame struct {
	Type        string          `json:"type"`
	ID          string          `json:"id,omitempty"`
	Group       string          `json:"group,omitempty"`
	Seq         uint64          `json:"seq,omitempty"`
	ReadSeq     uint64          `json:"read_seq,omitempty"`
	Recovered   bool            `json:"recovered,omitempty"`
	From        string          `json:"from,omitempty"`
	ClientMsgID string          `json:"client_msg_id,omitempty"`
	TS          int64           `json:"ts,omitempty"`
	Body        json.RawMessage `json:"body,omitempty"`
	User        string          `json:"user,omitempty"`
	Event       string          `json:"event,omitempty"`
	Session     string          `json:"session,omitempty"`
	Edge        string          `json:"edge,omitempty"`
	Code        string          `json:"code,omitempty"`
	Message     string          `json:"message,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	// signal
	FromSession string          `json:"from_session,omitempty"`
	Call        string          `json:"call,omitempty"`
	CallSeq     uint64          `json:"call_seq,omitempty"`
	Kind        string          `json:"kind,omitempty"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	// presence and typing
	Status   string   `json:"status,omitempty"`
	Sessions uint32   `json:"sessions,omitempty"`
	Online   uint32   `json:"online,omitempty"`
	Members  uint32   `json:"members,omitempty"`
	Users    []string `json:"users,omitempty"`
	// Raw is the frame as received.
	Raw json.RawMessage `json:"-"`
}

// ErrNoSeq is returned by Send when the edge acknowledged a send without a
// seq: a server fault, not a lost connection.
var ErrNoSeq = errors.New("send acked without a seq")

// ErrUnresponsive is why a Client ended whose edge left a ping unanswered
// for PongTimeout: the edge process is hung or its host is gone, with the
// socket still open. A Session reconnects elsewhere on it.
var ErrUnresponsive = errors.New("causeway: edge unresponsive")

// Liveness defaults (Options and SessionConfig). Together they bound how
// long a hung edge can strand a client: PingInterval+PongTimeout.
const (
	DefaultPingInterval = 10 * time.Second
	DefaultPongTimeout  = 5 * time.Second
)

// Error is an `error` frame from the edge.
type Error struct {
	Code    string
	Message string
	// Reason details some codes, e.g. "offline" for a signal to a user
	// with no live session.
	Reason string
}

func (e *Error) Error() string { return "causeway: " + e.Code + ": " + e.Message }

// Options tunes Dial.
type Options struct {
	// EventBuffer is the capacity of Events (default 1024).
	EventBuffer int
	// Header is sent with the upgrade request (e.g. Origin).
	Header http.Header
	// ReadLimit bounds one incoming message (default 16 MiB).
	ReadLimit int64
	// Tap, if set, sees every received frame, undecoded, on the reader
	// goroutine before anything else; line is valid only during the call.
	// When it returns true the frame is consumed: not decoded, not
	// answered to a request, not sent to Events. Load generators use it
	// to skip decoding the frames they only count.
	Tap func(line []byte) bool
	// PingInterval is the pause between the Client's pings to the edge
	// (default DefaultPingInterval, 10s); negative disables them. Without
	// pings nothing notices an edge that hangs with the socket open (a
	// stopped process, a host gone without FIN or RST): the Client would
	// wait for frames forever.
	PingInterval time.Duration
	// PongTimeout is how long a ping may go unanswered before the
	// connection is taken for dead (default DefaultPongTimeout, 5s): the
	// Client then closes the socket without a close handshake and ends
	// with ErrUnresponsive. A hung edge is noticed within
	// PingInterval+PongTimeout. Pongs are read by the reader, so while it
	// is held up by an application that does not drain Events a missing
	// pong says nothing about the edge and is not held against it.
	PongTimeout time.Duration
	// Resume is the session ID this client had before reconnecting: the
	// edge redirects signals addressed to it (within their TTL) to the
	// new session. A Session sets it on every reconnect.
	Resume string
}

// withDefaults fills in the zero fields and rejects values that cannot
// work.
func (o Options) withDefaults() (Options, error) {
	if o.EventBuffer <= 0 {
		o.EventBuffer = 1024
	}
	if o.ReadLimit <= 0 {
		o.ReadLimit = 16 << 20
	}
	if o.PingInterval == 0 {
		o.PingInterval = DefaultPingInterval
	}
	switch {
	case o.PongTimeout == 0:
		o.PongTimeout = DefaultPongTimeout
	case o.PongTimeout < 0:
		return o, fmt.Errorf("pong timeout %v: must be positive (0 means %v)", o.PongTimeout, DefaultPongTimeout)
	}
	return o, nil
}

// Client is one authenticated connection to an edge.
type Client struct {
	ws      *websocket.Conn
	tap     func([]byte) bool
	events  chan Frame
	welcome Frame

	nextID atomic.Uint64
	wmu    sync.Mutex // serializes writes

	// stop ends the pinger; the reader calls it when it exits, then
	// waits for pinger before closing done.
	stop   context.CancelFunc
	pinger sync.WaitGroup
	// handoffs counts the reader's entries into and exits from a blocked
	// send on events: odd while it is blocked, changed if it was blocked
	// at some point since it was last read.
	handoffs atomic.Uint64

	mu      sync.Mutex
	pending map[string]chan Frame
	err     error
	done    chan struct{}
}

// Dial connects to an edge (ws://host:port/v1/ws), says hello with token
// and returns once welcomed.
func Dial(ctx context.Context, url, token string, opts *Options) (*Client, error) {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	o, err := o.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("dial options: %w", err)
	}
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		Subprotocols: []string{"causeway.v1"},
		HTTPHeader:   o.Header,
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	ws.SetReadLimit(o.ReadLimit)
	c := &Client{
		ws:      ws,
		tap:     o.Tap,
		events:  make(chan Frame, o.EventBuffer),
		pending: make(map[string]chan Frame),
		done:    make(chan struct{}),
	}
	pctx, stop := context.WithCancel(context.Background())
	c.stop = stop
	if o.PingInterval > 0 {
		c.pinger.Add(1)
		go c.keepalive(pctx, o.PingInterval, o.PongTimeout)
	}
	go c.read()
	hello := map[string]any{"type": "hello", "token": token}
	if o.Resume != "" {
		hello["resume"] = o.Resume
	}
	f, err := c.request(ctx, hello)
	if err != nil {
		if ctx.Err() != nil {
			// The edge upgraded the connection, then went quiet: a
			// close handshake would wait for it too.
			c.abort()
		} else {
			c.Close()
		}
		return nil, fmt.Errorf("hello: %w", err)
	}
	c.welcome = f
	return c, nil
}

// User, Session and Edge are from the welcome frame.
func (c *Client) User() string    { return c.welcome.User }
func (c *Client) Session() string { return c.welcome.Session }
func (c *Client) Edge() string    { return c.welcome.Edge }

// Events delivers every frame that does not answer a request: msg,
// member, subscribed, errors without a pending request, and so on. It is
// closed when the connection ends.
func (c *Client) Events() <-chan Frame { return c.events }

// Done is closed when the connection has ended; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is the reason the connection ended, or nil while it is open.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection. Events still queued are discarded.
func (c *Client) Close() error {
	// Drain Events while closing: a reader blocked on a full Events
	// (the application stopped reading) could not see the close
	// handshake otherwise, and Close would never return.
	go func() {
		for range c.events {
		}
	}()
	err := c.ws.Close(websocket.StatusNormalClosure, "bye")
	<-c.done
	return err
}

// abort is Close without the close handshake, for an edge that has stopped
// answering.
func (c *Client) abort() {
	go func() {
		for range c.events {
		}
	}()
	_ = c.ws.CloseNow()
	<-c.done
}

func (c *Client) read() {
	defer close(c.events)
	defer close(c.done)
	defer c.pinger.Wait()
	defer c.stop()
	ctx := context.Background()
	var buf bytes.Buffer // reused: frames are copied out before the next read
	for {
		_, r, err := c.ws.Reader(ctx)
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(r)
		}
		if err != nil {
			c.fail(err)
			return
		}
		msg := buf.Bytes()
		for len(msg) > 0 {
			line := msg
			if i := indexNL(msg); i >= 0 {
				line, msg = msg[:i], msg[i+1:]
			} else {
				msg = nil
			}
			if len(line) == 0 || c.tap != nil && c.tap(line) {
				continue
			}
			var f Frame
			if err := json.Unmarshal(line, &f); err != nil {
				c.fail(fmt.Errorf("edge sent malformed frame: %w", err))
				_ = c.ws.CloseNow()
				return
			}
			f.Raw = append(json.RawMessage(nil), line...)
			c.dispatch(f)
		}
	}
}

func indexNL(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i
		}
	}
	return -1
}

func (c *Client) dispatch(f Frame) {
	switch f.Type {
	case "ack", "error", "welcome", "subscribed":
		if f.ID == "" {
			break
		}
		c.mu.Lock()
		ch := c.pending[f.ID]
		delete(c.pending, f.ID)
		c.mu.Unlock()
		switch {
		case ch != nil:
			ch <- f
			// `subscribed` answers subscribe and is also an event: it
			// marks where the live stream starts.
			if f.Type != "subscribed" {
				return
			}
		case f.Type == "ack":
			return // the ack after a subscribed that already answered
		}
	}
	select {
	case c.events <- f:
	default:
		c.handoffs.Add(1)
		c.events <- f
		c.handoffs.Add(1)
	}
}

// keepalive pings the edge every interval and ends the connection when a
// pong does not come within timeout. The next ping is timed from the end
// of the last one, so pings never overlap and a hung edge is noticed
// within interval+timeout.
func (c *Client) keepalive(ctx context.Context, interval, timeout time.Duration) {
	defer c.pinger.Done()
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		before := c.handoffs.Load()
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := c.ws.Ping(pctx)
		cancel()
		switch {
		case err == nil:
		case ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded):
			// The connection is ending for another reason (closed,
			// failed read): the reader reports that one.
			return
		case c.handoffs.Load() != before || before%2 == 1:
			// The reader was stuck handing a frame to the
			// application, so the pong may be waiting behind it. The
			// edge closes a client that stays that slow; it is not
			// ours to call the edge dead.
		default:
			c.failOver(fmt.Errorf("%w: no pong within %v", ErrUnresponsive, timeout))
			// No close handshake: the edge would not answer it.
			_ = c.ws.CloseNow()
			return
		}
		t.Reset(interval)
	}
}

func (c *Client) fail(err error) { c.failWith(err, false) }

// failOver is fail for a verdict that outranks an I/O error the reader may
// have hit first: a ping that timed out while writing closes the socket
// itself, and the reader's "use of closed connection" would hide why.
func (c *Client) failOver(err error) { c.failWith(err, true) }

func (c *Client) failWith(err error, override bool) {
	c.mu.Lock()
	if c.err == nil || override && websocket.CloseStatus(c.err) == -1 {
		c.err = err
	}
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.mu.Unlock()
}

// WriteRaw sends bytes as one WebSocket text message, unvalidated (tests
// use it to send malformed frames).
func (c *Client) WriteRaw(ctx context.Context, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.Write(ctx, websocket.MessageText, b)
}

// request sends a frame with a fresh id and waits for its answer.
func (c *Client) request(ctx context.Context, frame map[string]any) (Frame, error) {
	id := strconv.FormatUint(c.nextID.Add(1), 10)
	frame["id"] = id
	b, err := json.Marshal(frame)
	if err != nil {
		return Frame{}, fmt.Errorf("encode %v: %w", frame["type"], err)
	}
	ch := make(chan Frame, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return Frame{}, fmt.Errorf("connection closed: %w", err)
	}
	c.pending[id] = ch
	c.mu.Unlock()
	if err := c.WriteRaw(ctx, b); err != nil {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return Frame{}, fmt.Errorf("write %v: %w", frame["type"], err)
	}
	select {
	case f, ok := <-ch:
		if !ok {
			return Frame{}, fmt.Errorf("connection closed: %w", c.Err())
		}
		if f.Type == "error" {
			return f, &Error{Code: f.Code, Message: f.Message, Reason: f.Reason}
		}
		return f, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return Frame{}, ctx.Err()
	}
}

// Join makes the user a member of group.
func (c *Client) Join(ctx context.Context, group string) error {
	_, err := c.request(ctx, map[string]any{"type": "join", "group": group})
	return err
}

// Leave ends the membership.
func (c *Client) Leave(ctx context.Context, group string) error {
	_, err := c.request(ctx, map[string]any{"type": "leave", "group": group})
	return err
}

// Subscribe attaches this session to group's live stream; since, if not
// nil, asks for every timeline event after it first. It returns the
// `subscribed` frame.
func (c *Client) Subscribe(ctx context.Context, group string, since *uint64) (Frame, error) {
	f := map[string]any{"type": "subscribe", "group": group}
	if since != nil {
		f["since"] = *since
	}
	return c.request(ctx, f)
}

// Unsubscribe detaches this session from group.
func (c *Client) Unsubscribe(ctx context.Context, group string) error {
	_, err := c.request(ctx, map[string]any{"type": "unsubscribe", "group": group})
	return err
}

// Send posts body (any JSON-encodable value) and returns its seq.
func (c *Client) Send(ctx context.Context, group, clientMsgID string, body any) (uint64, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return 0, fmt.Errorf("encode body: %w", err)
	}
	f, err := c.request(ctx, map[string]any{"type": "send", "group": group, "client_msg_id": clientMsgID, "body": json.RawMessage(raw)})
	if err != nil {
		return 0, err
	}
	if f.Seq == 0 {
		return 0, ErrNoSeq
	}
	return f.Seq, nil
}

// SubscribePresence is Subscribe that also asks for the presence of the
// group's members (presence frames carrying the group).
func (c *Client) SubscribePresence(ctx context.Context, group string, since *uint64) (Frame, error) {
	f := map[string]any{"type": "subscribe", "group": group, "presence": true}
	if since != nil {
		f["since"] = *since
	}
	return c.request(ctx, f)
}

// Signal sends one 1:1 signaling message to user to (all their sessions,
// or only toSession when set). It returns once the signal reached the
// callee's stream; an *Error with Reason "offline" means nobody is there.
func (c *Client) Signal(ctx context.Context, to, toSession, call, kind string, payload any) error {
	f := map[string]any{"type": "signal", "to": to, "call": call, "kind": kind}
	if toSession != "" {
		f["to_session"] = toSession
	}
	if payload != nil {
		raw, err := json.Marshal(payload)
		if err != nil {
			return fmt.Errorf("encode payload: %w", err)
		}
		f["payload"] = json.RawMessage(raw)
	}
	_, err := c.request(ctx, f)
	return err
}

// Presence asks for the presence of users: one presence frame each now,
// and one on every later change.
func (c *Client) Presence(ctx context.Context, users ...string) error {
	_, err := c.request(ctx, map[string]any{"type": "presence", "users": users})
	return err
}

// Typing says this user is typing in group.
func (c *Client) Typing(ctx context.Context, group string) error {
	_, err := c.request(ctx, map[string]any{"type": "typing", "group": group})
	return err
}

// Ping is a round trip to the edge (not to Kafka).
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.request(ctx, map[string]any{"type": "ping"})
	return err
}

// Read moves this user's read watermark in group to seq ("read everything
// up to seq"); the user's other sessions get a read frame.
func (c *Client) Read(ctx context.Context, group string, seq uint64) error {
	_, err := c.request(ctx, map[string]any{"type": "read", "group": group, "seq": seq})
	return err
}
