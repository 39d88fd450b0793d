package edge_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/causeway/causeway/edge/client"
	"github.com/causeway/causeway/pipeline/devcluster"
	"github.com/coder/websocket"
	"golang.org/x/sync/errgroup"
)

// rawDial opens a WebSocket without saying hello.
func rawDial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"causeway.v1"}})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	ws.SetReadLimit(1 << 24)
	t.Cleanup(func() { _ = ws.CloseNow() })
	return ws
}

type wireFrame struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
}

// readFrames reads one WebSocket message and splits its NDJSON frames.
func readFrames(t *testing.T, ws *websocket.Conn) ([]wireFrame, error) {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	_, msg, err := ws.Read(ctx)
	if err != nil {
		return nil, err
	}
	var out []wireFrame
	for _, line := range strings.Split(string(msg), "\n") {
		var f wireFrame
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("edge sent a malformed frame %q: %v", line, err)
		}
		out = append(out, f)
	}
	return out, nil
}

func expectClose(t *testing.T, ws *websocket.Conn, code websocket.StatusCode) {
	t.Helper()
	for {
		_, err := readFrames(t, ws)
		if err != nil {
			if got := websocket.CloseStatus(err); got != code {
				t.Fatalf("connection ended with %v (status %d), want close %d", err, got, code)
			}
			return
		}
	}
}

