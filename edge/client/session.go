package client

// Session is the resilient client of issue 3: it survives its edge dying.
//
// Goroutines: the Session owns exactly one, run, started by Connect and
// stopped by Close (or by a fatal error). run owns the current *Client: it
// dials, resubscribes, pumps the Client's events into Session.Events, and
// closes and drains the Client when the connection ends. Application
// goroutines calling Join, Subscribe, Send... borrow the current Client
// for one request and never close it. Teardown order: cancel run's
// context; run closes the Client, drains its events so its reader exits,
// closes Events, then Done.
//
// Lock order: Session.mu only; it is never held across I/O or a channel
// send.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Error codes a Session branches on (docs/PROTOCOL.md).
const (
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeNotMember    = "not_member"
	CodeUnavailable  = "unavailable"
	CodeRateLimited  = "rate_limited"
)

var (
	// ErrSessionClosed is returned by a Session's methods after Close.
	ErrSessionClosed = errors.New("causeway: session closed")
	// ErrUnauthorized ends a Session whose edge refused a freshly fetched
	// token: reconnecting with it again would be refused again.
	ErrUnauthorized = errors.New("causeway: unauthorized")
)

// Order is how a Session walks SessionConfig.URLs.
type Order int

const (
	// OrderShuffle, the default, shuffles URLs once, then goes round-robin:
	// a failed dial or a lost connection moves on to the next URL. Clients
	// given the same list spread over the edges, and one that loses its
	// edge tries another first.
	OrderShuffle Order = iota
	// OrderPreferred keeps URLs in the given order, most wanted (say the
	// nearest edge) first: every connect and every reconnect starts at
	// URLs[0] and falls over to URLs[1], URLs[2]... in order, then from
	// the top again. A Session that fell over stays where it landed until
	// that connection ends; the next reconnect tries URLs[0] again. An
	// edge that is down costs one refused dial per reconnect; one that
	// hangs costs DialTimeout.
	OrderPreferred
	// OrderListed is OrderShuffle without the shuffle: the first connect
	// tries URLs[0] first, and a failed dial or a lost connection moves on
	// to the next URL, round-robin. For a caller that placed its clients
	// itself (a load balancer's list, a benchmark's groups) and wants
	// failover to go straight to another edge.
	OrderListed
)

// String names the order, for errors and logs.
func (o Order) String() string {
	switch o {
	case OrderShuffle:
		return "shuffle"
	case OrderPreferred:
		return "preferred"
	case OrderListed:
		return "listed"
	}
	return "Order(" + strconv.Itoa(int(o)) + ")"
}

// SessionConfig configures Connect. Zero values are the documented
// defaults.
type SessionConfig struct {
	// URLs are edges (ws://host:port/v1/ws), walked as Order says.
	URLs []string
	// Order is OrderShuffle (the default), OrderPreferred or OrderListed.
	Order Order
	// DialTimeout bounds one connection attempt, from TCP connect to the
	// welcome (default 10s). An edge that accepts the connection but
	// never answers (a hung process) is then left for the next URL.
	DialTimeout time.Duration
	// PingInterval and PongTimeout are the liveness check of each
	// connection (defaults DefaultPingInterval and DefaultPongTimeout;
	// see Options): an edge that leaves a ping unanswered for PongTimeout
	// is taken for dead, and the Session reconnects elsewhere and resumes
	// with since as after a closed socket. A negative PingInterval
	// disables the check, and a hung edge then strands the Session.
	PingInterval, PongTimeout time.Duration
	// Token returns the token for the next hello. It is called before
	// every dial so an expiring token can be refreshed; an error from it
	// ends the Session.
	Token func(ctx context.Context) (string, error)
	// MinBackoff and MaxBackoff bound the reconnect delay (defaults 50ms
	// and 5s). The delay before attempt n is uniform in
	// [0, min(MaxBackoff, MinBackoff*2^n)) ("full jitter"), so clients cut
	// off together do not come back together.
	MinBackoff, MaxBackoff time.Duration
	// EventBuffer is the capacity of Events and of each Client's own
	// buffer (default 1024).
	EventBuffer int
	// ResubscribeWindow bounds the resubscribes in flight after a
	// reconnect (default 4); the next group is subscribed when one is
	// answered. An edge queues a whole history replay at once and closes
	// a client whose queue overflows (4409), so resubscribing many
	// lagging groups together would be cut off again and again; with
	// the default history (1000 events) and queue (4096 frames), 4
	// replays fit.
	ResubscribeWindow int
	// DialOptions, if set, is the template for each Client (Header,
	// ReadLimit, Tap). EventBuffer, PingInterval and PongTimeout above
	// override its own.
	DialOptions *Options
	// Logger, if set, logs reconnects and recoveries.
	Logger *slog.Logger

	// dropEvent, if set (tests only), makes the Session act as if a
	// timeline event never arrived, to provoke gap recovery.
	dropEvent func(Frame) bool
}

