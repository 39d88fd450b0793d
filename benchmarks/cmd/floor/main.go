// Command floor is the benchmarks' floor server (issue 8): the least a
// WebSocket broadcast server has to do on this machine, so that every
// Causeway figure can be given as a ratio to it, measured in the same run.
//
// It speaks the subset of the causeway.v1 protocol (docs/PROTOCOL.md) that
// the load generators use, with the same library (github.com/coder/websocket),
// the same subprotocol and the same NDJSON frames, so the same generator
// drives it unchanged:
//
//   - hello -> welcome (the token's `sub` is taken as the user, unverified:
//     the floor trusts its clients);
//   - join -> ack (no membership, no member event);
//   - subscribe -> subscribed (seq = the group's latest seq) + ack;
//     unsubscribe -> ack. The floor keeps no history: `recovered` is true
//     unless the subscribe carries a `since` other than the group's latest
//     seq (after a restart the floor's seqs start again from 0, and a
//     resubscribing client.Session must be told that what it missed is
//     gone, or it would drop the new, lower seqs as duplicates);
//   - send -> the msg frame, encoded once and queued to every subscriber
//     of the group, then ack with the seq. Seqs are dense per group, so the
//     generator's order checks hold;
//   - signal -> the signal frame (from, from_session, call, call_seq,
//     kind, payload), encoded once and queued to every session of `to`, or
//     to the one session `to_session` names, then ack; error unavailable
//     (reason offline) when no such session is connected. call_seq counts
//     the call's signals from the sending session (1, 2, 3...). This is
//     what benchmarks/cmd/callsetup's call scenario needs (signal.go);
//   - read, typing, ping, join, leave -> ack (nothing else);
//   - anything else -> error bad_request.
//
// What it does not do: Kafka, durability, history, dedup, auth, reach
// checks (any user may signal any other: the floor trusts its clients),
// signal TTLs and buffering for late or resumed sessions,
// answered_elsewhere, presence, receipts, pings to clients. Each connection has one reader (the handler
// goroutine) and one writer goroutine that coalesces every queued frame
// into one WebSocket message and one write, as the edge does; a connection
// whose queue passes -queue-frames is closed with 4409 (slow consumer).
//
// It prints "floor: ws://HOST:PORT/v1/ws" once listening and serves
// /healthz, /readyz, /metrics (floor_* counters, go_goroutines) and
// /debug/gc (runs a GC, returns memory to the OS, answers runtime figures
// as JSON) on the same port. SIGINT/SIGTERM stop it.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/causeway/causeway/edge/wsock"
	"github.com/coder/websocket"
)

const subprotocol = "causeway.v1"

var (
	addr        = flag.String("addr", "127.0.0.1:0", "listen address")
	id          = flag.String("id", "floor", "this server's name in welcome's \"edge\" (a recovery floor runs two)")
	queueFrames = flag.Int("queue-frames", 4096, "frames queued for one connection before it is closed as a slow consumer (4409)")
	readLimit   = flag.Int64("read-limit", 256<<10, "largest WebSocket message accepted")
)

type server struct {
	mu     sync.Mutex
	groups map[string]*group

	conns      atomic.Int64
	framesOut  atomic.Int64
	writes     atomic.Int64
	framesIn   atomic.Int64
	msgs       atomic.Int64
	slow       atomic.Int64
	sessionSeq atomic.Uint64
	signals    atomic.Int64
	offline    atomic.Int64

	// users indexes the live sessions of every user, for signals.
	umu   sync.Mutex
	users map[string][]*conn
}

// group is a broadcast list with a dense seq. The seq is assigned and the
// frame queued to every subscriber under mu, so each subscriber sees the
// group's frames in seq order.
type group struct {
	id   string
	mu   sync.Mutex
	seq  uint64
	subs []*conn
}