// Frames before or instead of a valid hello get `unauthorized` and close 4401.
func TestHandshakeErrors(t *testing.T) {
	cl := startCluster(t, 1, func(c *devcluster.Config) { c.Edge.HelloTimeout = 500 * time.Millisecond })
	url := cl.URL(0)
	cases := []struct {
		name, frame string
	}{
		{"frame before hello", `{"type":"join","id":"1","group":"room-1"}`},
		{"malformed first frame", `{"type":`},
		{"hello without token", `{"type":"hello","id":"1"}`},
		{"forged token", `{"type":"hello","id":"1","token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJl"}`},
		{"alg none token", `{"type":"hello","id":"1","token":"eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5IiwiZXhwIjo5OTk5OTk5OTk5fQ."}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ws := rawDial(t, url)
			if err := ws.Write(ctxT(t, 5*time.Second), websocket.MessageText, []byte(tc.frame)); err != nil {
				t.Fatal(err)
			}
			fs, err := readFrames(t, ws)
			if err != nil {
				t.Fatalf("no error frame: %v", err)
			}
			if fs[0].Type != "error" || fs[0].Code != "unauthorized" {
				t.Fatalf("got %+v, want error unauthorized", fs[0])
			}
			expectClose(t, ws, 4401)
		})
	}
	t.Run("expired token", func(t *testing.T) {
		ws := rawDial(t, url)
		tok, err := mintExpired()
		if err != nil {
			t.Fatal(err)
		}
		_ = ws.Write(ctxT(t, 5*time.Second), websocket.MessageText, []byte(`{"type":"hello","id":"9","token":"`+tok+`"}`))
		fs, err := readFrames(t, ws)
		if err != nil || fs[0].Code != "unauthorized" || fs[0].ID != "9" {
			t.Fatalf("got %+v %v, want unauthorized echoing id 9", fs, err)
		}
		expectClose(t, ws, 4401)
	})
	t.Run("no hello at all", func(t *testing.T) {
		ws := rawDial(t, url)
		expectClose(t, ws, 4401)
	})
	t.Run("wrong subprotocol", func(t *testing.T) {
		ws, _, err := websocket.Dial(ctxT(t, 5*time.Second), url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		_, _, err = ws.Read(ctxT(t, 5*time.Second))
		if websocket.CloseStatus(err) != websocket.StatusProtocolError {
			t.Fatalf("got %v, want close 1002", err)
		}
	})
}

func mintExpired() (string, error) {
	return mintAt(time.Now().Add(-2*time.Hour), time.Hour)
}

// Every malformed frame after hello gets the documented error code, echoes
// the request id where it can, and the connection and other clients keep
// being served.
func TestBadFramesAfterHello(t *testing.T) {
	cl := startCluster(t, 1, func(c *devcluster.Config) { c.Edge.MaxBadFrames = 1000 })
	good := dial(t, cl.URL(0), "ann", "room-*")
	joinSub(t, good, "room-b")
	bad := dial(t, cl.URL(0), "mal", "room-*")
	huge := `{"type":"send","id":"big","group":"room-b","client_msg_id":"x","body":"` + strings.Repeat("a", 70<<10) + `"}`
	cases := []struct {
		frame, id, code string
	}{
		{`{"type":"join","id":"1","group":`, "", "bad_request"},
		{`not json at all`, "", "bad_request"},
		{`[1,2,3]`, "", "bad_request"},
		{`{"id":"2"}`, "2", "bad_request"},
		{`{"type":"teleport","id":"3"}`, "3", "bad_request"},
		{`{"type":5,"id":"4"}`, "4", "bad_request"},
		{`{"type":"join","id":"5"}`, "5", "bad_request"},
		{`{"type":"join","id":"6","group":7}`, "6", "bad_request"},
		{`{"type":"join","id":"7","group":"bad group!"}`, "7", "bad_request"},
		{`{"type":"leave","id":"8"}`, "8", "bad_request"},
		{`{"type":"subscribe","id":"9"}`, "9", "bad_request"},
		{`{"type":"subscribe","id":"10","group":"room-b","since":"yesterday"}`, "10", "bad_request"},
		{`{"type":"subscribe","id":"10b","group":"room-b","since":-1}`, "10b", "bad_request"},
		{`{"type":"unsubscribe","id":"11"}`, "11", "bad_request"},
		{`{"type":"send","id":"12","group":"room-b","body":"x"}`, "12", "bad_request"},
		{`{"type":"send","id":"13","group":"room-b","client_msg_id":"c"}`, "13", "bad_request"},
		{`{"type":"send","id":"14","group":"room-b","client_msg_id":5,"body":1}`, "14", "bad_request"},
		{`{"type":"read","id":"15","group":"room-b"}`, "15", "bad_request"},
		{`{"type":"typing","id":"16"}`, "16", "bad_request"},
		{`{"type":"signal","id":"17","to":"ann"}`, "17", "bad_request"},
		{`{"type":"presence","id":"18","users":"ann"}`, "18", "bad_request"},
		{`{"type":"hello","id":"19","token":"again"}`, "19", "bad_request"},
		{`{"type":"join","id":20,"group":"room-b"}`, "", "bad_request"},
		{huge, "big", "too_large"},
		// Acting on a group one is not in.
		{`{"type":"send","id":"21","group":"room-b","client_msg_id":"c1","body":"hi"}`, "21", "not_member"},
		{`{"type":"subscribe","id":"22","group":"room-b"}`, "22", "not_member"},
		{`{"type":"leave","id":"23","group":"room-b"}`, "23", "not_member"},
		{`{"type":"join","id":"24","group":"other"}`, "24", "forbidden"},
	}
	ctx := ctxT(t, 60*time.Second)
	for i, tc := range cases {
		if err := bad.WriteRaw(ctx, []byte(tc.frame)); err != nil {
			t.Fatalf("case %d: write: %v", i, err)
		}
		f := next(t, bad, 10*time.Second, "error")
		if f.Code != tc.code || f.ID != tc.id {
			t.Fatalf("case %d %.60s: got error %q id %q (%s), want %q id %q", i, tc.frame, f.Code, f.ID, f.Message, tc.code, tc.id)
		}
		if f.Message == "" {
			t.Fatalf("case %d: error without a message", i)
		}
		// The good client is still served after every bad frame.
		if i%7 == 0 {
			if _, err := good.Send(ctx, "room-b", "g"+f.ID+tc.code, "still here"); err != nil {
				t.Fatalf("good client after case %d: %v", i, err)
			}
		}
	}
	// The abusive connection itself still works for valid requests.
	joinSub(t, bad, "room-b")
	if _, err := bad.Send(ctx, "room-b", "ok-1", "fine now"); err != nil {
		t.Fatalf("valid send after bad frames: %v", err)
	}
	// Several frames in one message are each answered.
	if err := bad.WriteRaw(ctx, []byte("{\"type\":\"x\",\"id\":\"m1\"}\n\n{\"type\":\"y\",\"id\":\"m2\"}\n")); err != nil {
		t.Fatal(err)
	}
	if f := next(t, bad, 5*time.Second, "error"); f.ID != "m1" {
		t.Fatalf("got %+v, want error for m1", f)
	}
	if f := next(t, bad, 5*time.Second, "error"); f.ID != "m2" {
		t.Fatalf("got %+v, want error for m2", f)
	}
}

// Repeated bad frames close the connection with 4400; a message over the
// read limit closes it with 1009. Others are unaffected.
func TestAbuseCloses(t *testing.T) {
	cl := startCluster(t, 1, func(c *devcluster.Config) { c.Edge.MaxBadFrames = 5 })
	good := dial(t, cl.URL(0), "ann", "room-*")
	joinSub(t, good, "room-a")
	ctx := ctxT(t, 30*time.Second)

	ws := rawDial(t, cl.URL(0))
	_ = ws.Write(ctx, websocket.MessageText, []byte(`{"type":"hello","id":"h","token":"`+token(t, "mal", "room-*")+`"}`))
	if fs, err := readFrames(t, ws); err != nil || fs[0].Type != "welcome" {
		t.Fatalf("hello: %+v %v", fs, err)
	}
	_ = ws.Write(ctx, websocket.MessageText, []byte(strings.Repeat("garbage\n", 10)))
	expectClose(t, ws, 4400)

	ws2 := rawDial(t, cl.URL(0))
	_ = ws2.Write(ctx, websocket.MessageText, []byte(`{"type":"hello","id":"h","token":"`+token(t, "mal", "room-*")+`"}`))
	if _, err := readFrames(t, ws2); err != nil {
		t.Fatal(err)
	}
	_ = ws2.Write(ctx, websocket.MessageText, []byte(strings.Repeat("x", 300<<10)))
	expectClose(t, ws2, websocket.StatusMessageTooBig)

	if _, err := good.Send(ctx, "room-a", "g-1", "unaffected"); err != nil {
		t.Fatalf("good client: %v", err)
	}
	collectMsgs(t, good, "room-a", 1, 5*time.Second)
}

// A client that stops reading is disconnected once its bounded queue is
// full, and a client on the same edge keeps receiving everything.
func TestSlowConsumerDisconnected(t *testing.T) {
	cl := startCluster(t, 1, func(c *devcluster.Config) {
		c.Edge.QueueFrames = 64
		c.Edge.QueueBytes = 512 << 10
		c.Edge.SlowConsumerAfter = 500 * time.Millisecond
		c.Edge.MaxMessageBytes = 256 << 10
		c.Edge.WriteTimeout = time.Second
		// The publisher sends as fast as it can: the per-connection and
		// per-user rate limits (tested elsewhere) would refuse the burst.
		c.Edge.ConnFramesPerSec, c.Edge.ConnBytesPerSec = 0, 0
		c.Edge.UserFramesPerSec, c.Edge.UserBytesPerSec = 0, 0
	})
	ctx := ctxT(t, 60*time.Second)
	good := dial(t, cl.URL(0), "ann", "room-*")
	joinSub(t, good, "room-s")

	slow := rawDial(t, cl.URL(0))
	tok := token(t, "sloth", "room-*")
	req := `{"type":"hello","id":"h","token":"` + tok + `"}` + "\n" +
		`{"type":"join","id":"j","group":"room-s"}` + "\n" +
		`{"type":"subscribe","id":"s","group":"room-s"}`
	if err := slow.Write(ctx, websocket.MessageText, []byte(req)); err != nil {
		t.Fatal(err)
	}
	// Its join must be sequenced before the burst, or its member event
	// would sit between the messages the good client checks for density.
	for subscribed := false; !subscribed; {
		frames, err := readFrames(t, slow)
		if err != nil {
			t.Fatalf("slow client before the burst: %v", err)
		}
		for _, f := range frames {
			subscribed = subscribed || f.Type == "subscribed"
		}
	}
	// The slow client never reads again. Publish enough to overflow its
	// socket buffers and its queue; the good client must get all of it.
	const n = 1500
	payload := strings.Repeat("p", 4000)
	sender := dial(t, cl.URL(0), "pub", "room-*")
	if err := sender.Join(ctx, "room-s"); err != nil {
		t.Fatal(err)
	}
	// Sends are pipelined: the volume matters here, not the order, and a
	// busy machine's round trips would otherwise set the test's pace.
	done := make(chan error, 1)
	go func() {
		var g errgroup.Group
		g.SetLimit(16)
		for i := 0; i < n; i++ {
			g.Go(func() error {
				_, err := sender.Send(ctx, "room-s", "p-"+itoa(i), payload)
				return err
			})
		}
		done <- g.Wait()
	}()
	msgs := collectMsgs(t, good, "room-s", n, 60*time.Second)
	if err := <-done; err != nil {
		t.Fatalf("sender: %v", err)
	}
	for i := 1; i < len(msgs); i++ {
		if msgs[i].Seq != msgs[i-1].Seq+1 {
			t.Fatalf("good client saw seq %d after %d", msgs[i].Seq, msgs[i-1].Seq)
		}
	}
	// The slow client was cut off: draining what the kernel buffered ends
	// in an error, not in the full stream.
	got := 0
	var err error
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, _, err = slow.Read(rctx)
		cancel()
		if err != nil {
			break
		}
		got++
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow client still connected after %d messages", got)
	}
	if n := scrape(t, cl.Edges[0].Addr(), "causeway_edge_slow_consumer_disconnects_total"); n < 1 {
		t.Fatalf("slow consumer disconnects = %v, want >= 1", n)
	}
}

func itoa(i int) string { return strings.TrimSpace(strings.Repeat(" ", 0) + jsonNum(i)) }

func jsonNum(i int) string { b, _ := json.Marshal(i); return string(b) }

// scrape reads one counter or gauge from an edge's /metrics.
func scrape(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") {
			var v float64
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, name+" ")), &v); err == nil {
				return v
			}
		}
	}
	return 0
}

var _ = client.Frame{}