// SessionStats are a Session's recovery counters.
type SessionStats struct {
	// Reconnects counts connections made after the first.
	Reconnects uint64
	// Resubscribes counts subscribe frames the Session sent on its own:
	// after a reconnect, to fill gaps, and again after `unavailable`.
	Resubscribes uint64
	// GapsDetected counts timeline events that arrived with a seq beyond
	// the next expected one.
	GapsDetected uint64
	// GapsRecovered counts detected gaps later filled in order.
	GapsRecovered uint64
	// GapsUnrecoverable counts `subscribed` frames with recovered=false
	// (passed on to the application).
	GapsUnrecoverable uint64
	// DuplicatesDropped counts timeline events with a seq already
	// delivered.
	DuplicatesDropped uint64
	// SendRetries counts requests (sends, joins, subscribes...) re-sent
	// after a lost connection or an `unavailable` answer.
	SendRetries uint64
}

type sessionCounters struct {
	reconnects, resubscribes, gapsDetected, gapsRecovered, gapsUnrecoverable, duplicates, sendRetries atomic.Uint64
}

// Session is a connection to Causeway that reconnects by itself. It
// remembers the subscribed groups and the last seq delivered of each,
// resubscribes with `since` after a reconnect, delivers each group's
// timeline in order exactly once, and retries sends with the same
// client_msg_id until they are acknowledged.
//
// All methods are safe for concurrent use. Events must be drained (see
// Client), and from a goroutine that does not also wait in Send, Join...:
// a request waiting for a reconnect needs the old connection's frames to
// be handed on first.
type Session struct {
	cfg    SessionConfig
	log    *slog.Logger
	events chan Frame
	cancel context.CancelFunc
	done   chan struct{} // closed when run has returned
	stats  sessionCounters
	nextID atomic.Uint64 // ids of the Session's own requests

	// Owned by run (and Connect before run starts).
	urls    []string
	urlNext int

	mu      sync.Mutex
	cur     *Client       // the live connection; nil while reconnecting
	changed chan struct{} // closed and replaced whenever cur changes or the Session ends
	groups  map[string]*timeline
	subReqs map[string]ownSub // own subscribes in flight, by request id
	// Groups still to resubscribe on this connection, and how many of
	// those sent are unanswered (at most ResubscribeWindow).
	resubQueue    []string
	resubInflight int
	watched       map[string]struct{} // users whose presence was asked for
	// callSeqs holds the call_seqs seen per (call, sender), for dedup.
	callSeqs map[string]map[uint64]bool
	err      error // why the Session ended
	ended    bool
}

