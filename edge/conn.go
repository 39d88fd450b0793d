package edge

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/causeway/causeway/edge/wsock"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"github.com/coder/websocket"
	"golang.org/x/time/rate"
)

// conn is one client WebSocket. Goroutines: one runs serve (the reader: it
// owns subs and identity); the writer, started by wake while there is
// something to write, owns all writes of data frames; pings run from a
// timer.
// enqueue may be called from any goroutine (the delivery consumer, produce
// callbacks).
type conn struct {
	srv     *Server
	ws      *websocket.Conn
	raw     net.Conn    // under ws; set by the upgrade, before serve
	sock    *wsock.Conn // raw wrapped: data frames are written through it; set with raw
	session string
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc

	// Reader-owned.
	id   Identity
	auth bool
	subs map[string]struct{}
	bad  int
	// user is this user's entry in the server's table (shared buckets);
	// frames and bytes are this connection's buckets (nil: no limit).
	user          *userState
	frames, bytes *rate.Limiter
	// limitedN refusals by a limit since limitedAt was last a second
	// after the previous one.
	limitedN  int
	limitedAt time.Time
	// deadlines is the connection's one timer (issue 8: a timer costs an
	// idle connection about 200 B, and it had four). tick handles what is
	// due and rearm sets it to the earliest of: helloBy (unix nanos, 0
	// once the hello is accepted), the token's exp (a refresh moves it),
	// edge.idle_timeout after lastActive, and nextPing.
	deadlines  *time.Timer
	helloBy    atomic.Int64
	exp        atomic.Int64
	lastActive atomic.Int64
	nextPing   atomic.Int64
	rearmMu    sync.Mutex // the last rearm sees the latest deadlines
	// abusive is set by the reader before it closes the connection for
	// abuse; closeWith then does not wait for the close handshake.
	abusive atomic.Bool

	mu      sync.Mutex
	queue   [][]byte
	queued  int
	writing bool // the writer holds frames taken from queue
	// overSince is when the queue last went over its soft bound without
	// the writer draining it since; zero when under.
	overSince time.Time
	closed    bool
	// via: the groups whose requests this session writes to the user's
	// own stream (GroupEvent.forward_to), because a join or leave it sent
	// that way is not answered yet; the stream forwards in order, so a
	// subscribe or send pipelined behind a join cannot overtake it. Each
	// group lists its pending requests (protocol.go); push drops them as
	// their answers go by.
	via map[string][]pending
	// writerOn: a writer goroutine is running (it ends when idle).
	writerOn bool
	notify   chan struct{}
	// watchdog closes a connection whose write blocks past
	// edge.write_timeout (newWatchdog): a timer, not a goroutine, and only
	// while a writer runs (an idle connection has only its reader).
	watchdog *time.Timer // under mu; one writer at a time
	// writeSeq counts the writer's write starts and ends: odd while a
	// write is in progress.
	writeSeq atomic.Uint64

	closeOnce sync.Once
}

// enqueue queues one frame for the writer and wakes it. It never blocks: a
// client whose queue is full is disconnected instead of slowing the caller.
func (c *conn) enqueue(frame []byte) {
	if c.push(frame) {
		c.wake()
	}
}

// wake tells the writer there is something to write, starting it if it
// is not running.
func (c *conn) wake() {
	c.mu.Lock()
	start := !c.writerOn && !c.closed && c.ctx.Err() == nil
	if start {
		c.writerOn = true
	}
	c.mu.Unlock()
	if start {
		go c.writer()
		return
	}
	c.poke()
}

