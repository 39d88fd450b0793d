package wsock_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/causeway/causeway/edge/wsock"
	"github.com/coder/websocket"
)

// serve starts a server whose handler gets each accepted connection, and
// dials it; the client reads nothing until the test does.
func serve(t *testing.T, handle func(ws *websocket.Conn, s *wsock.Conn)) *websocket.Conn {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tap := &wsock.Tap{ResponseWriter: w}
		ws, err := websocket.Accept(tap, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		handle(ws, tap.Conn)
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

// body is message i of a test: n bytes with i in them, so a lost, torn
// or reordered message shows.
func body(i, n int) []byte {
	b := bytes.Repeat([]byte{'a' + byte(i%26)}, n)
	copy(b, fmt.Sprintf("%d:", i))
	return b
}

func readText(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("message type %v, want text", typ)
	}
	return string(b)
}

// The library reads what AppendTextFrame frames, at every length
// encoding (7-bit, 16-bit, 64-bit), and frames joined as NDJSON.
func TestFramesReadByLibrary(t *testing.T) {
	sizes := []int{3, 125, 126, 127, 65535, 65536, 200000}
	c := serve(t, func(_ *websocket.Conn, s *wsock.Conn) {
		var buf []byte
		for i, n := range sizes {
			buf = wsock.AppendTextFrame(buf[:0], [][]byte{body(i, n)})
			if err := s.WriteFrame(buf); err != nil {
				t.Errorf("write %d: %v", n, err)
			}
		}
		buf = wsock.AppendTextFrame(buf[:0], [][]byte{[]byte(`{"a":1}`), []byte(`{"b":2}`), []byte(`{"c":3}`)})
		if done, err := s.TryWrite(buf); !done || err != nil {
			t.Errorf("TryWrite on an empty socket: complete %v, err %v", done, err)
		}
	})
	for i, n := range sizes {
		if got := readText(t, c); got != string(body(i, n)) {
			t.Fatalf("message %d (%d bytes): got %d bytes %.20q", i, n, len(got), got)
		}
	}
	if got := readText(t, c); got != "{\"a\":1}\n{\"b\":2}\n{\"c\":3}" {
		t.Fatalf("NDJSON message: %q", got)
	}
}

func TestFrameHeader(t *testing.T) {
	for _, tc := range []struct {
		n    int
		head []byte
	}{
		{0, []byte{0x81, 0}},
		{125, []byte{0x81, 125}},
		{126, []byte{0x81, 126, 0, 126}},
		{65535, []byte{0x81, 126, 0xff, 0xff}},
		{65536, []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	} {
		f := wsock.AppendTextFrame([]byte("x"), [][]byte{make([]byte, tc.n)})
		if !bytes.Equal(f[1:1+len(tc.head)], tc.head) || len(f) != 1+len(tc.head)+tc.n {
			t.Errorf("%d bytes: header % x, length %d", tc.n, f[1:1+len(tc.head)], len(f))
		}
	}
	// Two frames of 2 bytes and a newline: 5 bytes of payload.
	if f := wsock.AppendTextFrame(nil, [][]byte{[]byte("ab"), []byte("cd")}); string(f) != "\x81\x05ab\ncd" {
		t.Errorf("joined: %q", f)
	}
}

// A client that stops reading fills the socket: TryWrite then declines
// without waiting, or writes part of a frame and keeps the rest, which
// goes out first once the client reads again. Nothing is lost, torn or
// reordered.
func TestTryWriteFullSocket(t *testing.T) {
	const size = 16 << 10
	written := make(chan int, 1)
	resume := make(chan struct{})
	c := serve(t, func(_ *websocket.Conn, s *wsock.Conn) {
		var buf []byte
		n := 0
		for ; n < 1<<14; n++ {
			buf = wsock.AppendTextFrame(buf[:0], [][]byte{body(n, size)})
			done, err := s.TryWrite(buf)
			if errors.Is(err, wsock.ErrWouldBlock) {
				break
			}
			if err != nil {
				t.Errorf("TryWrite: %v", err)
				return
			}
			if !done {
				n++ // part of it is out: the rest is pending
				if !s.HasPending() {
					t.Error("partial write without pending bytes")
				}
				if _, err := s.TryWrite(buf); !errors.Is(err, wsock.ErrWouldBlock) {
					t.Errorf("TryWrite with bytes pending: %v, want ErrWouldBlock", err)
				}
				break
			}
		}
		written <- n
		<-resume
		if err := s.FlushPending(); err != nil {
			t.Errorf("FlushPending: %v", err)
		}
		if s.HasPending() {
			t.Error("pending bytes after FlushPending")
		}
		buf = wsock.AppendTextFrame(buf[:0], [][]byte{body(n, size)})
		if err := s.WriteFrame(buf); err != nil {
			t.Errorf("WriteFrame: %v", err)
		}
	})
	var n int
	select {
	case n = <-written:
	case <-time.After(20 * time.Second):
		t.Fatal("TryWrite never declined: it waited for the socket")
	}
	if n >= 1<<14 {
		t.Fatalf("%d frames of %d bytes never filled the socket", n, size)
	}
	close(resume)
	for i := 0; i <= n; i++ {
		if got := readText(t, c); got != string(body(i, size)) {
			t.Fatalf("message %d of %d: got %.20q", i, n+1, got)
		}
	}
}

// Data frames and the library's control frames share the socket: pings
// (answered by the client's reader) interleave with data, whole.
func TestControlFramesInterleave(t *testing.T) {
	const msgs = 2000
	c := serve(t, func(ws *websocket.Conn, s *wsock.Conn) {
		var wg sync.WaitGroup
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		wg.Go(func() {
			for ctx.Err() == nil {
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				err := ws.Ping(pctx)
				pcancel()
				if err != nil && ctx.Err() == nil {
					t.Errorf("ping: %v", err)
					return
				}
			}
		})
		// The server must read for pongs to arrive.
		go func() { _, _, _ = ws.Read(context.Background()) }()
		var buf []byte
		for i := range msgs {
			buf = wsock.AppendTextFrame(buf[:0], [][]byte{body(i, 100+i%300)})
			done, err := s.TryWrite(buf)
			switch {
			case errors.Is(err, wsock.ErrWouldBlock):
				err = s.WriteFrame(buf)
			case err == nil && !done:
				err = s.FlushPending()
			}
			if err != nil {
				t.Errorf("write %d: %v", i, err)
				return
			}
		}
		cancel()
		wg.Wait()
	})
	for i := range msgs {
		if got := readText(t, c); got != string(body(i, 100+i%300)) {
			t.Fatalf("message %d: got %.20q", i, got)
		}
	}
}

// After SetClosing no data frame goes out; the close frame does.
func TestClosing(t *testing.T) {
	c := serve(t, func(ws *websocket.Conn, s *wsock.Conn) {
		s.SetClosing()
		frame := wsock.AppendTextFrame(nil, [][]byte{[]byte("late")})
		if _, err := s.TryWrite(frame); !errors.Is(err, wsock.ErrClosing) {
			t.Errorf("TryWrite after SetClosing: %v", err)
		}
		if err := s.WriteFrame(frame); !errors.Is(err, wsock.ErrClosing) {
			t.Errorf("WriteFrame after SetClosing: %v", err)
		}
		_ = ws.Close(websocket.StatusGoingAway, "bye")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("read: %v, want the close frame (going away)", err)
	}
}

// Without raw socket access (TLS, a pipe) TryWrite declines every time
// and WriteFrame still writes.
func TestNoRawAccess(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	s := wsock.Wrap(a)
	if s.CanTry() {
		t.Fatal("CanTry on a pipe")
	}
	frame := wsock.AppendTextFrame(nil, [][]byte{[]byte("hi")})
	if _, err := s.TryWrite(frame); !errors.Is(err, wsock.ErrWouldBlock) {
		t.Fatalf("TryWrite: %v", err)
	}
	go func() { _ = s.WriteFrame(frame) }()
	got := make([]byte, len(frame))
	if _, err := io.ReadFull(b, got); err != nil || !bytes.Equal(got, frame) {
		t.Fatalf("read %q, %v", got, err)
	}
}