type conn struct {
	srv     *server
	ws      *websocket.Conn
	user    string
	session string
	ctx     context.Context
	cancel  context.CancelFunc
	groups  map[*group]struct{} // reader-owned
	// callSeqs counts this session's signals per call (reader-owned).
	callSeqs map[string]uint64

	// sock is the connection under ws: data frames are written through
	// it, framed here (wsock), as the edge writes them.
	sock *wsock.Conn

	mu     sync.Mutex
	queue  [][]byte
	closed bool
	notify chan struct{}
	once   sync.Once
}

func main() {
	flag.Parse()
	s := newServer()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	hs := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	fmt.Printf("floor: ws://%s/v1/ws\n", ln.Addr())
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func newServer() *server {
	return &server{groups: map[string]*group{}, users: map[string][]*conn{}}
}

// handler serves the WebSocket endpoint and the HTTP endpoints.
func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ws", s.serveWS)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ready\n")) })
	mux.HandleFunc("GET /metrics", s.metrics)
	mux.HandleFunc("/debug/gc", gcHandler)
	return mux
}

func (s *server) serveWS(w http.ResponseWriter, r *http.Request) {
	tap := &wsock.Tap{ResponseWriter: w}
	ws, err := websocket.Accept(tap, r, &websocket.AcceptOptions{Subprotocols: []string{subprotocol}, InsecureSkipVerify: true})
	if err != nil {
		return
	}
	if ws.Subprotocol() != subprotocol {
		_ = ws.Close(websocket.StatusProtocolError, "subprotocol "+subprotocol+" required")
		return
	}
	ws.SetReadLimit(*readLimit)
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{srv: s, ws: ws, sock: tap.Conn, ctx: ctx, cancel: cancel, groups: map[*group]struct{}{}, notify: make(chan struct{}, 1),
		session: "f" + strconv.FormatUint(s.sessionSeq.Add(1), 36)}
	s.conns.Add(1)
	defer func() {
		cancel()
		for g := range c.groups {
			g.remove(c)
		}
		if c.user != "" {
			s.removeUser(c)
		}
		_ = ws.CloseNow()
		s.conns.Add(-1)
	}()
	go c.writer()
	c.serve()
}

// frame is the union of the client frames the floor reads.
type frame struct {
	Type        string          `json:"type"`
	ID          string          `json:"id"`
	Token       string          `json:"token"`
	Group       string          `json:"group"`
	ClientMsgID string          `json:"client_msg_id"`
	Body        json.RawMessage `json:"body"`
	Since       *uint64         `json:"since"`
	// signal
	To        string          `json:"to"`
	ToSession string          `json:"to_session"`
	Call      string          `json:"call"`
	Kind      string          `json:"kind"`
	Payload   json.RawMessage `json:"payload"`
}

func (c *conn) serve() {
	for {
		_, msg, err := c.ws.Read(c.ctx)
		if err != nil {
			return
		}
		for len(msg) > 0 {
			line := msg
			if i := bytes.IndexByte(msg, '\n'); i >= 0 {
				line, msg = msg[:i], msg[i+1:]
			} else {
				msg = nil
			}
			if line = bytes.TrimSpace(line); len(line) == 0 {
				continue
			}
			c.srv.framesIn.Add(1)
			if !c.handle(line) {
				return
			}
		}
	}
}