// push queues one frame without waking the writer, so a caller with many
// frames for many connections (the delivery consumer) wakes each writer
// once, after the whole batch, and each writes one coalesced message. It
// reports whether the frame was queued.
func (c *conn) push(frame []byte) bool {
	if len(frame) == 0 {
		return false
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	if len(c.via) > 0 {
		c.noteAnswerLocked(frame)
	}
	cfg := &c.srv.cfg
	if len(c.queue) >= cfg.QueueFrames || c.queued+len(frame) > cfg.QueueBytes {
		// Over the soft bound: a burst (a history replay) the client
		// drains is fine; a client that has not let the writer drain the
		// queue for SlowConsumerAfter, or that would pass the hard bound,
		// is cut off.
		now := time.Now()
		if c.overSince.IsZero() {
			c.overSince = now
		}
		if c.queued+len(frame) <= 2*cfg.QueueBytes && now.Sub(c.overSince) < cfg.SlowConsumerAfter {
			c.queue = append(c.queue, frame)
			c.queued += len(frame)
			c.mu.Unlock()
			return true
		}
		c.closed = true
		c.mu.Unlock()
		c.srv.m.slow.Inc()
		c.log.Info("closing slow consumer", "queued_frames", len(c.queue), "queued_bytes", c.queued)
		go c.closeWith(CloseSlowConsumer, "slow consumer: send queue full; reconnect and resubscribe with since")
		return false
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	c.mu.Unlock()
	return true
}

// closeWith closes the WebSocket with a code once; it may block for the
// close handshake, so goroutines other than the reader call it with go.
//
// The close frame is always written; the peer's answer is awaited for
// closeGrace, and not at all from a peer closed for abuse by the reader
// (abusive: bad frames, rate limits): the close handshake reads and
// discards whatever the peer still sends, one byte at a time, and a
// flooding client would keep the edge busy reading garbage for the
// library's 5 s.
func (c *conn) closeWith(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		c.srv.m.closes.WithLabelValues(strconv.Itoa(int(code))).Inc()
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		if c.raw != nil {
			grace := closeGrace
			if c.abusive.Load() {
				grace = 0
			}
			_ = c.raw.SetReadDeadline(time.Now().Add(grace))
		}
		if c.sock != nil {
			c.sock.SetClosing()
		}
		_ = c.ws.Close(code, reason)
		c.stop()
	})
}

// closeGrace is how long a closing connection waits for the peer's
// close frame.
const closeGrace = 2 * time.Second

// hijackTap is the ResponseWriter given to websocket.Accept: it keeps the
// hijacked net.Conn so closeWith can bound the close handshake.
type hijackTap struct {
	http.ResponseWriter
	c *conn
}

func (h hijackTap) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nc, brw, err
	}
	h.c.raw = nc
	sk := wsock.Wrap(nc)
	h.c.sock = sk
	// net/http's 4 KiB buffers would stay with the connection for its
	// life; an idle connection needs neither (issue 8: memory per idle
	// connection). Client frames are small, and longer ones bypass a
	// reader's buffer; one fan-out frame still fits the writer's, so it
	// goes out in one write. The response was flushed before the hijack;
	// what the client sent early is carried over.
	br := bufio.NewReaderSize(nc, hijackReadBuffer)
	if n := brw.Reader.Buffered(); n > 0 {
		// Buffered in the new reader too: Accept re-wraps the reader's
		// source and keeps only what is buffered.
		early, _ := brw.Reader.Peek(n)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), nc), max(n, hijackReadBuffer))
		if _, err := br.Peek(n); err != nil {
			return nil, nil, fmt.Errorf("carry over early client bytes: %w", err)
		}
	}
	return sk, bufio.NewReadWriter(br, bufio.NewWriterSize(sk, hijackWriteBuffer)), nil
}

// Buffer sizes of an upgraded connection (see hijackTap.Hijack).
const (
	hijackReadBuffer  = 512
	hijackWriteBuffer = 1 << 10
)

