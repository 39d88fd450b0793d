// Package wsock writes WebSocket data frames on a server's connection
// without waiting, beside coder/websocket's own (blocking) writes.
//
// A fan-out that wakes a writer goroutine per recipient puts all of them
// in the Go run queue at once, ahead of whatever else the process must
// do next (issue 8: a 100-recipient burst delayed every Kafka round trip
// of the sequencer's next transaction). With TryWrite the fan-out writes
// each recipient's frame from its own goroutine, and only a connection
// whose socket is full needs a writer goroutine, which may block.
//
// Wrap the hijacked connection and hand the wrapper to coder/websocket
// (it writes control frames through Conn.Write); write data frames with
// TryWrite or WriteFrame, framed by AppendTextFrame, never with the
// library's Write: every write on the wire is then a whole frame, and the
// Conn's lock keeps frames whole and in order.
package wsock

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
)

// Conn is a server's connection under coder/websocket. A non-blocking
// write that got only part of a frame out keeps the rest in pending,
// which goes out before anything else.
type Conn struct {
	net.Conn
	rc      syscall.RawConn // nil: no raw access (TLS): TryWrite declines
	mu      sync.Mutex
	pending []byte
	// closing: no data frame may follow the close frame (SetClosing).
	closing atomic.Bool
}

// Wrap wraps a hijacked connection. TryWrite needs raw access to its
// socket (a *net.TCPConn, a *net.UnixConn); on anything else (TLS) it
// always declines and data frames go through WriteFrame.
func Wrap(nc net.Conn) *Conn {
	s := &Conn{Conn: nc}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			s.rc = rc
		}
	}
	return s
}

// ErrWouldBlock: TryWrite wrote nothing because the socket was busy with
// another write or its send buffer was full.
var ErrWouldBlock = errors.New("socket busy")

// ErrClosing: a data frame after SetClosing (the close frame).
var ErrClosing = errors.New("connection closing")

// Write is the library's path (control frames); it waits for the socket.
func (s *Conn) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flushPendingLocked(); err != nil {
		return 0, err
	}
	return s.Conn.Write(p)
}

// WriteFrame writes one whole data frame, waiting for the socket (the
// caller bounds the wait: closing the connection ends it).
func (s *Conn) WriteFrame(frame []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return ErrClosing
	}
	if err := s.flushPendingLocked(); err != nil {
		return err
	}
	_, err := s.Conn.Write(frame)
	return err
}

// FlushPending writes the rest of a frame TryWrite could not finish,
// waiting for the socket.
func (s *Conn) FlushPending() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushPendingLocked()
}

// HasPending reports whether part of a frame waits for FlushPending.
func (s *Conn) HasPending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending) > 0
}

func (s *Conn) flushPendingLocked() error {
	if len(s.pending) == 0 {
		return nil
	}
	_, err := s.Conn.Write(s.pending)
	s.pending = nil
	return err
}

// CanTry reports whether TryWrite can ever write (raw socket access).
func (s *Conn) CanTry() bool { return s.rc != nil }

// SetClosing refuses data frames from now on: call it before writing the
// close frame, which no data frame may follow.
func (s *Conn) SetClosing() { s.closing.Store(true) }

// TryWrite writes one whole data frame without waiting. complete reports
// that all of it is on the socket; otherwise either nothing was written
// (ErrWouldBlock: the caller keeps the frame for the blocking path) or
// the rest is pending and must be flushed (FlushPending) before the
// connection is idle.
func (s *Conn) TryWrite(frame []byte) (complete bool, err error) {
	if s.rc == nil || !s.mu.TryLock() {
		return false, ErrWouldBlock
	}
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false, ErrClosing
	}
	if len(s.pending) > 0 {
		return false, ErrWouldBlock
	}
	var n int
	var werr error
	if err := s.rc.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), frame)
		return true // one attempt: never wait for the socket here
	}); err != nil {
		return false, err
	}
	switch {
	case werr == syscall.EAGAIN || werr == syscall.EINTR || n <= 0 && werr == nil:
		return false, ErrWouldBlock
	case werr != nil:
		return false, werr
	case n < len(frame):
		s.pending = bytes.Clone(frame[n:])
		return false, nil
	}
	return true, nil
}

// AppendTextFrame appends one unmasked, final text frame holding the
// frames joined by newlines (NDJSON), as a server sends it (RFC 6455 5.2).
func AppendTextFrame(dst []byte, frames [][]byte) []byte {
	n := len(frames) - 1
	for _, f := range frames {
		n += len(f)
	}
	const finText = 0x80 | 0x1
	switch {
	case n < 126:
		dst = append(dst, finText, byte(n))
	case n <= 0xffff:
		dst = append(dst, finText, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, finText, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	for i, f := range frames {
		if i > 0 {
			dst = append(dst, '\n')
		}
		dst = append(dst, f...)
	}
	return dst
}

// Tap is a ResponseWriter for websocket.Accept whose hijack wraps the
// connection: after Accept, Conn is the wrapper the library writes
// through.
type Tap struct {
	http.ResponseWriter
	Conn *Conn
}

// Hijack implements http.Hijacker.
func (t *Tap) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(t.ResponseWriter).Hijack()
	if err != nil {
		return nc, brw, err
	}
	t.Conn = Wrap(nc)
	brw.Writer.Reset(t.Conn)
	return t.Conn, brw, nil
}