// Connect dials an edge, retrying with backoff until one welcomes it, ctx
// is done or the token is refused, and returns a running Session.
func Connect(ctx context.Context, cfg SessionConfig) (*Session, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("session config: no edge URLs")
	}
	if cfg.Token == nil {
		return nil, errors.New("session config: no token source")
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 50 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		return nil, fmt.Errorf("session config: max backoff %v below min backoff %v", cfg.MaxBackoff, cfg.MinBackoff)
	}
	if cfg.EventBuffer <= 0 {
		cfg.EventBuffer = 1024
	}
	if cfg.ResubscribeWindow <= 0 {
		cfg.ResubscribeWindow = 4
	}
	switch {
	case cfg.Order != OrderShuffle && cfg.Order != OrderPreferred && cfg.Order != OrderListed:
		return nil, fmt.Errorf("session config: order %v: want OrderShuffle, OrderPreferred or OrderListed", cfg.Order)
	case cfg.DialTimeout < 0:
		return nil, fmt.Errorf("session config: dial timeout %v: must be positive (0 means 10s)", cfg.DialTimeout)
	case cfg.PongTimeout < 0:
		return nil, fmt.Errorf("session config: pong timeout %v: must be positive (0 means %v)", cfg.PongTimeout, DefaultPongTimeout)
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.PongTimeout == 0 {
		cfg.PongTimeout = DefaultPongTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Session{
		cfg:     cfg,
		log:     log,
		events:  make(chan Frame, cfg.EventBuffer),
		done:    make(chan struct{}),
		urls:    append([]string(nil), cfg.URLs...),
		changed: make(chan struct{}),
		groups:  make(map[string]*timeline),
		subReqs: make(map[string]ownSub),
	}
	if cfg.Order == OrderShuffle {
		rand.Shuffle(len(s.urls), func(i, j int) { s.urls[i], s.urls[j] = s.urls[j], s.urls[i] })
	}
	c, err := s.dial(ctx, 0, "")
	if err != nil {
		return nil, err
	}
	s.setCurrent(c)
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.run(runCtx, c)
	return s, nil
}

// Events delivers, in order: each subscribed group's timeline events (msg,
// member) once each in seq order; a `subscribed` frame with
// Recovered=false when events after the last delivered one could not be
// recovered (the next event of that group follows the hole); and every
// other frame that answers no request (receipts, typing, errors...). It is
// closed when the Session ends.
func (s *Session) Events() <-chan Frame { return s.events }

// Done is closed when the Session has ended (Close or a fatal error).
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is why the Session ended: nil while it runs and after Close,
// otherwise the fatal error (ErrUnauthorized, a token source error...).
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Stats returns the recovery counters.
func (s *Session) Stats() SessionStats {
	return SessionStats{
		Reconnects:        s.stats.reconnects.Load(),
		Resubscribes:      s.stats.resubscribes.Load(),
		GapsDetected:      s.stats.gapsDetected.Load(),
		GapsRecovered:     s.stats.gapsRecovered.Load(),
		GapsUnrecoverable: s.stats.gapsUnrecoverable.Load(),
		DuplicatesDropped: s.stats.duplicates.Load(),
		SendRetries:       s.stats.sendRetries.Load(),
	}
}

// Client is the current connection, or nil while reconnecting. It is for
// reading its identity (User, Session, Edge); closing it makes the Session
// reconnect.
func (s *Session) Client() *Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// Close ends the Session and waits until its goroutine has stopped and
// Events is closed.
func (s *Session) Close() error {
	s.cancel()
	<-s.done
	return nil
}

// Join makes the user a member of group, retrying across reconnects (a
// repeated join is a no-op on the server).
func (s *Session) Join(ctx context.Context, group string) error {
	return s.do(ctx, func(c *Client) error { return c.Join(ctx, group) })
}

// Leave ends the membership and forgets the group's subscription. A leave
// retried after a lost connection may have taken effect already and then
// answers not_member.
func (s *Session) Leave(ctx context.Context, group string) error {
	s.forget(group)
	return s.do(ctx, func(c *Client) error { return c.Leave(ctx, group) })
}

// Subscribe attaches the Session to group. If the group is already
// subscribed it re-attaches from the last delivered seq. The Session keeps
// it subscribed across reconnects until Unsubscribe or Leave. It returns
// the `subscribed` frame.
func (s *Session) Subscribe(ctx context.Context, group string) (Frame, error) {
	return s.subscribe(ctx, group, false)
}

// SubscribePresence is Subscribe that also asks for the presence of the
// group's members, kept across reconnects like the subscription.
func (s *Session) SubscribePresence(ctx context.Context, group string) (Frame, error) {
	return s.subscribe(ctx, group, true)
}

func (s *Session) subscribe(ctx context.Context, group string, presence bool) (Frame, error) {
	var f Frame
	err := s.do(ctx, func(c *Client) error {
		s.mu.Lock()
		t := s.groups[group]
		if t == nil {
			t = &timeline{}
			s.groups[group] = t
		}
		t.presence = presence
		var since *uint64
		if t.known {
			v := t.last
			since = &v
		}
		s.mu.Unlock()
		var err error
		if presence {
			f, err = c.SubscribePresence(ctx, group, since)
		} else {
			f, err = c.Subscribe(ctx, group, since)
		}
		return err
	})
	if err != nil {
		var e *Error
		if errors.As(err, &e) && !retryable(e.Code) {
			// Refused (not_member, forbidden...): there is nothing to
			// keep subscribed. A ctx that ran out while the backend was
			// unavailable keeps the group for the next connection.
			s.forget(group)
		}
		return Frame{}, err
	}
	return f, nil
}

// Unsubscribe detaches the Session from group and forgets its position.
func (s *Session) Unsubscribe(ctx context.Context, group string) error {
	s.forget(group)
	return s.do(ctx, func(c *Client) error { return c.Unsubscribe(ctx, group) })
}

// Send posts body and returns its seq. If the connection is lost before
// the ack, or the edge answers unavailable, the same frame (same
// clientMsgID) is sent again, on the next connection if need be, until
// ctx is done: the server sequences it once and answers a retry with the
// original seq. Other error codes are returned at once.
func (s *Session) Send(ctx context.Context, group, clientMsgID string, body any) (uint64, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return 0, fmt.Errorf("encode body: %w", err)
	}
	var seq uint64
	err = s.do(ctx, func(c *Client) error {
		var err error
		seq, err = c.Send(ctx, group, clientMsgID, json.RawMessage(raw))
		return err
	})
	return seq, err
}