// flushThenClose lets the writer send what is queued (such as the error
// that explains the close), bounded by the write timeout, then closes.
func (c *conn) flushThenClose(code websocket.StatusCode, reason string) {
	deadline := time.Now().Add(c.srv.cfg.WriteTimeout)
	for time.Now().Before(deadline) && c.ctx.Err() == nil {
		c.mu.Lock()
		idle := len(c.queue) == 0 && !c.writing
		c.mu.Unlock()
		if idle && c.sock != nil && c.sock.HasPending() {
			c.wake() // the writer finishes the frame
			idle = false
		}
		if idle {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	c.closeWith(code, reason)
}

// writer coalesces everything queued into one NDJSON message per write.
// It runs only while there is something to write: wake starts it, and it
// ends after one to two writerLinger periods without frames, so an idle
// connection holds no writer goroutine, stack or buffers (issue 8: memory
// per idle connection). A connection with steady traffic keeps its writer.
func (c *conn) writer() {
	var buf []byte
	var spare [][]byte // the previous queue, reused so steady state allocates nothing
	// The writer waits on notify alone (a one-channel receive, not a
	// select with a timer reset per frame: issue 8, CPU per delivery).
	// The linger timer pokes notify every writerLinger; the writer ends
	// at a poke when it wrote nothing since the previous one.
	var linger *time.Timer
	var lingerDue atomic.Bool
	wrote := false
	defer func() {
		if linger != nil {
			linger.Stop()
		}
	}()
	c.mu.Lock()
	if c.watchdog == nil {
		c.watchdog = c.newWatchdog()
	}
	c.mu.Unlock()
	for {
		c.mu.Lock()
		if c.writing {
			// writeNow holds the connection; it wakes the writer if it
			// leaves something behind.
			c.mu.Unlock()
			<-c.notify
			continue
		}
		frames := c.queue
		c.queue = spare[:0]
		c.queued = 0
		c.overSince = time.Time{}
		c.writing = len(frames) > 0
		c.mu.Unlock()
		if len(frames) == 0 && c.sock != nil && c.sock.HasPending() {
			// The rest of a frame writeNow could not finish.
			c.writeSeq.Add(1)
			err := c.sock.FlushPending()
			c.writeSeq.Add(1)
			if err != nil {
				c.closeNow()
				c.writerDone()
				return
			}
			wrote = true
			continue
		}
		if len(frames) == 0 {
			spare = frames
			if c.ctx.Err() != nil {
				c.writerDone()
				return
			}
			if linger == nil {
				linger = time.AfterFunc(c.srv.writerLinger, func() {
					lingerDue.Store(true)
					c.poke()
				})
			}
			<-c.notify
			if !lingerDue.Swap(false) {
				continue
			}
			if wrote {
				wrote = false
				linger.Reset(c.srv.writerLinger)
				continue
			}
			// Ends only with the queue empty and no partial frame left by
			// writeNow, under mu: a frame pushed, or a partial write made,
			// after this sees writerOn false and starts a new writer.
			c.mu.Lock()
			if len(c.queue) == 0 && (c.sock == nil || !c.sock.HasPending()) {
				// The next writer makes its own watchdog: an idle
				// connection keeps no timer for writes. Under mu: the
				// next writer starts once writerOn is false.
				c.watchdog.Stop()
				c.watchdog = nil
				c.writerOn = false
				c.queue = nil // the next writer's frames get a fresh slice
				c.mu.Unlock()
				return
			}
			c.mu.Unlock()
			linger.Reset(c.srv.writerLinger)
			continue
		}
		c.writeSeq.Add(1) // odd: a write is in progress
		var err error
		if c.sock != nil {
			// Framed here, as writeNow does: the socket sees whole frames.
			buf = wsock.AppendTextFrame(buf[:0], frames)
			err = c.sock.WriteFrame(buf)
		} else {
			buf = buf[:0]
			for i, f := range frames {
				if i > 0 {
					buf = append(buf, '\n')
				}
				buf = append(buf, f...)
			}
			err = c.ws.Write(context.Background(), websocket.MessageText, buf)
		}
		c.writeSeq.Add(1)
		c.mu.Lock()
		c.writing = false
		c.mu.Unlock()
		if err != nil {
			// The reader waits in Read without a context (serve): closing
			// the WebSocket is what ends it.
			c.closeNow()
			c.writerDone()
			return
		}
		wrote = true
		c.srv.m.framesOut.Add(float64(len(frames)))
		clear(frames) // drop references to shared frames
		spare = frames[:0]
		// Do not pin large buffers to a connection.
		if cap(buf) > 64<<10 {
			buf = nil
		}
		if cap(spare) > 1024 {
			spare = nil
		}
	}
}

// writeNow writes what is queued from the caller's goroutine, as one
// message, if the socket takes it without waiting (wsock TryWrite). It
// reports whether it is done with the connection; if not, the caller
// wakes the writer (a full socket, a write in progress, TLS, or the rest
// of a frame to finish). scratch is the caller's buffer, returned grown.
//
// The frames stay in the queue while they are written (writing keeps the
// writer off them; push only appends after them) and leave it only once
// written: the queue's slices stay the writer's to swap, and a write that
// did not happen leaves the queue, its bytes and its time over the bound
// as they were, for the slow-consumer policy.
func (c *conn) writeNow(scratch []byte) ([]byte, bool) {
	if c.sock == nil || !c.sock.CanTry() {
		return scratch, false
	}
	c.mu.Lock()
	if c.writing || c.closed || len(c.queue) == 0 {
		c.mu.Unlock()
		return scratch, false
	}
	frames := c.queue[:len(c.queue):len(c.queue)]
	c.writing = true
	c.mu.Unlock()

	scratch = wsock.AppendTextFrame(scratch[:0], frames)
	complete, err := c.sock.TryWrite(scratch)
	c.mu.Lock()
	c.writing = false
	switch {
	case errors.Is(err, wsock.ErrWouldBlock):
		c.mu.Unlock()
		return scratch, false
	case err != nil:
		c.mu.Unlock()
		c.closeNow()
		return scratch, true
	}
	n := len(frames)
	for _, f := range frames {
		c.queued -= len(f)
	}
	m := copy(c.queue, c.queue[n:])
	clear(c.queue[m:])
	c.queue = c.queue[:m]
	c.overSince = time.Time{}
	c.mu.Unlock()
	c.srv.m.framesOut.Add(float64(n))
	return scratch, complete && m == 0
}

// newWatchdog closes the connection when one write blocks for
// edge.write_timeout (at most 1.5 times that): a client that stopped
// reading is a slow consumer as much as one whose queue overflowed. It
// costs a write two atomic adds, not a timer reset and stop (issue 8: CPU
// per delivery), and no context per write (an expired write closes the
// connection either way). It checks writeSeq every half write_timeout and
// condemns a write it sees in progress at three checks in a row: it has
// blocked for at least two periods.
func (c *conn) newWatchdog() *time.Timer {
	period := max(c.srv.cfg.WriteTimeout/2, time.Millisecond)
	var last uint64
	seen := 0
	var t *time.Timer
	t = stoppedTimer(func() {
		// One callback at a time: the next runs a period after this
		// Reset, the last thing it does.
		cur := c.writeSeq.Load()
		switch {
		case cur%2 == 0:
			seen = 0
		case cur == last:
			seen++
		default:
			seen = 1
		}
		last = cur
		if seen >= 3 {
			c.srv.m.slow.Inc()
			c.log.Info("closing slow consumer", "reason", "write timeout")
			_ = c.ws.CloseNow()
			c.stop()
			return
		}
		c.mu.Lock()
		if c.watchdog == t { // not yet stopped by the writer's end
			t.Reset(period)
		}
		c.mu.Unlock()
	})
	t.Reset(period)
	return t
}

// poke wakes the writer if one waits; a poke already pending is enough.
func (c *conn) poke() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// stop cancels the connection's context and wakes its writer, which
// waits on notify alone and ends when it sees the context done.
func (c *conn) stop() {
	c.cancel()
	c.poke()
}

// writerLinger is the period at which an idle writer checks whether it
// wrote anything since the last check; a connection getting a frame more
// often keeps its writer.
const writerLinger = 2 * time.Second

// writerDone records that the writer ended with the connection.
func (c *conn) writerDone() {
	c.mu.Lock()
	c.writerOn = false
	if c.watchdog != nil {
		c.watchdog.Stop()
		c.watchdog = nil
	}
	c.mu.Unlock()
}

// tick runs on the deadlines timer: it closes a connection whose hello,
// token or idle time is up, and pings the client every
// edge.ping_interval (no pong within edge.pong_timeout closes it).
func (c *conn) tick() {
	if c.ctx.Err() != nil {
		return
	}
	cfg := &c.srv.cfg
	now := time.Now()
	if by := c.helloBy.Load(); by != 0 && now.UnixNano() >= by {
		c.closeWith(CloseUnauthorized, "no hello within "+cfg.HelloTimeout.String())
		return
	}
	if exp := c.exp.Load(); exp != 0 && now.UnixNano() >= exp {
		c.log.Info("token expired; closing")
		c.sendError("", CodeUnauthorized, "token expired: send refresh with a new token before exp")
		c.flushThenClose(CloseUnauthorized, "token expired")
		return
	}
	if limit := cfg.IdleTimeout; limit > 0 {
		if quiet := now.Sub(time.Unix(0, c.lastActive.Load())); quiet >= limit {
			c.log.Info("closing idle connection", "idle", quiet.Round(time.Second))
			c.closeWith(ClosePolicy, "idle: nothing received for "+limit.String()+"; send ping frames")
			return
		}
	}
	ping := now.UnixNano() >= c.nextPing.Load()
	if ping {
		c.nextPing.Store(now.Add(cfg.PingInterval).UnixNano())
	}
	c.rearm()
	if ping {
		// After rearm: waiting for the pong delays no other deadline.
		c.ping()
	}
}

// rearm sets the deadlines timer to the earliest deadline.
func (c *conn) rearm() {
	c.rearmMu.Lock()
	defer c.rearmMu.Unlock()
	if c.ctx.Err() != nil {
		return
	}
	next := c.nextPing.Load()
	idleAt := int64(0)
	if limit := c.srv.cfg.IdleTimeout; limit > 0 {
		idleAt = c.lastActive.Load() + int64(limit)
	}
	for _, d := range [...]int64{c.helloBy.Load(), c.exp.Load(), idleAt} {
		if d != 0 && d < next {
			next = d
		}
	}
	c.deadlines.Reset(time.Until(time.Unix(0, next)))
}

func (c *conn) ping() {
	// Not derived from c.ctx: a child would leave c.ctx a children map
	// for the connection's life (issue 8); closing the connection ends
	// the ping anyway.
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.cfg.PongTimeout)
	defer cancel()
	if err := c.ws.Ping(ctx); err != nil && c.ctx.Err() == nil {
		c.log.Info("closing connection: no pong", "err", err)
		c.closeNow()
	}
}

// closeNow drops the connection without a close handshake: a peer that
// does not answer pings would not answer the close frame either, and
// waiting for it keeps a dead socket for the handshake timeout.
func (c *conn) closeNow() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		_ = c.ws.CloseNow()
		c.stop()
	})
}

