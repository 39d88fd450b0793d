package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/pipeline/devcluster"
	"github.com/coder/websocket"
)

// Unit tests: the timeline bookkeeping and the backoff, without I/O.

func TestTimeline(t *testing.T) {
	t.Parallel()
	type step struct {
		op   string // "sub ID SEQ [lost]", "ev SEQ", "resync ID"
		want string // verdict of ev, "lost"/"ok" of sub
	}
	names := map[verdict]string{deliverEvent: "deliver", deliverRecovered: "recovered", dropDuplicate: "dup", dropInGap: "ingap", startResync: "resync"}
	cases := []struct {
		name  string
		steps []step
		last  uint64
	}{
		{"first subscribe sets the start", []step{
			{"sub 1 5", "ok"}, {"ev 6", "deliver"}, {"ev 7", "deliver"},
		}, 7},
		{"duplicates dropped", []step{
			{"sub 1 5", "ok"}, {"ev 6", "deliver"}, {"ev 6", "dup"}, {"ev 4", "dup"}, {"ev 7", "deliver"},
		}, 7},
		{"gap resubscribes once, then fills in order", []step{
			{"sub 1 5", "ok"}, {"ev 6", "deliver"},
			{"ev 8", "resync"}, {"resync r2", ""}, {"ev 9", "ingap"},
			{"sub r2 9", "ok"}, {"ev 7", "deliver"}, {"ev 8", "recovered"}, {"ev 9", "deliver"}, {"ev 9", "dup"}, {"ev 10", "deliver"},
		}, 10},
		{"replay before subscribed also fills", []step{
			{"sub 1 5", "ok"}, {"ev 8", "resync"}, {"resync r2", ""},
			{"ev 6", "deliver"}, {"ev 7", "deliver"}, {"ev 8", "recovered"}, {"sub r2 8", "ok"},
		}, 8},
		{"lost: partial replay accepted from its first event", []step{
			{"sub 1 5", "ok"}, {"resync r2", ""}, {"sub r2 100 lost", "lost"},
			{"ev 96", "deliver"}, {"ev 97", "deliver"}, {"ev 100", "resync"},
		}, 97},
		{"lost twice: the second replay is all duplicates", []step{
			{"sub 1 5", "ok"}, {"sub r2 10 lost", "lost"}, {"ev 8", "deliver"}, {"ev 9", "deliver"}, {"ev 10", "deliver"},
			{"sub r3 10 lost", "lost"}, {"ev 8", "dup"}, {"ev 9", "dup"}, {"ev 10", "dup"}, {"ev 11", "deliver"},
		}, 11},
		{"lost with nothing replayed: live continues", []step{
			{"sub 1 5", "ok"}, {"sub r2 9 lost", "lost"}, {"ev 10", "deliver"}, {"ev 11", "deliver"},
		}, 11},
		{"group reset: a since beyond its seq starts over", []step{
			{"sub 1 50", "ok"}, {"sub r2 3 lost", "lost"}, {"ev 1", "deliver"}, {"ev 2", "deliver"},
		}, 2},
		{"recovered resubscribe changes nothing", []step{
			{"sub 1 5", "ok"}, {"ev 6", "deliver"}, {"sub r2 9", "ok"}, {"ev 7", "deliver"},
		}, 7},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var tl timeline
			for i, st := range tc.steps {
				w := strings.Fields(st.op)
				var got string
				switch w[0] {
				case "ev":
					var seq uint64
					fmt.Sscan(w[1], &seq)
					got = names[tl.event(seq)]
				case "sub":
					var seq uint64
					fmt.Sscan(w[2], &seq)
					got = "ok"
					if tl.subscribed(Frame{Type: "subscribed", ID: w[1], Seq: seq, Recovered: len(w) < 4}) {
						got = "lost"
					}
				case "resync":
					tl.resync = w[1]
				}
				if got != st.want {
					t.Fatalf("step %d %q: got %q, want %q", i, st.op, got, st.want)
				}
			}
			if tl.last != tc.last {
				t.Fatalf("last = %d, want %d", tl.last, tc.last)
			}
		})
	}
}

func TestJitter(t *testing.T) {
	t.Parallel()
	lo, hi := 50*time.Millisecond, 5*time.Second
	for _, tc := range []struct {
		n    int
		r    float64
		want time.Duration
	}{
		{0, 0, 0}, {0, 0.5, 25 * time.Millisecond}, {1, 0.5, 50 * time.Millisecond},
		{3, 0.999999, 399999600}, {20, 0.5, 2500 * time.Millisecond}, {1000, 0.25, 1250 * time.Millisecond},
	} {
		if got := jitter(lo, hi, tc.n, tc.r); got != tc.want {
			t.Errorf("jitter(n=%d, r=%v) = %v, want %v", tc.n, tc.r, got, tc.want)
		}
	}
}

// Integration tests against an in-process cluster.

var testSecret = []byte("session-test-secret-0123456789abcdef")

func startCluster(t *testing.T, n int, tweak func(*devcluster.Config)) *devcluster.Cluster {
	t.Helper()
	return devcluster.StartTest(t, n, testSecret, tweak)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func tokenFor(user string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		return edge.Mint(testSecret, user, []string{"room-*"}, time.Hour, time.Now())
	}
}

