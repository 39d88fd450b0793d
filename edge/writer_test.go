package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/causeway/causeway/edge/wsock"
	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// writerPair is a conn on the server side of a real WebSocket and the
// client end that reads what its writer sends.
func writerPair(t *testing.T, linger time.Duration) (*conn, *websocket.Conn) {
	t.Helper()
	srv := &Server{
		cfg:          Config{WriteTimeout: 5 * time.Second, QueueFrames: 64, QueueBytes: 1 << 20, SlowConsumerAfter: time.Second},
		log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		m:            newMetrics(prometheus.NewRegistry()),
		writerLinger: linger,
	}
	got := make(chan *conn, 1)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(context.Background())
		c := &conn{srv: srv, log: srv.log, ctx: ctx, cancel: cancel, notify: make(chan struct{}, 1)}
		// Through the edge's own hijack: data frames go through wsock.
		ws, err := websocket.Accept(hijackTap{ResponseWriter: w, c: c}, r, nil)
		if err != nil {
			cancel()
			return
		}
		c.ws = ws
		got <- c
		<-ctx.Done()
	}))
	t.Cleanup(hs.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.CloseNow() })
	return <-got, client
}

func readFrame(t *testing.T, ws *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writerRunning(c *conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writerOn
}

// waitWriter waits up to within for the writer to be running (on) or
// ended, and returns how long that took.
func waitWriter(t *testing.T, c *conn, on bool, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for writerRunning(c) != on {
		if time.Since(start) > within {
			t.Fatalf("writer running = %v after %s, want %v", !on, within, on)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

// The writer stays while frames keep coming, ends after one to two idle
// linger periods (an idle connection holds no writer goroutine), and a
// later frame starts a new one that delivers it.
func TestWriterLingersThenEnds(t *testing.T) {
	t.Parallel()
	const linger = 150 * time.Millisecond
	c, client := writerPair(t, linger)
	// Frames closer together than the linger period keep one writer.
	for i, f := range []string{"a", "b", "c", "d", "e"} {
		c.enqueue([]byte(f))
		if got := readFrame(t, client); got != f {
			t.Fatalf("frame %d = %q, want %q", i, got, f)
		}
		if !writerRunning(c) {
			t.Fatalf("writer ended while frames kept coming (after %q)", f)
		}
		time.Sleep(linger / 3)
	}
	took := waitWriter(t, c, false, 5*linger)
	if took < linger/2 {
		t.Errorf("writer ended %s after the last frame; it lingers about %s", took, linger)
	}
	c.enqueue([]byte("f"))
	if got := readFrame(t, client); got != "f" {
		t.Fatalf("frame after the writer ended = %q, want f", got)
	}
	if !writerRunning(c) {
		t.Fatal("a frame after the writer ended started no writer")
	}
}

// Closing the connection ends a waiting writer at once, not at its next
// linger check.
func TestWriterEndsOnClose(t *testing.T) {
	t.Parallel()
	c, client := writerPair(t, time.Hour)
	go func() {
		for {
			if _, _, err := client.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	c.enqueue([]byte("x"))
	waitWriter(t, c, true, time.Second)
	time.Sleep(20 * time.Millisecond) // the writer is waiting for frames
	c.closeNow()
	waitWriter(t, c, false, 2*time.Second)
	c.enqueue([]byte("y"))
	if writerRunning(c) {
		t.Fatal("a frame for a closed connection started a writer")
	}
}

// A write that blocks (the client stopped reading) closes the connection
// as a slow consumer after edge.write_timeout, not before, and at most
// about 1.5 times it later.
func TestWriterTimeout(t *testing.T) {
	t.Parallel()
	c, _ := writerPair(t, time.Hour)
	const timeout = 400 * time.Millisecond
	c.srv.cfg.WriteTimeout = timeout
	// Bounds the queue cannot reach: only the write timeout may act.
	c.srv.cfg.QueueFrames, c.srv.cfg.QueueBytes, c.srv.cfg.SlowConsumerAfter = 1<<20, 1<<30, time.Hour
	frame := []byte(strings.Repeat("z", 64<<10))
	// The client never reads: the socket buffers fill, and a write blocks.
	var blockedAt time.Time
	for deadline := time.Now().Add(20 * time.Second); blockedAt.IsZero(); {
		if time.Now().After(deadline) {
			t.Fatal("no write blocked")
		}
		for range 16 {
			c.enqueue(frame)
		}
		seq := c.writeSeq.Load()
		time.Sleep(50 * time.Millisecond)
		if seq%2 == 1 && c.writeSeq.Load() == seq {
			blockedAt = time.Now().Add(-50 * time.Millisecond)
		}
	}
	select {
	case <-c.ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a blocked write did not close the connection")
	}
	took := time.Since(blockedAt)
	if took < timeout-60*time.Millisecond {
		t.Errorf("closed %s after the write blocked; write timeout is %s", took, timeout)
	}
	if took > 3*timeout {
		t.Errorf("closed %s after the write blocked; want about 1 to 1.5 times %s", took, timeout)
	}
	if n := testutil.ToFloat64(c.srv.m.slow); n != 1 {
		t.Errorf("slow consumer disconnects = %v, want 1", n)
	}
	waitWriter(t, c, false, 2*time.Second)
	c.mu.Lock()
	wd := c.watchdog
	c.mu.Unlock()
	if wd != nil {
		t.Error("the watchdog outlived its writer")
	}
}

// A fan-out written from the consumer's goroutine (writeNow) to a client
// that stopped reading: once the socket is full writeNow declines, the
// writer takes over (and finishes a frame writeNow got only partly out),
// and when the client reads again it gets every frame, whole and in
// order.
func TestWriteNowHandsOverToWriter(t *testing.T) {
	t.Parallel()
	c, client := writerPair(t, time.Hour)
	c.srv.cfg.QueueFrames = 1 << 16
	c.srv.cfg.QueueBytes = 256 << 20
	c.srv.cfg.SlowConsumerAfter = time.Minute
	c.srv.cfg.WriteTimeout = time.Minute
	client.SetReadLimit(64 << 20) // the writer coalesces what queued
	if c.sock == nil || !c.sock.CanTry() {
		t.Fatal("no raw socket under the connection")
	}
	frame := func(i int) []byte {
		return []byte(fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("x", 16<<10)))
	}
	var scratch []byte
	n, declined := 0, -1
	// Until well past the first decline: writeNow keeps declining while
	// the writer holds the connection, and frames queue behind.
	for ; n < 8192 && (declined < 0 || n < declined+200); n++ {
		if !c.push(frame(n)) {
			t.Fatalf("frame %d not queued", n)
		}
		var done bool
		if scratch, done = c.writeNow(scratch); !done {
			if declined < 0 {
				declined = n
			}
			c.wake()
		}
	}
	if declined < 0 {
		t.Fatalf("%d frames of 16 KiB never filled the socket", n)
	}
	for i := 0; i < n; {
		msg := readFrame(t, client)
		for _, line := range strings.Split(msg, "\n") {
			if want := string(frame(i)); line != want {
				t.Fatalf("frame %d of %d (first decline at %d): got %.30q", i, n, declined, line)
			}
			i++
		}
	}
}

// Frames from the delivery consumer (writeNow) and from other goroutines
// (enqueue: acks, replies) to one connection, while the client keeps
// stalling: each source's frames arrive whole and in its order.
func TestWriteNowConcurrentOrder(t *testing.T) {
	t.Parallel()
	c, client := writerPair(t, time.Hour)
	client.SetReadLimit(64 << 20)
	c.srv.cfg.QueueFrames = 1 << 16
	c.srv.cfg.QueueBytes = 256 << 20
	c.srv.cfg.SlowConsumerAfter = time.Minute
	c.srv.cfg.WriteTimeout = time.Minute
	const n = 3000
	pad := strings.Repeat("y", 3000)
	go func() {
		var scratch []byte
		for i := range n {
			if c.push([]byte(fmt.Sprintf(`{"a":%d,"pad":"%s"}`, i, pad))) {
				var done bool
				if scratch, done = c.writeNow(scratch); !done {
					c.wake()
				}
			}
		}
	}()
	go func() {
		for i := range n {
			c.enqueue([]byte(fmt.Sprintf(`{"b":%d}`, i)))
		}
	}()
	nextA, nextB := 0, 0
	for reads := 0; nextA < n || nextB < n; reads++ {
		if reads%50 == 49 {
			time.Sleep(20 * time.Millisecond) // the socket fills meanwhile
		}
		for _, line := range strings.Split(readFrame(t, client), "\n") {
			var f struct{ A, B *int }
			if err := json.Unmarshal([]byte(line), &f); err != nil {
				t.Fatalf("torn frame %.40q: %v", line, err)
			}
			switch {
			case f.A != nil && *f.A == nextA:
				nextA++
			case f.B != nil && *f.B == nextB:
				nextB++
			default:
				t.Fatalf("frame %.30q out of order: next a %d, next b %d", line, nextA, nextB)
			}
		}
	}
}

// One write at a time per connection: writeNow declines while the writer
// holds frames, and the writer waits while writeNow holds them (writing),
// so neither overtakes the other's older frames.
func TestWriteOwnership(t *testing.T) {
	t.Parallel()
	c, client := writerPair(t, time.Hour)
	got := make(chan string, 16)
	go func() {
		for {
			_, b, err := client.Read(context.Background())
			if err != nil {
				return
			}
			got <- string(b)
		}
	}()
	quiet := func(who string) {
		t.Helper()
		select {
		case f := <-got:
			t.Fatalf("%s wrote %q while the other held the connection", who, f)
		case <-time.After(100 * time.Millisecond):
		}
	}
	hold := func(on bool) {
		c.mu.Lock()
		c.writing = on
		c.mu.Unlock()
	}

	hold(true) // as the writer does while it writes
	c.push([]byte("1"))
	if _, done := c.writeNow(nil); done {
		t.Fatal("writeNow reported done while the writer held the connection")
	}
	quiet("writeNow")
	hold(false)
	if _, done := c.writeNow(nil); !done {
		t.Fatal("writeNow declined an idle connection")
	}
	if f := <-got; f != "1" {
		t.Fatalf("got %q, want 1", f)
	}

	hold(true) // as writeNow does while it writes
	c.enqueue([]byte("2"))
	quiet("the writer")
	hold(false)
	c.poke() // writeNow's caller wakes the writer when it is done
	select {
	case f := <-got:
		if f != "2" {
			t.Fatalf("got %q, want 2", f)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the writer never wrote the frame")
	}
}

// A client that stopped reading is cut off by the queue policy although
// the consumer keeps trying writeNow on it: a write that did not happen
// does not count as draining the queue.
func TestWriteNowSlowConsumer(t *testing.T) {
	t.Parallel()
	c, _ := writerPair(t, time.Hour)
	c.srv.cfg.QueueFrames = 16
	c.srv.cfg.QueueBytes = 256 << 20
	c.srv.cfg.SlowConsumerAfter = 200 * time.Millisecond
	c.srv.cfg.WriteTimeout = time.Minute // the queue policy, not the watchdog
	frame := []byte(`{"pad":"` + strings.Repeat("z", 16<<10) + `"}`)
	var scratch []byte
	deadline := time.Now().Add(20 * time.Second)
	closed := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.closed
	}
	for !closed() {
		if time.Now().After(deadline) {
			t.Fatal("a client that reads nothing was never cut off")
		}
		if c.push(frame) {
			var done bool
			if scratch, done = c.writeNow(scratch); !done {
				c.wake()
			}
		}
		time.Sleep(time.Millisecond)
	}
	if got := testutil.ToFloat64(c.srv.m.slow); got != 1 {
		t.Fatalf("slow consumer disconnects = %v, want 1", got)
	}
}

// A fan-out split across goroutines (over flushPart connections) still
// visits every connection exactly once.
func TestFlusherVisitsEveryConnection(t *testing.T) {
	t.Parallel()
	srv := &Server{m: newMetrics(prometheus.NewRegistry())}
	touched := map[*conn]struct{}{}
	// Closed connections: writeNow declines and wake only pokes, so each
	// visit leaves one token in notify.
	for range 4*flushPart + 7 {
		// Room for two tokens: a second visit would show.
		c := &conn{srv: srv, ctx: context.Background(), notify: make(chan struct{}, 2), closed: true}
		touched[c] = struct{}{}
	}
	f := flusher{procs: 4} // 4 parts, whatever the machine
	for round := range 2 {
		f.flush(touched)
		for c := range touched {
			if n := len(c.notify); n != 1 {
				t.Fatalf("round %d: a connection was visited %d times", round, n)
			}
			<-c.notify
		}
	}
	if len(f.conns) != 0 {
		t.Fatalf("flusher kept %d connections", len(f.conns))
	}
}

// A writer does not end while part of a frame waits in the socket's
// pending bytes (left by writeNow on a full socket, its wake-up taken by
// a writer about to end): it finishes the frame at its next linger check.
func TestWriterFinishesPendingFrame(t *testing.T) {
	t.Parallel()
	const linger = time.Second
	c, client := writerPair(t, linger)
	client.SetReadLimit(1 << 20)
	c.enqueue([]byte("x")) // starts the writer
	if got := readFrame(t, client); got != "x" {
		t.Fatalf("got %q", got)
	}
	// Past the first linger check: the next one finds nothing written
	// since, and ends the writer unless a frame is pending.
	time.Sleep(linger * 3 / 2)
	body := func(i int) string { return fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("q", 16<<10)) }
	n, read := 0, 0
	for {
		if n > 1<<14 {
			t.Fatal("the socket never filled")
		}
		done, err := c.sock.TryWrite(wsock.AppendTextFrame(nil, [][]byte{[]byte(body(n))}))
		if errors.Is(err, wsock.ErrWouldBlock) {
			// Refused whole: read one to make room for a partial write.
			if got := readFrame(t, client); got != body(read) {
				t.Fatalf("frame %d: %.30q", read, got)
			}
			read++
			continue
		}
		if err != nil {
			t.Fatalf("frame %d: %v", n, err)
		}
		n++
		if !done {
			break // partly written: the rest is pending
		}
	}
	// No wake: the writer's linger check is all that finishes the frame.
	for i := read; i < n; i++ {
		if got := readFrame(t, client); got != body(i) {
			t.Fatalf("frame %d of %d: %.30q", i, n, got)
		}
	}
}