func (c *conn) sendError(id, code, msg string) {
	c.sendErrorReason(id, code, msg, "")
}

func (c *conn) sendErrorReason(id, code, msg, reason string) {
	c.srv.m.errors.WithLabelValues(code).Inc()
	c.enqueue(encodeErrorReason(id, code, msg, reason))
}

// touch records that something came from the client.
func (c *conn) touch() { c.lastActive.Store(time.Now().UnixNano()) }

// stoppedTimer returns a timer that runs f once armed with Reset: the
// field holding it is set before it can fire.
func stoppedTimer(f func()) *time.Timer {
	t := time.AfterFunc(time.Hour, f)
	t.Stop()
	return t
}

// limited answers a frame (or, with line nil, a message) refused by a
// limit, and closes the connection with 4408 when refusals persist:
// MaxRateLimited of them without a second free of refusals. It reports
// whether the connection goes on.
func (c *conn) limited(line []byte, limit string) bool {
	cfg := &c.srv.cfg
	c.srv.m.limited.WithLabelValues(limit).Inc()
	now := time.Now()
	if now.Sub(c.limitedAt) > time.Second {
		c.limitedN = 0
	}
	c.limitedAt = now
	c.limitedN++
	var id string
	if line != nil && len(line) <= cfg.MaxFrameBytes {
		id = salvageID(line)
	}
	c.sendErrorReason(id, CodeRateLimited, "over the "+strings.ReplaceAll(limit, "_", " ")+" rate limit: slow down", limit)
	if cfg.MaxRateLimited > 0 && c.limitedN >= cfg.MaxRateLimited {
		c.log.Info("closing: over a rate limit persistently", "limit", limit, "id", id)
		c.abusive.Store(true)
		c.flushThenClose(ClosePolicy, "rate limit: back off")
		return false
	}
	return true
}