func connect(t *testing.T, user string, tweak func(*SessionConfig), urls ...string) *Session {
	t.Helper()
	cfg := SessionConfig{
		URLs:       urls,
		Token:      tokenFor(user),
		MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("user", user),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := Connect(ctxT(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatalf("connect %s: %v", user, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func joinSub(t *testing.T, s *Session, g string) {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	if err := s.Join(ctx, g); err != nil {
		t.Fatalf("join %s: %v", g, err)
	}
	if _, err := s.Subscribe(ctx, g); err != nil {
		t.Fatalf("subscribe %s: %v", g, err)
	}
}

// sendN sends bodies m<from>..m<to-1> as user's client_msg_ids.
func sendN(t *testing.T, s *Session, g string, from, to int) {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	for i := from; i < to; i++ {
		if _, err := s.Send(ctx, g, fmt.Sprintf("id-%d", i), fmt.Sprintf("m%d", i)); err != nil {
			t.Fatalf("send m%d: %v", i, err)
		}
	}
}

// collect reads s.Events until until(frames so far) holds, failing after d.
func collect(t *testing.T, s *Session, d time.Duration, until func([]Frame) bool) []Frame {
	t.Helper()
	var fs []Frame
	timeout := time.After(d)
	for !until(fs) {
		select {
		case f, ok := <-s.Events():
			if !ok {
				t.Fatalf("events closed (err %v) after %d frames: %s", s.Err(), len(fs), describe(fs))
			}
			fs = append(fs, f)
		case <-timeout:
			t.Fatalf("timed out after %v; got %d frames: %s", d, len(fs), describe(fs))
		}
	}
	return fs
}

// hasBody is an until for collect: a msg with this body arrived.
func hasBody(body string) func([]Frame) bool {
	return func(fs []Frame) bool {
		return len(fs) > 0 && fs[len(fs)-1].Type == "msg" && string(fs[len(fs)-1].Body) == `"`+body+`"`
	}
}

func describe(fs []Frame) string {
	var b strings.Builder
	for _, f := range fs {
		switch f.Type {
		case "msg":
			fmt.Fprintf(&b, " %d:%s", f.Seq, f.Body)
		case "member":
			fmt.Fprintf(&b, " %d:%s-%s", f.Seq, f.User, f.Event)
		case "subscribed":
			fmt.Fprintf(&b, " subscribed(seq=%d,recovered=%v)", f.Seq, f.Recovered)
		default:
			fmt.Fprintf(&b, " %s", f.Raw)
		}
	}
	return b.String()
}

// checkTimeline fails unless the timeline events of g in fs have
// consecutive seqs, and returns the msg bodies in order.
func checkTimeline(t *testing.T, fs []Frame, g string) []string {
	t.Helper()
	var bodies []string
	var last uint64
	for _, f := range fs {
		if f.Group != g || f.Type != "msg" && f.Type != "member" {
			continue
		}
		if last != 0 && f.Seq != last+1 {
			t.Fatalf("seq %d after %d: not in order or not once; frames: %s", f.Seq, last, describe(fs))
		}
		last = f.Seq
		if f.Type == "msg" {
			bodies = append(bodies, strings.Trim(string(f.Body), `"`))
		}
	}
	return bodies
}

func wantBodies(t *testing.T, got []string, from, to int) {
	t.Helper()
	var want []string
	for i := from; i < to; i++ {
		want = append(want, fmt.Sprintf("m%d", i))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("messages delivered:\n got %v\nwant %v", got, want)
	}
}

// attached waits until s has no subscribe of g in flight, so events
// sequenced from now on are live for it.
func attached(t *testing.T, s *Session, g string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		tl := s.groups[g]
		ok := s.cur != nil && tl != nil && tl.known && tl.resync == ""
		s.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s not re-attached within 10s", g)
}

// TestSessionReconnectReplaysMissed: messages sent while a member's
// connection is down reach it after the reconnect, once each, in order,
// followed by live ones. Needs the server's history (subscribe with since).
func TestSessionReconnectReplaysMissed(t *testing.T) {
	t.Parallel()
	cl := startCluster(t, 2, nil)
	p := newProxy(t, cl.Edges[0].Addr())
	alice := connect(t, "alice", nil, p.url())
	bob := connect(t, "bob", nil, cl.URL(1))
	joinSub(t, alice, "room-1")
	joinSub(t, bob, "room-1")

	sendN(t, bob, "room-1", 0, 5)
	before := collect(t, alice, 10*time.Second, hasBody("m4"))

	p.setDown(true)
	p.cut()
	waitFor(t, "alice to notice the cut", func() bool { return alice.Client() == nil })
	sendN(t, bob, "room-1", 5, 25)
	p.setDown(false)
	sendN(t, bob, "room-1", 25, 30)

	after := collect(t, alice, 20*time.Second, hasBody("m29"))
	all := append(before, after...)
	wantBodies(t, checkTimeline(t, all, "room-1"), 0, 30)
	for _, f := range all {
		if f.Type == "subscribed" {
			t.Fatalf("unexpected %s: nothing was lost", f.Raw)
		}
	}
	if st := alice.Stats(); st.Reconnects < 1 || st.Resubscribes < 1 {
		t.Fatalf("stats %+v: want a reconnect and a resubscribe", st)
	}
}

// TestSessionReconnectLive: after a cut the session reconnects and
// resubscribes by itself; later messages arrive once, in order. Passes
// without server history (nothing is sent while it is away).
func TestSessionReconnectLive(t *testing.T) {
	t.Parallel()
	cl := startCluster(t, 1, nil)
	p := newProxy(t, cl.Edges[0].Addr())
	alice := connect(t, "alice", nil, p.url())
	bob := connect(t, "bob", nil, cl.URL(0))
	joinSub(t, alice, "room-1")
	joinSub(t, bob, "room-1")
	sendN(t, bob, "room-1", 0, 3)
	before := collect(t, alice, 10*time.Second, hasBody("m2"))

	first := alice.Client().Session()
	p.cut()
	waitFor(t, "a new connection", func() bool { c := alice.Client(); return c != nil && c.Session() != first })
	attached(t, alice, "room-1")
	sendN(t, bob, "room-1", 3, 10)
	after := collect(t, alice, 10*time.Second, hasBody("m9"))
	wantBodies(t, checkTimeline(t, append(before, after...), "room-1"), 0, 10)
	if st := alice.Stats(); st.Reconnects != 1 {
		t.Fatalf("stats %+v: want 1 reconnect", st)
	}
}

// TestSessionFailover: with two edges, a session whose edge becomes
// unreachable moves to the other one and keeps its subscription.
func TestSessionFailover(t *testing.T) {
	t.Parallel()
	cl := startCluster(t, 2, nil)
	p := []*proxy{newProxy(t, cl.Edges[0].Addr()), newProxy(t, cl.Edges[1].Addr())}
	alice := connect(t, "alice", nil, p[0].url(), p[1].url())
	bob := connect(t, "bob", nil, cl.URL(0))
	joinSub(t, alice, "room-1")
	joinSub(t, bob, "room-1")

	on := 0
	if alice.Client().Edge() == "edge-2" {
		on = 1
	}
	p[on].setDown(true)
	p[on].cut()
	waitFor(t, "alice on the other edge", func() bool {
		c := alice.Client()
		return c != nil && c.Edge() == fmt.Sprintf("edge-%d", 2-on)
	})
	attached(t, alice, "room-1")
	sendN(t, bob, "room-1", 0, 5)
	fs := collect(t, alice, 10*time.Second, hasBody("m4"))
	wantBodies(t, checkTimeline(t, fs, "room-1"), 0, 5)
}

// TestSessionEdgeHung: an edge that hangs with its sockets open (a stopped
// process, a host gone without FIN or RST) sends nothing, closes nothing
// and answers nothing. The Session's pings notice within
// PingInterval+PongTimeout; it moves to the next edge and resumes with
// since: everything published while it was stranded arrives, once, in
// order. Needs the server's history.
func TestSessionEdgeHung(t *testing.T) {
	t.Parallel()
	const (
		ping, pong  = 500 * time.Millisecond, 500 * time.Millisecond
		dialTimeout = time.Second
		// Room for a busy, shared, -race machine; a Session without
		// liveness never moves at all.
		margin = 2 * time.Second
	)
	cl := startCluster(t, 2, nil)
	p := newProxy(t, cl.Edges[0].Addr())
	var maxBackoff time.Duration
	alice := connect(t, "alice", func(c *SessionConfig) {
		c.Order = OrderPreferred
		c.PingInterval, c.PongTimeout, c.DialTimeout = ping, pong, dialTimeout
		maxBackoff = c.MaxBackoff
	}, p.url(), cl.URL(1))
	bob := connect(t, "bob", nil, cl.URL(1))
	joinSub(t, alice, "room-1")
	joinSub(t, bob, "room-1")
	stranded := alice.Client()
	if stranded.Edge() != "edge-1" {
		t.Fatalf("alice on %s, want edge-1 (URLs[0], preferred order)", stranded.Edge())
	}
	sendN(t, bob, "room-1", 0, 5)
	before := collect(t, alice, 10*time.Second, hasBody("m4"))

	p.freeze()
	frozeAt := time.Now()
	sendN(t, bob, "room-1", 5, 25)
	select {
	case <-stranded.Done():
	case <-time.After(ping + pong + margin - time.Since(frozeAt)):
		t.Fatalf("connection to the hung edge still open %v after the freeze (ping %v, pong timeout %v)", time.Since(frozeAt), ping, pong)
	}
	if err := stranded.Err(); !errors.Is(err, ErrUnresponsive) {
		t.Fatalf("hung connection ended with %v, want ErrUnresponsive", err)
	}
	noticed := time.Since(frozeAt)
	// Preferred order tries the hung edge first again; DialTimeout lets
	// go of it.
	within := ping + pong + dialTimeout + 2*maxBackoff + margin
	waitFor(t, "alice on edge-2", func() bool { c := alice.Client(); return c != nil && c.Edge() == "edge-2" })
	moved := time.Since(frozeAt)
	if moved > within {
		t.Fatalf("alice reached edge-2 %v after the freeze, want within %v", moved, within)
	}
	t.Logf("hung edge noticed after %v, alice on edge-2 after %v", noticed, moved)
	sendN(t, bob, "room-1", 25, 30)
	after := collect(t, alice, 20*time.Second, hasBody("m29"))
	all := append(before, after...)
	wantBodies(t, checkTimeline(t, all, "room-1"), 0, 30)
	for _, f := range all {
		if f.Type == "subscribed" {
			t.Fatalf("unexpected %s: nothing was lost", f.Raw)
		}
	}
	if st := alice.Stats(); st.Reconnects != 1 {
		t.Fatalf("stats %+v: want 1 reconnect", st)
	}
}

// edgeOf is the edge s is connected to ("" while it reconnects).
func edgeOf(s *Session) string {
	if c := s.Client(); c != nil {
		return c.Edge()
	}
	return ""
}

// landsFirst connects 8 sessions with cfg and fails unless each lands on
// URLs[0]: shuffled, all 8 would once in 256 runs.
func landsFirst(t *testing.T, cfg func(*SessionConfig), urls ...string) {
	t.Helper()
	for i := range 8 {
		s := connect(t, fmt.Sprintf("u%d", i), cfg, urls...)
		if e := edgeOf(s); e != "edge-1" {
			t.Fatalf("session %d landed on %s, want edge-1 (URLs[0])", i, e)
		}
		_ = s.Close()
	}
}

// TestSessionListedOrder: with OrderListed the first connect lands on
// URLs[0], and a lost connection moves on to URLs[1] at once even while
// URLs[0] is back (no refused dial first, as OrderPreferred would have).
func TestSessionListedOrder(t *testing.T) {
	t.Parallel()
	cl := startCluster(t, 2, nil)
	p := []*proxy{newProxy(t, cl.Edges[0].Addr()), newProxy(t, cl.Edges[1].Addr())}
	listed := func(c *SessionConfig) { c.Order = OrderListed }
	landsFirst(t, listed, p[0].url(), p[1].url())
	alice := connect(t, "alice", listed, p[0].url(), p[1].url())
	p[0].cut()
	waitFor(t, "alice on edge-2", func() bool { return edgeOf(alice) == "edge-2" })
	if st := alice.Stats(); st.Reconnects != 1 {
		t.Fatalf("stats %+v: want 1 reconnect", st)
	}
	p[1].cut()
	waitFor(t, "alice back on edge-1 (round-robin)", func() bool { return edgeOf(alice) == "edge-1" })
}

// TestSessionPreferredOrder: with OrderPreferred every connect and
// reconnect starts at URLs[0] and falls over to URLs[1] only while URLs[0]
// cannot be had: down, or hung (after DialTimeout).
func TestSessionPreferredOrder(t *testing.T) {
	t.Parallel()
	cl := startCluster(t, 2, nil)
	p := []*proxy{newProxy(t, cl.Edges[0].Addr()), newProxy(t, cl.Edges[1].Addr())}
	preferred := func(c *SessionConfig) { c.Order = OrderPreferred; c.DialTimeout = time.Second }
	landsFirst(t, preferred, p[0].url(), p[1].url())

	alice := connect(t, "alice", preferred, p[0].url(), p[1].url())
	first := alice.Client().Session()
	// A blip: URLs[0] is still there, so the reconnect goes back to it
	// where round-robin would move on.
	p[0].cut()
	waitFor(t, "a new connection", func() bool { c := alice.Client(); return c != nil && c.Session() != first })
	if e := edgeOf(alice); e != "edge-1" {
		t.Fatalf("after a blip alice is on %s, want edge-1 again", e)
	}

	p[0].setDown(true)
	p[0].cut()
	waitFor(t, "alice on edge-2 while edge-1 is down", func() bool { return edgeOf(alice) == "edge-2" })

	// Back up: it stays preferred, and the next reconnect returns to it.
	p[0].setDown(false)
	p[1].cut()
	waitFor(t, "alice back on edge-1", func() bool { return edgeOf(alice) == "edge-1" })
	// Now, while its edge answers: a close handshake with a hung edge
	// waits out coder/websocket's 5s.
	_ = alice.Close()

	p[0].freeze()
	start := time.Now()
	carol := connect(t, "carol", preferred, p[0].url(), p[1].url())
	if e := edgeOf(carol); e != "edge-2" {
		t.Fatalf("with edge-1 hung carol landed on %s, want edge-2", e)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("carol connected in %v, before the 1s dial timeout could let go of the hung URLs[0]: was it tried first?", d)
	}
}

// TestClientUnresponsive: a Client whose edge hangs ends within
// PingInterval+PongTimeout with ErrUnresponsive, and a request waiting for
// an answer from that edge fails with it instead of waiting forever.
func TestClientUnresponsive(t *testing.T) {
	t.Parallel()
	const ping, pong, margin = 200 * time.Millisecond, 300 * time.Millisecond, 2 * time.Second
	cl := startCluster(t, 1, nil)
	p := newProxy(t, cl.Edges[0].Addr())
	tok, err := tokenFor("alice")(context.Background())
	if err != nil {
		t.Fatalf("mint token: %v", err)
	}
	c, err := Dial(ctxT(t, 10*time.Second), p.url(), tok, &Options{PingInterval: ping, PongTimeout: pong})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Join(ctxT(t, 10*time.Second), "room-1"); err != nil {
		t.Fatalf("join: %v", err)
	}
	p.freeze()
	frozeAt := time.Now()
	sent := make(chan error, 1)
	go func() {
		// No deadline of its own: only liveness can end it.
		_, err := c.Send(context.Background(), "room-1", "a-1", "into the void")
		sent <- err
	}()
	select {
	case err := <-sent:
		if !errors.Is(err, ErrUnresponsive) {
			t.Fatalf("send to a hung edge = %v, want ErrUnresponsive", err)
		}
	case <-time.After(ping + pong + margin):
		t.Fatalf("send to a hung edge still waiting %v after the freeze", time.Since(frozeAt))
	}
	<-c.Done()
	if !errors.Is(c.Err(), ErrUnresponsive) {
		t.Fatalf("client ended with %v, want ErrUnresponsive", c.Err())
	}
	for range c.Events() { // closed once the reader is gone
	}
}

// TestDialHelloUnanswered: an edge that upgrades the connection and then
// hangs fails Dial when its ctx ends, without the close handshake's 5s
// wait on top: a Session's DialTimeout really bounds the attempt.
func TestDialHelloUnanswered(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"causeway.v1"}})
		if err != nil {
			return
		}
		<-release // hung: reads nothing, answers nothing
		_ = ws.CloseNow()
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	const timeout = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	_, err := Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/v1/ws", "t", nil)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial to a hung edge = %v, want the ctx's deadline", err)
	}
	if d := time.Since(start); d > timeout+2*time.Second {
		t.Fatalf("dial returned %v after it started, want about its %v timeout", d, timeout)
	}
}