func (c *conn) handle(line []byte) bool {
	var f frame
	if err := json.Unmarshal(line, &f); err != nil {
		c.enqueue(errorFrame("", "bad_request", "malformed frame"))
		return true
	}
	if c.user == "" {
		if f.Type != "hello" {
			c.enqueue(errorFrame(f.ID, "unauthorized", "the first frame must be hello"))
			return true
		}
		user, ok := tokenSubject(f.Token)
		if !ok {
			c.enqueue(errorFrame(f.ID, "unauthorized", "invalid token"))
			return true
		}
		c.user = user
		c.srv.addUser(c)
		b := appendStrField([]byte(`{"type":"welcome"`), "id", f.ID)
		b = appendStrField(b, "user", user)
		b = appendStrField(b, "session", c.session)
		b = appendStrField(b, "edge", *id)
		c.enqueue(append(b, '}'))
		return true
	}
	switch f.Type {
	case "join", "read", "typing", "ping", "leave":
		c.enqueue(ack(f.ID, f.Group, 0))
	case "subscribe":
		if f.Group == "" {
			c.enqueue(errorFrame(f.ID, "bad_request", "group required"))
			return true
		}
		g := c.srv.group(f.Group)
		if _, ok := c.groups[g]; ok {
			c.enqueue(errorFrame(f.ID, "bad_request", "already subscribed"))
			return true
		}
		c.groups[g] = struct{}{}
		g.mu.Lock()
		g.subs = append(g.subs, c)
		b := appendStrField([]byte(`{"type":"subscribed"`), "id", f.ID)
		b = appendStrField(b, "group", g.id)
		b = strconv.AppendUint(append(b, `,"seq":`...), g.seq, 10)
		// No history: only a client that missed nothing is recovered.
		b = strconv.AppendBool(append(b, `,"recovered":`...), f.Since == nil || *f.Since == g.seq)
		b = append(b, '}')
		c.enqueue(b) // under the group's lock: before any later msg
		g.mu.Unlock()
		c.enqueue(ack(f.ID, "", 0))
	case "unsubscribe":
		g := c.srv.group(f.Group)
		delete(c.groups, g)
		g.remove(c)
		c.enqueue(ack(f.ID, f.Group, 0))
	case "send":
		if f.Group == "" || len(f.Body) == 0 {
			c.enqueue(errorFrame(f.ID, "bad_request", "group and body required"))
			return true
		}
		seq := c.srv.group(f.Group).publish(c.user, f.ClientMsgID, f.Body)
		c.srv.msgs.Add(1)
		c.enqueue(ack(f.ID, f.Group, seq))
	case "signal":
		c.signal(&f)
	default:
		c.enqueue(errorFrame(f.ID, "bad_request", "frame type "+f.Type+" is not supported by the floor"))
	}
	return true
}

func (s *server) group(id string) *group {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[id]
	if g == nil {
		g = &group{id: id}
		s.groups[id] = g
	}
	return g
}

// publish encodes the msg frame once and queues the same bytes to every
// subscriber, then wakes their writers.
func (g *group) publish(from, clientMsgID string, body []byte) uint64 {
	g.mu.Lock()
	g.seq++
	seq := g.seq
	b := make([]byte, 0, 128+len(g.id)+len(from)+len(clientMsgID)+len(body))
	b = append(b, `{"type":"msg"`...)
	b = appendStrField(b, "group", g.id)
	b = strconv.AppendUint(append(b, `,"seq":`...), seq, 10)
	b = appendStrField(b, "from", from)
	b = appendStrField(b, "client_msg_id", clientMsgID)
	b = strconv.AppendInt(append(b, `,"ts":`...), time.Now().UnixMilli(), 10)
	b = append(append(append(b, `,"body":`...), body...), '}')
	for _, c := range g.subs {
		c.enqueue(b)
	}
	g.mu.Unlock()
	return seq
}

func (g *group) remove(c *conn) {
	g.mu.Lock()
	for i, x := range g.subs {
		if x == c {
			last := len(g.subs) - 1
			g.subs[i] = g.subs[last]
			g.subs[last] = nil
			g.subs = g.subs[:last]
			break
		}
	}
	g.mu.Unlock()
}