// serve is the reader loop; it returns when the connection ends.
func (c *conn) serve() {
	cfg := &c.srv.cfg
	c.ws.SetReadLimit(int64(cfg.MaxMessageBytes))
	now := time.Now()
	c.helloBy.Store(now.Add(cfg.HelloTimeout).UnixNano())
	c.nextPing.Store(now.Add(cfg.PingInterval).UnixNano())
	c.deadlines = stoppedTimer(c.tick)
	c.rearm()
	defer c.deadlines.Stop()
	handled := make(chan bool, 1)
	for {
		// No context: every path that ends the connection closes the
		// WebSocket, which ends the Read, and a cancellable context
		// would cost each idle connection an AfterFunc registration and
		// c.ctx a children map (issue 8).
		_, msg, err := c.ws.Read(context.Background())
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusMessageTooBig || strings.Contains(err.Error(), "read limited") {
				c.srv.m.errors.WithLabelValues(CodeTooLarge).Inc()
			}
			return
		}
		c.touch()
		// Messages are handled on a short-lived goroutine, the reader
		// waiting: token checks, JSON and the produce path grow a stack to
		// several KiB, and the reader's own, blocked in Read for the idle
		// life of the connection, stays small (issue 8: memory per idle
		// connection). The goroutine is the reader for that time.
		go func() { handled <- c.message(msg) }()
		if !<-handled {
			return
		}
	}
}