// TestClientStalledReaderNotDead: while the application leaves Events
// full, the reader cannot read pongs; that is the application's stall, not
// the edge's, and must not end the connection.
func TestClientStalledReaderNotDead(t *testing.T) {
	t.Parallel()
	const ping, pong = 100 * time.Millisecond, 100 * time.Millisecond
	cl := startCluster(t, 1, nil)
	dial := func(user string, o *Options) *Client {
		tok, err := tokenFor(user)(context.Background())
		if err != nil {
			t.Fatalf("mint token: %v", err)
		}
		c, err := Dial(ctxT(t, 10*time.Second), cl.URL(0), tok, o)
		if err != nil {
			t.Fatalf("dial %s: %v", user, err)
		}
		t.Cleanup(func() { _ = c.Close() })
		ctx := ctxT(t, 10*time.Second)
		if err := c.Join(ctx, "room-1"); err != nil {
			t.Fatalf("%s join: %v", user, err)
		}
		if _, err := c.Subscribe(ctx, "room-1", nil); err != nil {
			t.Fatalf("%s subscribe: %v", user, err)
		}
		return c
	}
	alice := dial("alice", &Options{EventBuffer: 1, PingInterval: ping, PongTimeout: pong})
	bob := dial("bob", nil)
	const n = 10
	for i := range n {
		if _, err := bob.Send(ctxT(t, 10*time.Second), "room-1", fmt.Sprintf("b-%d", i), i); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	waitFor(t, "alice's reader to block on a full Events", func() bool { return alice.handoffs.Load()%2 == 1 })
	// The stall is the stimulus: long enough for several pings to go
	// unanswered while the reader is held up.
	time.Sleep(5 * (ping + pong))
	if err := alice.Err(); err != nil {
		t.Fatalf("connection ended while the application stalled: %v", err)
	}
	got := 0
	timeout := time.After(10 * time.Second)
	for got < n {
		select {
		case f, ok := <-alice.Events():
			if !ok {
				t.Fatalf("events closed after %d of %d messages: %v", got, n, alice.Err())
			}
			if f.Type == "msg" {
				got++
			}
		case <-timeout:
			t.Fatalf("got %d of %d messages", got, n)
		}
	}
	// Pings resume once the application reads: the connection is alive
	// and still answers requests.
	if _, err := alice.Send(ctxT(t, 10*time.Second), "room-1", "a-1", "back"); err != nil {
		t.Fatalf("send after the stall: %v", err)
	}
}

// TestConfigRejected: values that cannot work fail Connect and Dial
// before any dial, naming the field.
func TestConfigRejected(t *testing.T) {
	t.Parallel()
	url := "ws://127.0.0.1:1/v1/ws" // nothing listens: a dial would fail differently
	tok := tokenFor("alice")
	for _, tc := range []struct {
		name  string
		tweak func(*SessionConfig)
		want  string
	}{
		{"unknown order", func(c *SessionConfig) { c.Order = 7 }, "order Order(7)"},
		{"negative dial timeout", func(c *SessionConfig) { c.DialTimeout = -time.Second }, "dial timeout -1s"},
		{"negative pong timeout", func(c *SessionConfig) { c.PongTimeout = -time.Second }, "pong timeout -1s"},
	} {
		cfg := SessionConfig{URLs: []string{url}, Token: tok}
		tc.tweak(&cfg)
		_, err := Connect(ctxT(t, 5*time.Second), cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: connect = %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
	_, err := Dial(ctxT(t, 5*time.Second), url, "t", &Options{PongTimeout: -time.Second})
	if err == nil || !strings.Contains(err.Error(), "pong timeout -1s") {
		t.Errorf("dial = %v, want an error naming the pong timeout", err)
	}
}

// TestSessionEdgeDrained: an edge that shuts down (close 4000 after
// flushing) sends its sessions to another edge; messages sent around the
// drain arrive once, in order. Needs the server's history.
func TestSessionEdgeDrained(t *testing.T) {
	t.Parallel()
	cl := startCluster(t, 2, nil)
	// A third edge, run by the test so it can be stopped alone.
	ec := edge.DefaultConfig()
	ec.ID, ec.Secret, ec.HTTPAddr = "edge-x", testSecret, "127.0.0.1:0"
	ec.Kafka.Brokers, ec.Kafka.ClientID = []string{cl.Broker.Addr()}, "causeway-edge-x"
	ec.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ex, err := edge.New(ec)
	if err != nil {
		t.Fatalf("new edge: %v", err)
	}
	exCtx, stopEx := context.WithCancel(context.Background())
	exDone := make(chan error, 1)
	go func() { exDone <- ex.Run(exCtx) }()
	t.Cleanup(func() { stopEx(); <-exDone })
	waitFor(t, "edge-x ready", ex.Ready)
	xURL := "ws://" + ex.Addr() + "/v1/ws"

	alice := connect(t, "alice", func(c *SessionConfig) { c.Order = OrderPreferred }, xURL, cl.URL(1))
	if e := alice.Client().Edge(); e != "edge-x" {
		t.Fatalf("alice on %s, want edge-x (URLs[0], preferred order)", e)
	}
	bob := connect(t, "bob", nil, cl.URL(0))
	joinSub(t, alice, "room-1")
	joinSub(t, bob, "room-1")
	sendN(t, bob, "room-1", 0, 5)

	stopEx()
	if err := <-exDone; err != nil {
		t.Fatalf("edge-x stopped with %v", err)
	}
	exDone <- nil // for the cleanup
	sendN(t, bob, "room-1", 5, 15)
	waitFor(t, "alice on edge-2", func() bool { c := alice.Client(); return c != nil && c.Edge() == "edge-2" })
	sendN(t, bob, "room-1", 15, 20)
	fs := collect(t, alice, 20*time.Second, hasBody("m19"))
	wantBodies(t, checkTimeline(t, fs, "room-1"), 0, 20)
	if st := alice.Stats(); st.Reconnects != 1 {
		t.Fatalf("stats %+v: want 1 reconnect", st)
	}
}

// TestSessionSendRetried: a send whose ack is lost with the connection is
// sent again on the next one, sequenced once, and returns the original seq.
func TestSessionSendRetried(t *testing.T) {
	t.Parallel()
	cl := startCluster(t, 1, nil)
	p := newProxy(t, cl.Edges[0].Addr())
	alice := connect(t, "alice", nil, p.url())
	bob := connect(t, "bob", nil, cl.URL(0))
	joinSub(t, alice, "room-1")
	joinSub(t, bob, "room-1")

	p.mute() // the edge's answers to alice's current connection vanish
	type result struct {
		seq uint64
		err error
	}
	res := make(chan result, 1)
	go func() {
		seq, err := alice.Send(ctxT(t, 20*time.Second), "room-1", "alice-1", "hello")
		res <- result{seq, err}
	}()
	seen := collect(t, bob, 10*time.Second, func(fs []Frame) bool {
		return len(fs) > 0 && fs[len(fs)-1].ClientMsgID == "alice-1"
	})
	orig := seen[len(seen)-1].Seq
	select {
	case r := <-res:
		t.Fatalf("send returned (%d, %v) while its ack could not arrive", r.seq, r.err)
	case <-time.After(100 * time.Millisecond):
	}
	p.cut()
	r := <-res
	if r.err != nil || r.seq != orig {
		t.Fatalf("send = (%d, %v), want the original seq %d", r.seq, r.err, orig)
	}
	if st := alice.Stats(); st.SendRetries < 1 || st.Reconnects != 1 {
		t.Fatalf("stats %+v: want a retry across 1 reconnect", st)
	}
	sendN(t, bob, "room-1", 0, 1)
	more := collect(t, bob, 10*time.Second, hasBody("m0"))
	n := 0
	for _, f := range append(seen, more...) {
		if f.ClientMsgID == "alice-1" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("bob saw alice-1 %d times: %s", n, describe(append(seen, more...)))
	}
}

// TestSessionResubscribeWindow: after a reconnect, groups are resubscribed
// a window at a time, so replays that together overflow the edge's
// per-connection queue (4409) still arrive, with a single reconnect. Needs
// the server's history.
func TestSessionResubscribeWindow(t *testing.T) {
	t.Parallel()
	cl := startCluster(t, 1, func(c *devcluster.Config) { c.Edge.QueueFrames = 256 })
	p := newProxy(t, cl.Edges[0].Addr())
	alice := connect(t, "alice", func(c *SessionConfig) { c.ResubscribeWindow = 1 }, p.url())
	bob := connect(t, "bob", nil, cl.URL(0))
	groups := []string{"room-a", "room-b", "room-c"}
	for _, g := range groups {
		joinSub(t, alice, g)
		joinSub(t, bob, g)
	}
	p.setDown(true)
	p.cut()
	waitFor(t, "alice to notice the cut", func() bool { return alice.Client() == nil })
	for _, g := range groups { // 3 x 150 frames: more than 256, each less
		sendN(t, bob, g, 0, 150)
	}
	p.setDown(false)
	got := map[string]bool{}
	fs := collect(t, alice, 30*time.Second, func(fs []Frame) bool {
		if len(fs) > 0 && string(fs[len(fs)-1].Body) == `"m149"` {
			got[fs[len(fs)-1].Group] = true
		}
		return len(got) == len(groups)
	})
	for _, g := range groups {
		wantBodies(t, checkTimeline(t, fs, g), 0, 150)
	}
	if st := alice.Stats(); st.Reconnects != 1 {
		t.Fatalf("stats %+v: want 1 reconnect", st)
	}
}

// TestSessionGapRecovered: an event lost on a live connection is noticed
// at the next one; the session subscribes again with since and delivers
// everything once, in order. Needs the server's history.
func TestSessionGapRecovered(t *testing.T) {
	t.Parallel()
	cl := startCluster(t, 1, nil)
	dropped := false // only the pump goroutine touches it
	alice := connect(t, "alice", func(c *SessionConfig) {
		c.dropEvent = func(f Frame) bool {
			if f.ClientMsgID == "id-3" && !dropped {
				dropped = true
				return true
			}
			return false
		}
	}, cl.URL(0))
	bob := connect(t, "bob", nil, cl.URL(0))
	joinSub(t, alice, "room-1")
	joinSub(t, bob, "room-1")
	sendN(t, bob, "room-1", 0, 10)
	fs := collect(t, alice, 10*time.Second, hasBody("m9"))
	wantBodies(t, checkTimeline(t, fs, "room-1"), 0, 10)
	st := alice.Stats()
	if st.GapsDetected != 1 || st.GapsRecovered != 1 || st.Reconnects != 0 {
		t.Fatalf("stats %+v: want 1 gap detected and recovered on the same connection", st)
	}
}

// TestSessionUnrecoverable: when the missed events have left the server's
// history, the app gets the `subscribed` frame with recovered=false, then
// what is left of the history (the last 5 here), then live events, in
// order. Without server history yet, it fails on the missing replay.
func TestSessionUnrecoverable(t *testing.T) {
	t.Parallel()
	cl := startCluster(t, 1, func(c *devcluster.Config) { c.Sequencer.Limits.HistoryCount = 5 })
	p := newProxy(t, cl.Edges[0].Addr())
	alice := connect(t, "alice", nil, p.url())
	bob := connect(t, "bob", nil, cl.URL(0))
	joinSub(t, alice, "room-1")
	joinSub(t, bob, "room-1")
	sendN(t, bob, "room-1", 0, 2)
	collect(t, alice, 10*time.Second, hasBody("m1"))

	p.setDown(true)
	p.cut()
	waitFor(t, "alice to notice the cut", func() bool { return alice.Client() == nil })
	sendN(t, bob, "room-1", 2, 22)
	p.setDown(false)
	attached(t, alice, "room-1")
	sendN(t, bob, "room-1", 22, 25)
	fs := collect(t, alice, 20*time.Second, hasBody("m24"))
	if len(fs) == 0 || fs[0].Type != "subscribed" || fs[0].Recovered || fs[0].Group != "room-1" {
		t.Fatalf("want a subscribed frame with recovered=false first, got: %s", describe(fs))
	}
	wantBodies(t, checkTimeline(t, fs[1:], "room-1"), 17, 25)
	if st := alice.Stats(); st.GapsUnrecoverable != 1 {
		t.Fatalf("stats %+v: want 1 unrecoverable gap", st)
	}
}

// TestSessionToken: the token source is asked again after a refusal; a
// second refusal, or a failing source, ends Connect with an error.
func TestSessionToken(t *testing.T) {
	t.Parallel()
	cl := startCluster(t, 1, nil)
	bad := func(context.Context) (string, error) {
		return edge.Mint([]byte("not-the-secret-not-the-secret-xx"), "alice", []string{"room-*"}, time.Hour, time.Now())
	}
	t.Run("refreshed", func(t *testing.T) {
		var calls atomic.Int32
		s := connect(t, "alice", func(c *SessionConfig) {
			c.Token = func(ctx context.Context) (string, error) {
				if calls.Add(1) == 1 {
					return bad(ctx)
				}
				return tokenFor("alice")(ctx)
			}
		}, cl.URL(0))
		if calls.Load() != 2 || s.Client().User() != "alice" {
			t.Fatalf("token calls %d, user %q: want a second token to be accepted", calls.Load(), s.Client().User())
		}
	})
	t.Run("refused twice", func(t *testing.T) {
		_, err := Connect(ctxT(t, 10*time.Second), SessionConfig{URLs: []string{cl.URL(0)}, Token: bad})
		if !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("connect = %v, want ErrUnauthorized", err)
		}
	})
	t.Run("source fails", func(t *testing.T) {
		boom := errors.New("auth service down")
		_, err := Connect(ctxT(t, 10*time.Second), SessionConfig{URLs: []string{cl.URL(0)},
			Token: func(context.Context) (string, error) { return "", boom }})
		if !errors.Is(err, boom) {
			t.Fatalf("connect = %v, want the token source's error", err)
		}
	})
	t.Run("refused on reconnect ends the session", func(t *testing.T) {
		p := newProxy(t, cl.Edges[0].Addr())
		var good atomic.Bool
		good.Store(true)
		s := connect(t, "alice", func(c *SessionConfig) {
			c.Token = func(ctx context.Context) (string, error) {
				if good.Load() {
					return tokenFor("alice")(ctx)
				}
				return bad(ctx)
			}
		}, p.url())
		good.Store(false)
		p.cut()
		select {
		case <-s.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("session still running with a refused token")
		}
		if !errors.Is(s.Err(), ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", s.Err())
		}
		for range s.Events() { // must be closed
		}
		if _, err := s.Send(ctxT(t, time.Second), "room-1", "x", "x"); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("send after the end = %v, want ErrUnauthorized", err)
		}
	})
}

// TestSessionClose: Close stops the session while the app is not reading
// and the connection is busy; Events is closed; later calls fail.
func TestSessionClose(t *testing.T) {
	t.Parallel()
	cl := startCluster(t, 1, nil)
	alice := connect(t, "alice", func(c *SessionConfig) { c.EventBuffer = 4 }, cl.URL(0))
	bob := connect(t, "bob", nil, cl.URL(0))
	joinSub(t, alice, "room-1")
	joinSub(t, bob, "room-1")
	sendN(t, bob, "room-1", 0, 30) // alice reads none: her buffers fill
	done := make(chan struct{})
	go func() { _ = alice.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close blocked")
	}
	for range alice.Events() {
	}
	if err := alice.Join(ctxT(t, time.Second), "room-2"); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("join after close = %v, want ErrSessionClosed", err)
	}
	if alice.Err() != nil {
		t.Fatalf("err after Close = %v, want nil", alice.Err())
	}
}

