package edge_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/causeway/causeway/pipeline/devcluster"
	"github.com/coder/websocket"
)

// TestHalfOpenClosed is FAULTS.md row 17: a client that says hello and then
// never reads again never answers a ping (coder/websocket answers pings
// from its reader), exactly like a peer whose host is gone with the socket
// half open. The edge must close it within PingInterval+PongTimeout, and a
// client on the same edge that answers its pings must not notice.
func TestHalfOpenClosed(t *testing.T) {
	const (
		ping, pong = 500 * time.Millisecond, 500 * time.Millisecond
		// Room for a busy, shared, -race machine: scheduling and the
		// /metrics polling, not a grace the edge may take.
		margin = 1500 * time.Millisecond
	)
	cl := startCluster(t, 1, func(c *devcluster.Config) { c.Edge.PingInterval, c.Edge.PongTimeout = ping, pong })
	addr := cl.Edges[0].Addr()
	const gauge = "causeway_edge_connections"

	good := dial(t, cl.URL(0), "ann", "room-*")
	joinSub(t, good, "room-h")

	// The edge's first ping goes out PingInterval after it accepted the
	// socket, so the clock starts before the dial.
	start := time.Now()
	mute := rawDial(t, cl.URL(0))
	hello := `{"type":"hello","id":"h","token":"` + token(t, "mute", "room-*") + `"}`
	if err := mute.Write(ctxT(t, 5*time.Second), websocket.MessageText, []byte(hello)); err != nil {
		t.Fatalf("mute hello: %v", err)
	}
	if fs, err := readFrames(t, mute); err != nil || fs[0].Type != "welcome" {
		t.Fatalf("mute hello answered %+v, %v; want welcome", fs, err)
	}
	// From here on mute never reads, until the edge has given up on it.
	if n := scrape(t, addr, gauge); n != 2 {
		t.Fatalf("%s = %v with both clients connected, want 2", gauge, n)
	}

	within := ping + pong + margin
	for scrape(t, addr, gauge) != 1 {
		if time.Since(start) > within {
			t.Fatalf("half-open connection still open %v after it was accepted (%s = %v); want it closed within ping %v + pong timeout %v (+%v margin)",
				time.Since(start), gauge, scrape(t, addr, gauge), ping, pong, margin)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("half-open connection closed %v after it was accepted", time.Since(start))

	// The socket is really gone, not just uncounted: reading now drains at
	// most a close frame and then fails.
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _, err := mute.Read(rctx)
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("mute read after the edge gave up = %v; want the connection closed", err)
	}

	// The well-behaved client was pinged all along (it connected first)
	// and is still served.
	if err := good.Err(); err != nil {
		t.Fatalf("good client disconnected: %v", err)
	}
	if _, err := good.Send(ctxT(t, 10*time.Second), "room-h", "g-1", "still here"); err != nil {
		t.Fatalf("good client send: %v", err)
	}
	if msgs := collectMsgs(t, good, "room-h", 1, 5*time.Second); string(msgs[0].Body) != body("still here") {
		t.Fatalf("good client got %s, want %s", msgs[0].Body, body("still here"))
	}
	if n := scrape(t, addr, gauge); n != 1 {
		t.Fatalf("%s = %v after the half-open one closed, want 1 (the good client)", gauge, n)
	}
}