// message applies the limits to one WebSocket message and handles its
// frames; false ends the connection.
func (c *conn) message(msg []byte) bool {
	// Limits are checked before any parsing: an abusive client costs
	// a token-bucket check per message and per frame.
	now := time.Now()
	if !allow(c.bytes, now, len(msg)) {
		return c.limited(nil, limitConnBytes)
	}
	if c.user != nil && !allow(c.user.bytes, now, len(msg)) {
		return c.limited(nil, limitUserBytes)
	}
	for len(msg) > 0 {
		line := msg
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line, msg = msg[:i], msg[i+1:]
		} else {
			msg = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		ok := true
		switch {
		case !allow(c.frames, now, 1):
			ok = c.limited(line, limitConnFrames)
		case c.user != nil && !allow(c.user.frames, now, 1):
			ok = c.limited(line, limitUserFrames)
		default:
			ok = c.handle(line)
		}
		if !ok {
			return false
		}
	}
	return true
}

// handle processes one frame; false ends the connection.
func (c *conn) handle(line []byte) bool {
	cfg := &c.srv.cfg
	if len(line) > cfg.MaxFrameBytes {
		c.sendError(salvageID(line), CodeTooLarge, "frame larger than the limit")
		return c.strike()
	}
	f, ferr := DecodeClientFrame(line)
	if ferr != nil {
		c.srv.m.frameIn("invalid")
		if !c.auth {
			c.sendError(f.ID, CodeUnauthorized, "the first frame must be a valid hello: "+ferr.Message)
			c.flushThenClose(CloseUnauthorized, "hello required")
			return false
		}
		c.sendError(f.ID, ferr.Code, ferr.Message)
		return c.strike()
	}
	c.srv.m.frameIn(f.Type)
	if !c.auth {
		if f.Type != "hello" {
			c.sendError(f.ID, CodeUnauthorized, "the first frame must be hello")
			c.flushThenClose(CloseUnauthorized, "hello required")
			return false
		}
		id, err := c.srv.verify(f.Token)
		if err != nil {
			c.sendError(f.ID, CodeUnauthorized, "invalid token")
			// The error names the check that failed, never the token.
			c.log.Info("hello refused", "id", f.ID, "err", err)
			c.flushThenClose(CloseUnauthorized, "invalid token")
			return false
		}
		u, ok := c.srv.users.acquire(id.User, cfg.MaxSessionsPerUser, c.srv.newUserState)
		if !ok {
			c.srv.m.limited.WithLabelValues(limitSessions).Inc()
			c.sendErrorReason(f.ID, CodeRateLimited, "too many sessions of this user on this edge", limitSessions)
			c.log.Info("hello refused: too many sessions", "id", f.ID, "user", id.User)
			c.flushThenClose(ClosePolicy, "too many sessions")
			return false
		}
		c.id, c.auth, c.user = id, true, u
		c.exp.Store(id.Expires.UnixNano())
		c.helloBy.Store(0)
		c.rearm()
		c.log = c.log.With("user", id.User)
		c.srv.register(c)
		c.enqueue(marshalFrame(welcomeFrame{Type: "welcome", ID: f.ID, User: id.User, Session: c.session, Edge: cfg.ID}))
		// The session joins its user's personal stream: that is how
		// signals find it and what presence counts.
		own := personalStream(id.User)
		c.subs[own] = struct{}{}
		_ = c.srv.produceEvent(c.ctx, own, c.session, id.User, "", &pb.GroupEvent{Kind: &pb.GroupEvent_Attach{Attach: &pb.Attach{Resume: f.Resume}}}, func(err error) {
			c.log.Warn("attach to the personal stream failed; closing so the client retries", "id", f.ID, "err", err)
			go c.closeWith(CloseGoingAway, "going_away: could not register the session; reconnect")
		})
		return true
	}
	c.bad = 0
	switch f.Type {
	case "hello":
		c.sendError(f.ID, CodeBadRequest, "already authenticated; use refresh for a new token")
	case "refresh":
		id, err := c.srv.verify(f.Token)
		if err == nil && id.User != c.id.User {
			c.srv.m.authFailures.WithLabelValues(authOtherUser).Inc()
			err = errors.New("the token is for user " + id.User)
		}
		if err != nil {
			// The session goes on under its current token until it
			// expires; the client may try another.
			c.log.Info("refresh refused", "id", f.ID, "err", err)
			c.sendError(f.ID, CodeUnauthorized, "refresh refused: invalid token, or one for another user; the session still ends at the current token's exp")
			return c.strike()
		}
		// New group patterns govern later joins; exp moves (either way).
		c.id.Groups, c.id.Expires = id.Groups, id.Expires
		c.exp.Store(id.Expires.UnixNano())
		c.rearm()
		c.enqueue(marshalFrame(ackFrame{Type: "ack", ID: f.ID}))
	case "ping":
		// Answered here, without Kafka: a liveness probe for clients
		// (browsers) that cannot see WebSocket pings.
		c.enqueue(marshalFrame(ackFrame{Type: "ack", ID: f.ID}))
	case "signal":
		payload, err := compactDecoded(f.Payload)
		if len(f.Payload) > 0 && err != nil {
			c.sendError(f.ID, CodeBadRequest, "payload is not valid JSON")
			return c.strike()
		}
		sig := &pb.Signal{ToSession: f.ToSession, Call: f.Call, Kind: f.Kind, Payload: payload, TtlMs: cfg.SignalTTL.Milliseconds()}
		to := f
		to.Group = personalStream(f.To)
		if cfg.checksReach() {
			// Through the sender's own stream, which attaches the sender's
			// groups for the callee's stream to check (reach).
			to.Group, sig.To = personalStream(c.id.User), f.To
		}
		c.produce(&to, &pb.GroupEvent{Kind: &pb.GroupEvent_Signal{Signal: sig}})
		if f.Kind == "answer" {
			// The user's other sessions stop ringing.
			own := personalStream(c.id.User)
			_ = c.srv.produceEvent(c.ctx, own, c.session, c.id.User, "", &pb.GroupEvent{Kind: &pb.GroupEvent_Signal{Signal: &pb.Signal{
				Call: f.Call, Kind: "answered_elsewhere", TtlMs: sig.TtlMs}}}, func(err error) {
				c.log.Warn("answered_elsewhere not written", "id", f.ID, "err", err)
			})
		}
	case "presence":
		added := 0
		for _, u := range f.Users {
			if _, ok := c.subs[personalStream(u)]; !ok {
				added++
			}
		}
		if !c.maySubscribe(f.ID, added) {
			return true
		}
		// The ack goes first: a refusal (reach) echoes the request's id
		// and may come back before a later ack would be queued.
		c.enqueue(marshalFrame(ackFrame{Type: "ack", ID: f.ID}))
		for _, u := range f.Users {
			g := personalStream(u)
			c.subs[g] = struct{}{}
			w := f
			w.Group, w.ID = g, ""
			pw := &pb.PresenceWatch{}
			if cfg.checksReach() {
				// Through the watcher's own stream (reach); the ID comes
				// back only with a refusal, which names the user.
				w.Group, w.ID, pw.To = personalStream(c.id.User), f.ID, u
			}
			c.produce(&w, &pb.GroupEvent{Kind: &pb.GroupEvent_PresenceWatch{PresenceWatch: pw}})
		}
		// Each user's state follows as a presence frame from its stream.
	case "typing":
		c.produceGroup(&f, &pb.GroupEvent{Kind: &pb.GroupEvent_Typing{Typing: &pb.Typing{}}})
	case "read":
		c.produceGroup(&f, &pb.GroupEvent{Kind: &pb.GroupEvent_Read{Read: &pb.Read{Seq: *f.Seq}}})
	case "join":
		if strings.HasPrefix(f.Group, "u:") {
			c.sendError(f.ID, CodeForbidden, "groups starting with u: are personal streams")
			return true
		}
		if !c.id.MayJoin(f.Group) {
			c.sendError(f.ID, CodeForbidden, "the token does not allow joining "+f.Group)
			return true
		}
		// Joins and leaves go through the user's own stream, which counts
		// the user's groups (sequencer.max_groups_per_user) and keeps the
		// index reach is checked against, then on to the group.
		c.awaitAnswer(f.Group, f.ID)
		via := f
		via.Group = personalStream(c.id.User)
		c.produce(&via, &pb.GroupEvent{Kind: &pb.GroupEvent_Join{Join: &pb.Join{Group: f.Group}}})
	case "leave":
		if strings.HasPrefix(f.Group, "u:") {
			c.sendError(f.ID, CodeForbidden, "groups starting with u: are personal streams")
			return true
		}
		c.awaitAnswer(f.Group, f.ID)
		via := f
		via.Group = personalStream(c.id.User)
		c.produce(&via, &pb.GroupEvent{Kind: &pb.GroupEvent_Leave{Leave: &pb.Leave{Group: f.Group}}})
	case "subscribe":
		if strings.HasPrefix(f.Group, "u:") {
			c.sendError(f.ID, CodeForbidden, "personal streams are not subscribed to; use presence and signal")
			return true
		}
		if _, ok := c.subs[f.Group]; !ok && !c.maySubscribe(f.ID, 1) {
			return true
		}
		a := &pb.Attach{Presence: f.Presence}
		if f.Since != nil {
			a.Since, a.HasSince = *f.Since, true
		}
		c.subs[f.Group] = struct{}{}
		c.produceGroup(&f, &pb.GroupEvent{Kind: &pb.GroupEvent_Attach{Attach: a}})
	case "unsubscribe":
		delete(c.subs, f.Group)
		c.produceGroup(&f, &pb.GroupEvent{Kind: &pb.GroupEvent_Detach{Detach: &pb.Detach{}}})
	case "send":
		body, err := compactDecoded(f.Body)
		if err != nil {
			c.sendError(f.ID, CodeBadRequest, "body is not valid JSON")
			return c.strike()
		}
		if max := cfg.MaxBodyBytes; max > 0 && len(body) > max {
			// Well-formed, only too big: answered, not a strike.
			c.srv.m.limited.WithLabelValues(limitBody).Inc()
			c.sendErrorReason(f.ID, CodeTooLarge, "message body larger than edge.max_body_bytes ("+strconv.Itoa(max)+" bytes, compact JSON)", limitBody)
			return true
		}
		c.produceGroup(&f, &pb.GroupEvent{Kind: &pb.GroupEvent_Send{Send: &pb.Send{ClientMsgId: f.ClientMsgID, Body: body}}})
	default:
		c.sendError(f.ID, CodeBadRequest, "frame type "+f.Type+" is not supported by this edge yet")
	}
	return true
}