// TestSessionNotMember: final error codes come back at once, not retried.
func TestSessionNotMember(t *testing.T) {
	t.Parallel()
	cl := startCluster(t, 1, nil)
	alice := connect(t, "alice", nil, cl.URL(0))
	ctx := ctxT(t, 10*time.Second)
	_, err := alice.Send(ctx, "room-9", "a", "x")
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeNotMember {
		t.Fatalf("send to a group not joined = %v, want not_member", err)
	}
	if _, err := alice.Subscribe(ctx, "room-9"); !errors.As(err, &e) || e.Code != CodeNotMember {
		t.Fatalf("subscribe to a group not joined = %v, want not_member", err)
	}
	if err := alice.Join(ctx, "other-1"); !errors.As(err, &e) || e.Code != CodeForbidden {
		t.Fatalf("join outside the token's groups = %v, want forbidden", err)
	}
	if st := alice.Stats(); st.SendRetries != 0 {
		t.Fatalf("stats %+v: nothing should have been retried", st)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// proxy is a TCP relay in front of an edge that a test can cut, keep down
// (connections accepted and closed at once), mute (the edge's bytes to
// the current connections are discarded) or freeze (hung for good).
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup // the accept loop and the copiers

	mu     sync.Mutex
	down   bool
	frozen bool
	pairs  map[*pair]struct{}
}

type pair struct {
	client net.Conn
	edge   net.Conn // nil if accepted while frozen
	muted  atomic.Bool
	frozen atomic.Bool
	closed chan struct{} // closed by drop
	once   sync.Once
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &proxy{ln: ln, target: target, pairs: make(map[*pair]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) url() string { return "ws://" + p.ln.Addr().String() + "/v1/ws" }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down, frozen := p.down, p.frozen
		if frozen {
			// Like a stopped process: the kernel completes the TCP
			// handshake, then nothing answers the upgrade request.
			pr := &pair{client: c, closed: make(chan struct{})}
			pr.frozen.Store(true)
			p.pairs[pr] = struct{}{}
		}
		p.mu.Unlock()
		if frozen {
			continue
		}
		if down {
			_ = c.Close()
			continue
		}
		e, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		pr := &pair{client: c, edge: e, closed: make(chan struct{})}
		p.mu.Lock()
		p.pairs[pr] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.relay(pr, e, c, false)
		go p.relay(pr, c, e, true)
	}
}

// relay copies src to dst until either ends; muteable is the edge -> client
// direction.
func (p *proxy) relay(pr *pair, dst, src net.Conn, muteable bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if pr.frozen.Load() {
			// A hung peer passes nothing on and closes nothing: even
			// a FIN from the other side goes unanswered until the test
			// tears the proxy down.
			<-pr.closed
			break
		}
		if n > 0 && !(muteable && pr.muted.Load()) {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	p.drop(pr)
}

func (p *proxy) drop(pr *pair) {
	pr.once.Do(func() { close(pr.closed) })
	_ = pr.client.Close()
	if pr.edge != nil {
		_ = pr.edge.Close()
	}
	p.mu.Lock()
	delete(p.pairs, pr)
	p.mu.Unlock()
}

func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

// cut closes every relayed connection, like a network failure.
func (p *proxy) cut() {
	p.mu.Lock()
	prs := make([]*pair, 0, len(p.pairs))
	for pr := range p.pairs {
		prs = append(prs, pr)
	}
	p.mu.Unlock()
	for _, pr := range prs {
		p.drop(pr)
	}
}

// mute discards, from now on, what the edge sends on the current
// connections; new connections are not muted.
func (p *proxy) mute() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pr := range p.pairs {
		pr.muted.Store(true)
	}
}

// freeze hangs the proxy for good, as a SIGSTOPped edge or a host that
// vanished without FIN or RST: nothing is relayed either way on the
// current connections, new ones are accepted and never answered, and no
// socket is closed until the test ends.
func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = true
	for pr := range p.pairs {
		pr.frozen.Store(true)
	}
}