func (s *Session) forget(group string) {
	s.mu.Lock()
	delete(s.groups, group)
	s.mu.Unlock()
}

// retryable reports whether an error code is worth retrying with the
// same frame.
func retryable(code string) bool { return code == CodeUnavailable || code == CodeRateLimited }

// do runs one request on the current connection, retrying on connection
// loss and retryable codes until ctx is done or the Session ends.
func (s *Session) do(ctx context.Context, req func(*Client) error) error {
	for attempt := 0; ; attempt++ {
		c, err := s.client(ctx)
		if err != nil {
			return err
		}
		err = req(c)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		if errors.Is(err, ErrNoSeq) {
			return err
		}
		var e *Error
		if errors.As(err, &e) {
			if !retryable(e.Code) {
				return err
			}
			// The connection is fine but the backend is not: wait a little.
			if werr := sleep(ctx, s.backoff(attempt)); werr != nil {
				return err
			}
		} else {
			// Anything else is the connection failing under the
			// request (closed, or a write that failed and closed it):
			// wait for its reader to end, then for the next one.
			select {
			case <-c.Done():
			case <-ctx.Done():
				return err
			case <-s.done:
			}
		}
		s.stats.sendRetries.Add(1)
		s.log.Debug("retrying request", "attempt", attempt+1, "err", err)
	}
}