// maySubscribe reports whether the session may take n more
// subscriptions (groups and watched users), and answers rate_limited when
// not; the connection goes on.
func (c *conn) maySubscribe(id string, n int) bool {
	max := c.srv.cfg.MaxSubscriptions
	if max <= 0 || len(c.subs)+n <= max {
		return true
	}
	c.srv.m.limited.WithLabelValues(limitSubscriptions).Inc()
	c.sendErrorReason(id, CodeRateLimited, "too many subscriptions on this session (edge.max_subscriptions); unsubscribe first", limitSubscriptions)
	return false
}

// strike counts a bad frame; too many in a row close the connection.
func (c *conn) strike() bool {
	c.bad++
	if c.bad >= c.srv.cfg.MaxBadFrames {
		c.abusive.Store(true)
		c.flushThenClose(CloseProtocol, "too many bad frames")
		return false
	}
	return true
}

// produce writes a request into the group log. The answer comes back
// through the sequencer; only a failed produce is answered here.
func (c *conn) produce(f *ClientFrame, ev *pb.GroupEvent) {
	id := f.ID
	err := c.srv.produceEvent(c.ctx, f.Group, c.session, c.id.User, id, ev, func(err error) {
		c.sendError(id, CodeUnavailable, "could not write to the log; retry")
		c.log.Warn("produce failed", "id", id, "group", f.Group, "err", err)
	})
	if err != nil {
		c.sendError(id, CodeInternal, "could not encode the request")
	}
}

// detachAll tells the sequencer this session is gone.
func (c *conn) detachAll() {
	for g := range c.subs {
		ev := &pb.GroupEvent{Kind: &pb.GroupEvent_Detach{Detach: &pb.Detach{}}}
		key := g
		own := personalStream(c.id.User)
		if c.routedVia(g) || g != own && strings.HasPrefix(g, "u:") && c.srv.cfg.checksReach() {
			// Behind what it undoes, which may still be on its way through
			// the user's stream: a subscribe sent behind a join, or a
			// presence watch (reach).
			key, ev.ForwardTo = own, g
		}
		_ = c.srv.produceEvent(context.Background(), key, c.session, c.id.User, "", ev, func(error) {})
	}
}

func personalStream(user string) string { return "u:" + user }