// A Session that reconnects mid-call resumes its old session: the signals
// addressed to it while it was away arrive, and the buffered ones it had
// already seen are not delivered twice.
func TestSessionResumesCall(t *testing.T) {
	t.Parallel()
	cl := startCluster(t, 1, nil)
	p := newProxy(t, cl.Edges[0].Addr())
	bob := connect(t, "bob", nil, p.url())
	alice := connect(t, "alice", nil, cl.URL(0))
	ctx := ctxT(t, 30*time.Second)
	// The default reach policy: only users sharing a group may ring
	// each other.
	for _, s := range []*Session{alice, bob} {
		if err := s.Join(ctx, "room-call"); err != nil {
			t.Fatalf("join: %v", err)
		}
	}
	if err := alice.Presence(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	collect(t, alice, 10*time.Second, func(fs []Frame) bool {
		return len(fs) > 0 && fs[len(fs)-1].Type == "presence" && fs[len(fs)-1].Status == "online"
	})
	old := bob.Client().Session()
	signal := func(i int) {
		t.Helper()
		if err := alice.Signal(ctx, "bob", old, "call-1", "ice", map[string]int{"i": i}); err != nil {
			t.Fatalf("ice %d: %v", i, err)
		}
	}
	for i := range 3 {
		signal(i)
	}
	isLast := func(n uint64) func([]Frame) bool {
		return func(fs []Frame) bool {
			return len(fs) > 0 && fs[len(fs)-1].Type == "signal" && fs[len(fs)-1].CallSeq == n
		}
	}
	got := collect(t, bob, 10*time.Second, isLast(3))
	p.cut()
	// Sent while bob is away or just back (the reconnect can be quicker
	// than a poll): either way they are addressed to his old session.
	for i := 3; i < 6; i++ {
		signal(i)
	}
	waitFor(t, "bob back", func() bool { c := bob.Client(); return c != nil && c.Session() != old })
	got = append(got, collect(t, bob, 10*time.Second, isLast(6))...)
	time.Sleep(300 * time.Millisecond) // room for a duplicate to show up
	got = append(got, drain(bob)...)
	var seqs []uint64
	for _, f := range got {
		if f.Type == "signal" {
			seqs = append(seqs, f.CallSeq)
		}
	}
	if len(seqs) != 6 {
		t.Fatalf("bob got call_seqs %v, want 1..6 once each", seqs)
	}
	for i, q := range seqs {
		if q != uint64(i+1) {
			t.Fatalf("bob got call_seqs %v, want 1..6 in order", seqs)
		}
	}
}

// drain returns the frames already waiting on s.
func drain(s *Session) []Frame {
	var out []Frame
	for {
		select {
		case f := <-s.Events():
			out = append(out, f)
		default:
			return out
		}
	}
}