// enqueue queues one frame and wakes the writer; it never blocks. The
// writer coalesces what queued meanwhile into one message: under load a
// connection gets fewer, larger writes (writing each frame at once from
// the publisher, as the edge's consumer writes a fetch's fan-out, made
// this floor saturate at 150,000 deliveries/s instead of holding past
// 1,000,000: the floor has no batches of its own to write).
func (c *conn) enqueue(b []byte) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if len(c.queue) >= *queueFrames {
		c.closed = true
		c.mu.Unlock()
		c.srv.slow.Add(1)
		go c.once.Do(func() { c.sock.SetClosing(); _ = c.ws.Close(4409, "slow consumer"); c.cancel() })
		return
	}
	c.queue = append(c.queue, b)
	c.mu.Unlock()
	c.wake()
}

func (c *conn) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// writer writes everything queued as one NDJSON message per wake-up.
func (c *conn) writer() {
	var buf []byte
	var spare [][]byte
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.notify:
		}
		c.mu.Lock()
		frames := c.queue
		c.queue = spare[:0]
		c.mu.Unlock()
		if len(frames) == 0 {
			spare = frames
			continue
		}
		// Framed here and written whole (wsock), as the edge writes.
		buf = wsock.AppendTextFrame(buf[:0], frames)
		if err := c.sock.WriteFrame(buf); err != nil {
			c.cancel()
			return
		}
		c.srv.framesOut.Add(int64(len(frames)))
		c.srv.writes.Add(1)
		clear(frames)
		spare = frames[:0]
		if cap(buf) > 64<<10 {
			buf = nil
		}
		if cap(spare) > 1024 {
			spare = nil
		}
	}
}

func ack(id, group string, seq uint64) []byte {
	b := appendStrField([]byte(`{"type":"ack"`), "id", id)
	if group != "" {
		b = appendStrField(b, "group", group)
	}
	if seq != 0 {
		b = strconv.AppendUint(append(b, `,"seq":`...), seq, 10)
	}
	return append(b, '}')
}

func errorFrame(id, code, msg string) []byte { return errorReason(id, code, "", msg) }

// errorReason is an error frame with a reason (omitted when empty).
func errorReason(id, code, reason, msg string) []byte {
	b := appendStrField([]byte(`{"type":"error"`), "id", id)
	b = appendStrField(b, "code", code)
	b = appendStrField(b, "reason", reason)
	b = appendStrField(b, "message", msg)
	return append(b, '}')
}

// appendStrField appends ,"key":"value" (value JSON-escaped; omitted when
// empty).
func appendStrField(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	b = append(append(append(b, `,"`...), key...), `":`...)
	q, _ := json.Marshal(v)
	return append(b, q...)
}

// tokenSubject returns the `sub` claim of a JWT without checking its
// signature.
func tokenSubject(tok string) (string, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", false
	}
	p, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", false
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if json.Unmarshal(p, &claims) != nil || claims.Sub == "" {
		return "", false
	}
	return claims.Sub, true
}

func (s *server) metrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	s.mu.Lock()
	ng := len(s.groups)
	s.mu.Unlock()
	fmt.Fprintf(w, "floor_connections %d\nfloor_groups %d\nfloor_frames_in_total %d\nfloor_msgs_total %d\nfloor_signals_total %d\nfloor_signals_offline_total %d\nfloor_frames_out_total %d\nfloor_writes_total %d\nfloor_slow_consumer_disconnects_total %d\ngo_goroutines %d\n",
		s.conns.Load(), ng, s.framesIn.Load(), s.msgs.Load(), s.signals.Load(), s.offline.Load(), s.framesOut.Load(), s.writes.Load(), s.slow.Load(), runtime.NumGoroutine())
}

// gcHandler runs a full GC, returns freed memory to the OS and reports the
// runtime's figures, so an idle-memory benchmark can read RSS after GC.
func gcHandler(w http.ResponseWriter, _ *http.Request) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"goroutines":  runtime.NumGoroutine(),
		"heap_alloc":  ms.HeapAlloc,
		"heap_inuse":  ms.HeapInuse,
		"stack_inuse": ms.StackInuse,
		"sys":         ms.Sys,
		"num_gc":      ms.NumGC,
	})
}