// client returns the live connection, waiting for one while reconnecting.
func (s *Session) client(ctx context.Context) (*Client, error) {
	for {
		s.mu.Lock()
		c, changed, ended, err := s.cur, s.changed, s.ended, s.err
		s.mu.Unlock()
		switch {
		case err != nil:
			return nil, err
		case ended:
			return nil, ErrSessionClosed
		case c != nil && c.Err() == nil:
			return c, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (s *Session) setCurrent(c *Client) {
	s.mu.Lock()
	s.cur = c
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// backoff is the full-jitter delay before retry attempt n (0-based).
func (s *Session) backoff(n int) time.Duration {
	return jitter(s.cfg.MinBackoff, s.cfg.MaxBackoff, n, rand.Float64())
}

// jitter is backoff with the random draw r in [0,1) passed in, for tests.
func jitter(lo, hi time.Duration, n int, r float64) time.Duration {
	ceil := lo
	for i := 0; i < n && ceil < hi; i++ {
		ceil *= 2
	}
	ceil = min(ceil, hi)
	return time.Duration(r * float64(ceil))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// unauthorized reports whether err is the edge refusing the token.
func unauthorized(err error) bool {
	var e *Error
	if errors.As(err, &e) && e.Code == CodeUnauthorized {
		return true
	}
	return websocket.CloseStatus(err) == 4401
}

// dial connects to the next edge (the first, with OrderPreferred), with
// backoff between failed attempts starting at attempt. A refused token is
// fetched again at once; a second refusal in a row, or a failing token
// source, is fatal.
func (s *Session) dial(ctx context.Context, attempt int, resume string) (*Client, error) {
	if s.cfg.Order == OrderPreferred {
		s.urlNext = 0
	}
	refused := 0
	for ; ; attempt++ {
		token, err := s.cfg.Token(ctx)
		if err != nil {
			return nil, fmt.Errorf("token source: %w", err)
		}
		url := s.urls[s.urlNext%len(s.urls)]
		opts := Options{}
		if s.cfg.DialOptions != nil {
			opts = *s.cfg.DialOptions
		}
		opts.EventBuffer = s.cfg.EventBuffer
		opts.PingInterval, opts.PongTimeout = s.cfg.PingInterval, s.cfg.PongTimeout
		opts.Resume = resume
		dctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
		c, err := Dial(dctx, url, token, &opts)
		cancel()
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect: %w", ctx.Err())
		}
		if unauthorized(err) {
			if refused++; refused >= 2 {
				return nil, fmt.Errorf("%w: %s refused a fresh token: %v", ErrUnauthorized, url, err)
			}
			s.log.Info("token refused; fetching a new one", "url", url, "err", err)
			continue // same edge, new token, no wait
		}
		refused = 0
		s.urlNext++
		d := s.backoff(attempt)
		s.log.Info("connect failed", "url", url, "err", err, "retry_in", d)
		if err := sleep(ctx, d); err != nil {
			return nil, fmt.Errorf("connect: %w", err)
		}
	}
}

// fatalClose reports close codes after which reconnecting cannot help:
// the client itself is at fault (docs/PROTOCOL.md, close codes).
func fatalClose(code websocket.StatusCode) bool {
	return code == websocket.StatusProtocolError || code == 4400
}

// run owns the connection: it pumps c, and when c ends reconnects,
// resubscribes and pumps the new one, until ctx is done or a fatal error.
func (s *Session) run(ctx context.Context, c *Client) {
	var fatal error
	defer func() {
		s.mu.Lock()
		s.cur = nil
		s.ended = true
		s.err = fatal
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
		close(s.events)
		close(s.done)
	}()
	attempt := 0
	for {
		up := time.Now()
		s.pump(ctx, c)
		reason := c.Err()
		s.release(c)
		s.setCurrent(nil)
		if ctx.Err() != nil {
			return
		}
		code := websocket.CloseStatus(reason)
		if fatalClose(code) {
			fatal = fmt.Errorf("edge closed the connection: %w", reason)
			s.log.Error("session stopped", "err", fatal)
			return
		}
		// A connection that lived longer than the longest backoff was
		// healthy: start the backoff over. One that dies at once keeps
		// growing it, so a flapping edge is not hammered.
		if time.Since(up) > s.cfg.MaxBackoff {
			attempt = 0
		}
		s.urlNext++ // this edge may be the one going away
		d := s.backoff(attempt)
		s.log.Info("connection lost; reconnecting", "err", reason, "code", int(code), "retry_in", d)
		if err := sleep(ctx, d); err != nil {
			return
		}
		prev := c.Session()
		var err error
		c, err = s.dial(ctx, attempt+1, prev)
		if err != nil {
			if ctx.Err() == nil {
				fatal = err
				s.log.Error("session stopped", "err", err)
			}
			return
		}
		attempt++
		s.stats.reconnects.Add(1)
		s.setCurrent(c)
		s.resubscribeAll(ctx, c)
		s.rewatch(ctx, c)
		s.log.Info("reconnected", "edge", c.Edge(), "session", c.Session())
	}
}

// release closes c and drains its events so that its reader, which may be
// blocked handing us a frame, can exit.
func (s *Session) release(c *Client) {
	_ = c.ws.Close(websocket.StatusNormalClosure, "bye")
	for range c.events {
	}
	<-c.done
}

// subscribeFrame is one of the Session's own subscribe requests. Their
// answers are not awaited: they are handled in order by pump, which
// cannot wait for an answer that only its own reading lets through.
type subscribeFrame struct {
	Type     string  `json:"type"`
	ID       string  `json:"id"`
	Group    string  `json:"group"`
	Since    *uint64 `json:"since,omitempty"`
	Presence bool    `json:"presence,omitempty"`
}

// ownSub is one of the Session's own subscribes in flight.
type ownSub struct {
	group  string
	queued bool // one of the windowed resubscribes after a reconnect
	sent   time.Time
}

// resubscribeTimeout bounds the wait for the answer to the Session's own
// subscribe: an answer lost in transit (say the edge's delivery consumer
// skipped it across a broker restart) would otherwise leave the group
// silently unsubscribed, with its events held back as a gap forever.
const resubscribeTimeout = 15 * time.Second

// resubscribeAll subscribes every remembered group on a new connection,
// from its last delivered seq, ResubscribeWindow at a time.
func (s *Session) resubscribeAll(ctx context.Context, c *Client) {
	s.mu.Lock()
	// Answers to subscribes sent on the old connection can no longer come.
	clear(s.subReqs)
	s.resubQueue = s.resubQueue[:0]
	s.resubInflight = 0
	for g, t := range s.groups {
		t.resync = ""
		s.resubQueue = append(s.resubQueue, g)
	}
	msg := s.nextResubscribesLocked()
	s.mu.Unlock()
	if len(msg) == 0 {
		return
	}
	if err := c.WriteRaw(ctx, msg); err != nil {
		// The connection is already gone; pump will notice.
		s.log.Info("resubscribe failed", "err", err)
	}
}

// nextResubscribesLocked takes groups off the resubscribe queue while the
// window has room and returns their subscribe frames as one message.
// s.mu is held.
func (s *Session) nextResubscribesLocked() []byte {
	var msg []byte
	for s.resubInflight < s.cfg.ResubscribeWindow && len(s.resubQueue) > 0 {
		g := s.resubQueue[0]
		s.resubQueue = s.resubQueue[1:]
		t := s.groups[g]
		if t == nil {
			continue // unsubscribed meanwhile
		}
		msg = append(msg, s.subscribeLocked(g, t, true)...)
		msg = append(msg, '\n')
		s.resubInflight++
	}
	return msg
}

// subscribeLocked builds an own subscribe for group from its position and
// marks it in flight. s.mu is held.
func (s *Session) subscribeLocked(group string, t *timeline, queued bool) []byte {
	f := subscribeFrame{Type: "subscribe", ID: "cw" + strconv.FormatUint(s.nextID.Add(1), 10), Group: group, Presence: t.presence}
	if t.known {
		v := t.last
		f.Since = &v
	}
	t.resync = f.ID
	s.subReqs[f.ID] = ownSub{group: group, queued: queued, sent: time.Now()}
	s.stats.resubscribes.Add(1)
	b, _ := json.Marshal(f) // cannot fail: strings and a number
	return b
}

// pump moves c's frames to Events, through each group's timeline, until c
// ends or ctx is done.
func (s *Session) pump(ctx context.Context, c *Client) {
	tick := time.NewTicker(resubscribeTimeout / 3)
	defer tick.Stop()
	for {
		var f Frame
		var ok bool
		select {
		case f, ok = <-c.Events():
			if !ok {
				return
			}
		case <-ctx.Done():
			return
		case <-tick.C:
			if s.resubscribeStalled() {
				// Start over on a fresh connection: it resubscribes
				// every group from its last delivered seq.
				s.log.Warn("no answer to a resubscribe; reconnecting")
				go c.Close()
			}
			continue
		}
		out, deliver, resub := s.route(f)
		if len(resub) > 0 {
			if err := c.WriteRaw(ctx, resub); err != nil {
				s.log.Info("resubscribe failed", "err", err)
			}
		}
		if !deliver {
			continue
		}
		select {
		case s.events <- out:
		case <-ctx.Done():
			return
		}
	}
}

// resubscribeStalled reports whether an own subscribe has gone unanswered
// for resubscribeTimeout.
func (s *Session) resubscribeStalled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.subReqs {
		if time.Since(o.sent) > resubscribeTimeout {
			return true
		}
	}
	return false
}

// route decides what one frame means for the application: whether to
// deliver it (possibly rewritten) and whether a group must be subscribed
// again to fill a gap.
func (s *Session) route(f Frame) (out Frame, deliver bool, resub []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch f.Type {
	case "signal":
		// A resumed session gets the call's buffered signals again:
		// deliver each (call, sender, call_seq) once.
		k := f.Call + "\x00" + f.From
		if f.CallSeq != 0 {
			if s.callSeqs == nil {
				s.callSeqs = make(map[string]map[uint64]bool)
			}
			seen := s.callSeqs[k]
			if seen == nil {
				seen = make(map[uint64]bool)
				s.callSeqs[k] = seen
			}
			if seen[f.CallSeq] {
				s.stats.duplicates.Add(1)
				return f, false, nil
			}
			seen[f.CallSeq] = true
			if len(seen) > maxSignalsPerCall {
				// Bounded: a very long call forgets its oldest ones.
				for q := range seen {
					if q+maxSignalsPerCall < f.CallSeq {
						delete(seen, q)
					}
				}
			}
		}
		return f, true, nil
	case "msg", "member":
		t := s.groups[f.Group]
		if t == nil {
			return f, false, nil // unsubscribed: a straggler
		}
		if s.cfg.dropEvent != nil && s.cfg.dropEvent(f) {
			return f, false, nil
		}
		switch v := t.event(f.Seq); v {
		case deliverEvent, deliverRecovered:
			if v == deliverRecovered {
				s.stats.gapsRecovered.Add(1)
				s.log.Info("gap recovered", "group", f.Group, "seq", f.Seq)
			}
			return f, true, nil
		case dropDuplicate:
			s.stats.duplicates.Add(1)
			return f, false, nil
		case dropInGap:
			return f, false, nil
		case startResync:
			s.stats.gapsDetected.Add(1)
			s.log.Info("gap detected; resubscribing", "group", f.Group, "last", t.last, "got", f.Seq)
			return f, false, s.subscribeLocked(f.Group, t, false)
		}
	case "subscribed":
		if o, own := s.subReqs[f.ID]; own {
			delete(s.subReqs, f.ID)
			if o.queued {
				s.resubInflight--
				resub = s.nextResubscribesLocked()
			}
		}
		t := s.groups[f.Group]
		if t == nil {
			return f, false, resub
		}
		if t.subscribed(f) {
			s.stats.gapsUnrecoverable.Add(1)
			s.log.Warn("events lost: not recoverable", "group", f.Group, "seq", f.Seq)
			return f, true, resub
		}
		// A recovered subscribe is bookkeeping, not news; the app's own
		// Subscribe call got its frame as the return value.
		return f, false, resub
	case "error":
		o, own := s.subReqs[f.ID]
		if !own {
			return f, true, nil
		}
		delete(s.subReqs, f.ID)
		t := s.groups[o.group]
		if t != nil && retryable(f.Code) {
			// Ask again, in the same window slot; the edge's produce
			// timeout paces this.
			return f, false, s.subscribeLocked(o.group, t, o.queued)
		}
		if o.queued {
			s.resubInflight--
			resub = s.nextResubscribesLocked()
		}
		if t == nil {
			return f, false, resub
		}
		// not_member, forbidden...: the group cannot be subscribed any
		// more. Tell the app, with the group the error frame lacks.
		delete(s.groups, o.group)
		f.Group = o.group
		return f, true, resub
	}
	return f, true, nil
}

// verdict is what a timeline does with one event.
type verdict int

const (
	deliverEvent     verdict = iota
	deliverRecovered         // deliver; it closes a detected gap
	dropDuplicate
	dropInGap   // beyond a gap already being filled
	startResync // beyond a gap: subscribe again with since
)

// timeline is the Session's position in one subscribed group. Pure
// bookkeeping: no I/O, guarded by Session.mu.
type timeline struct {
	presence bool   // subscribed with member presence
	last     uint64 // seq of the last event delivered to the application
	known    bool   // last is a position (set by a subscribed frame or event)
	// rebase accepts the next event above last even if it is not last+1:
	// the server said what lies between is gone (recovered=false).
	rebase bool
	resync string // id of our subscribe in flight; "" if none
	gapAt  uint64 // the seq that revealed a gap being filled; 0 if none
}

// event classifies a timeline event and advances last when it is
// delivered.
func (t *timeline) event(seq uint64) verdict {
	switch {
	case !t.known || t.rebase && seq > t.last:
		t.last, t.known, t.rebase = seq, true, false
		t.gapAt = 0
		return deliverEvent
	case seq <= t.last:
		return dropDuplicate
	case seq == t.last+1:
		t.last = seq
		if t.gapAt != 0 && seq >= t.gapAt {
			t.gapAt = 0
			return deliverRecovered
		}
		return deliverEvent
	case t.resync != "":
		// Our subscribe with since=last is on its way; its replay
		// brings this event again, in order.
		return dropInGap
	default:
		if t.gapAt == 0 {
			t.gapAt = seq
		}
		return startResync
	}
}

// subscribed applies a `subscribed` frame and reports whether it tells of
// an unrecoverable gap, which the application must see.
func (t *timeline) subscribed(f Frame) (lost bool) {
	if f.ID != "" && f.ID == t.resync {
		t.resync = ""
	}
	if !t.known {
		// First subscribe, without since: live from f.Seq on.
		t.last, t.known = f.Seq, true
		return false
	}
	if f.Recovered {
		return false
	}
	if f.Seq < t.last {
		// The group has fewer events than we saw: another life of it.
		// Take whatever comes next.
		t.last = 0
	}
	t.rebase = true
	t.gapAt = 0
	return true
}

// rewatch asks again, on a new connection, for the presence of every user
// asked for before (a watch lives as long as its session). The answers are
// presence frames on Events; the request itself is not awaited by run,
// which must go on pumping.
func (s *Session) rewatch(ctx context.Context, c *Client) {
	s.mu.Lock()
	users := make([]string, 0, len(s.watched))
	for u := range s.watched {
		users = append(users, u)
	}
	s.mu.Unlock()
	for len(users) > 0 {
		n := min(len(users), maxPresenceUsers)
		batch := users[:n]
		users = users[n:]
		go func() {
			if err := c.Presence(ctx, batch...); err != nil {
				s.log.Info("presence request after reconnect failed", "err", err)
			}
		}()
	}
}

// maxPresenceUsers is the edge's limit per presence frame.
const maxPresenceUsers = 100

// Presence asks for the presence of users (a presence frame each on
// Events now and on every change), and again after every reconnect.
func (s *Session) Presence(ctx context.Context, users ...string) error {
	s.mu.Lock()
	if s.watched == nil {
		s.watched = make(map[string]struct{})
	}
	for _, u := range users {
		s.watched[u] = struct{}{}
	}
	s.mu.Unlock()
	for len(users) > 0 {
		n := min(len(users), maxPresenceUsers)
		batch := users[:n]
		users = users[n:]
		if err := s.do(ctx, func(c *Client) error { return c.Presence(ctx, batch...) }); err != nil {
			return err
		}
	}
	return nil
}

// Signal sends one signal on the current connection. It is not retried:
// a signal whose answer was lost with the connection may have been
// delivered, and a second offer would ring twice. An *Error with Reason
// "offline" means the callee has no live session.
func (s *Session) Signal(ctx context.Context, to, toSession, call, kind string, payload any) error {
	c, err := s.client(ctx)
	if err != nil {
		return err
	}
	return c.Signal(ctx, to, toSession, call, kind, payload)
}

// Typing says this user is typing in group (not retried: it is stale by
// the time a reconnect is done).
func (s *Session) Typing(ctx context.Context, group string) error {
	c, err := s.client(ctx)
	if err != nil {
		return err
	}
	return c.Typing(ctx, group)
}

// Read moves the read watermark (retried like Send: a watermark sent twice
// is harmless).
func (s *Session) Read(ctx context.Context, group string, seq uint64) error {
	return s.do(ctx, func(c *Client) error { return c.Read(ctx, group, seq) })
}

// maxSignalsPerCall bounds the call_seqs remembered per call and sender.
const maxSignalsPerCall = 4096
