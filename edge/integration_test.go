package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/causeway/causeway/edge/client"
	"github.com/causeway/causeway/pipeline/devcluster"
)

// Four clients on two edges post concurrently; all see one identical dense
// order, each sender's messages in the order sent, and a reply sent after
// receiving M1 is seen after M1 by every member.
func TestOrderAcrossEdges(t *testing.T) {
	cl := startCluster(t, 2, nil)
	const g = "room-order"
	users := []string{"ann", "ben", "cat", "dan"}
	clients := make([]*client.Client, len(users))
	for i, u := range users {
		clients[i] = dial(t, cl.URL(i%2), u, "room-*")
		joinSub(t, clients[i], g)
	}
	// Everyone has seen the last join before the messages start (a
	// member's own join precedes its subscription).
	for _, c := range clients[:3] {
		for {
			f := next(t, c, 10*time.Second, "member")
			if f.User == "dan" {
				break
			}
		}
	}

	const perSender = 50
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for k := 0; k < perSender; k++ {
				if _, err := c.Send(ctx, g, fmt.Sprintf("%s-%d", users[i], k), fmt.Sprintf("%s %d", users[i], k)); err != nil {
					errs <- fmt.Errorf("%s send %d: %w", users[i], k, err)
					return
				}
			}
		}()
	}

	// The causal pair: ann replies once she has seen ben's 10th message.
	streams := make([][]client.Frame, len(clients))
	var rwg sync.WaitGroup
	for i, c := range clients {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			want := len(users)*perSender + 1
			deadline := time.After(60 * time.Second)
			replied := false
			for len(streams[i]) < want {
				select {
				case f, ok := <-c.Events():
					if !ok {
						errs <- fmt.Errorf("%s: connection ended: %v", users[i], c.Err())
						return
					}
					if f.Type != "msg" {
						continue
					}
					streams[i] = append(streams[i], f)
					if i == 0 && !replied && f.ClientMsgID == "ben-9" {
						replied = true
						go func() {
							if _, err := c.Send(context.Background(), g, "ann-reply", "re: ben 9"); err != nil {
								errs <- fmt.Errorf("reply: %w", err)
							}
						}()
					}
				case <-deadline:
					errs <- fmt.Errorf("%s: got %d of %d messages", users[i], len(streams[i]), want)
					return
				}
			}
		}()
	}
	wg.Wait()
	rwg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	ref := streams[0]
	for i, s := range streams {
		// Dense seqs: the four joins are 1-4, messages follow.
		for k, f := range s {
			if want := uint64(len(users) + 1 + k); f.Seq != want {
				t.Fatalf("%s: message %d has seq %d, want %d (dense, no gaps or duplicates)", users[i], k, f.Seq, want)
			}
			if f.ClientMsgID != ref[k].ClientMsgID {
				t.Fatalf("%s sees %s at seq %d, %s sees %s: orders differ", users[i], f.ClientMsgID, f.Seq, users[0], ref[k].ClientMsgID)
			}
		}
		// Per-sender FIFO.
		last := map[string]int{}
		for _, f := range s {
			from, n, ok := strings.Cut(f.ClientMsgID, "-")
			if !ok || n == "reply" {
				continue
			}
			k, _ := strconv.Atoi(n)
			if prev, seen := last[from]; seen && k != prev+1 {
				t.Fatalf("%s: %s's message %d follows %d", users[i], from, k, prev)
			}
			last[from] = k
		}
		// Causality: ben-9 precedes ann-reply.
		pos := map[string]int{}
		for k, f := range s {
			pos[f.ClientMsgID] = k
		}
		if pos["ann-reply"] <= pos["ben-9"] {
			t.Fatalf("%s sees the reply at %d before ben-9 at %d", users[i], pos["ann-reply"], pos["ben-9"])
		}
		var b string
		if err := json.Unmarshal(s[0].Body, &b); err != nil || b == "" {
			t.Fatalf("%s: body %s not delivered intact", users[i], s[0].Body)
		}
	}
}

// A send retried with the same client_msg_id is sequenced once and the
// retry is acked with the original seq.
func TestSendDedup(t *testing.T) {
	cl := startCluster(t, 1, nil)
	a := dial(t, cl.URL(0), "ann", "room-*")
	joinSub(t, a, "room-d")
	ctx := ctxT(t, 10*time.Second)
	s1, err := a.Send(ctx, "room-d", "m-1", "once")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := a.Send(ctx, "room-d", "m-1", "once again")
	if err != nil {
		t.Fatal(err)
	}
	if s1 != s2 {
		t.Fatalf("retry acked with seq %d, original %d", s2, s1)
	}
	s3, err := a.Send(ctx, "room-d", "m-2", "next")
	if err != nil {
		t.Fatal(err)
	}
	if s3 != s1+1 {
		t.Fatalf("next seq %d, want %d", s3, s1+1)
	}
	msgs := collectMsgs(t, a, "room-d", 2, 10*time.Second)
	if msgs[0].ClientMsgID != "m-1" || msgs[1].ClientMsgID != "m-2" {
		t.Fatalf("delivered %s, %s; want m-1, m-2 once each", msgs[0].ClientMsgID, msgs[1].ClientMsgID)
	}
}

// Membership: non-members are refused, leave is sequenced and delivered,
// joins outside the token's patterns are forbidden.
func TestMembershipRules(t *testing.T) {
	cl := startCluster(t, 2, nil)
	ctx := ctxT(t, 20*time.Second)
	a := dial(t, cl.URL(0), "ann", "room-*")
	b := dial(t, cl.URL(1), "ben", "room-*", "team-*")
	joinSub(t, a, "room-m")

	var ce *client.Error
	if _, err := b.Send(ctx, "room-m", "x1", "hi"); !asCode(err, &ce, "not_member") {
		t.Fatalf("non-member send: got %v, want not_member", err)
	}
	if _, err := b.Subscribe(ctx, "room-m", nil); !asCode(err, &ce, "not_member") {
		t.Fatalf("non-member subscribe: got %v, want not_member", err)
	}
	if err := b.Leave(ctx, "room-m"); !asCode(err, &ce, "not_member") {
		t.Fatalf("non-member leave: got %v, want not_member", err)
	}
	if err := a.Join(ctx, "team-1"); !asCode(err, &ce, "forbidden") {
		t.Fatalf("join outside patterns: got %v, want forbidden", err)
	}
	if err := a.Join(ctx, "u:ben"); !asCode(err, &ce, "forbidden") {
		t.Fatalf("join of a personal stream: got %v, want forbidden", err)
	}

	joinSub(t, b, "room-m")
	if f := next(t, a, 10*time.Second, "member"); f.User != "ben" || f.Event != "joined" || f.Seq != 2 {
		t.Fatalf("ann saw %+v, want ben joined at seq 2", f)
	}
	if err := b.Leave(ctx, "room-m"); err != nil {
		t.Fatal(err)
	}
	if f := next(t, a, 10*time.Second, "member"); f.User != "ben" || f.Event != "left" || f.Seq != 3 {
		t.Fatalf("ann saw %+v, want ben left at seq 3", f)
	}
	if _, err := b.Send(ctx, "room-m", "x2", "after leave"); !asCode(err, &ce, "not_member") {
		t.Fatalf("send after leave: got %v, want not_member", err)
	}
	seq, err := a.Send(ctx, "room-m", "a1", "still here")
	if err != nil || seq != 4 {
		t.Fatalf("send after ben left: seq %d err %v, want 4", seq, err)
	}
	// Joining twice is harmless and creates no event.
	if err := a.Join(ctx, "room-m"); err != nil {
		t.Fatal(err)
	}
	seq, err = a.Send(ctx, "room-m", "a2", "again")
	if err != nil || seq != 5 {
		t.Fatalf("seq %d err %v, want 5", seq, err)
	}
}

func asCode(err error, target **client.Error, code string) bool {
	if err == nil {
		return false
	}
	ce, ok := err.(*client.Error)
	if !ok {
		return false
	}
	*target = ce
	return ce.Code == code
}

// State survives a restart of the whole cluster on the same data dir:
// members and seqs continue.
func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	run := func(want uint64) {
		cl := startCluster(t, 1, func(c *devcluster.Config) { c.Broker.DataDir = dir })
		a := dial(t, cl.URL(0), "ann", "room-*")
		ctx := ctxT(t, 20*time.Second)
		if err := a.Join(ctx, "room-p"); err != nil {
			t.Fatal(err)
		}
		seq, err := a.Send(ctx, "room-p", fmt.Sprintf("p-%d", want), "x")
		if err != nil {
			t.Fatal(err)
		}
		if seq != want {
			t.Fatalf("after restart: seq %d, want %d", seq, want)
		}
		_ = a.Close()
		if err := cl.Close(); err != nil {
			t.Fatal(err)
		}
	}
	run(2) // join is 1
	run(3) // join again is a no-op; seq continues
}

// A member that reconnects subscribes with since and gets exactly the
// events it missed, then live ones, with no gap and no duplicate at the
// seam, even while messages keep flowing.
func TestSubscribeSinceResumes(t *testing.T) {
	cl := startCluster(t, 2, nil)
	ctx := ctxT(t, 60*time.Second)
	a := dial(t, cl.URL(0), "ann", "room-*")
	joinSub(t, a, "room-h")
	b := dial(t, cl.URL(1), "ben", "room-*")
	joinSub(t, b, "room-h")
	next(t, a, 10*time.Second, "member") // ben joined: seq 2
	for i := 0; i < 5; i++ {
		if _, err := a.Send(ctx, "room-h", fmt.Sprintf("a-%d", i), i); err != nil {
			t.Fatal(err)
		}
	}
	seen := collectMsgs(t, b, "room-h", 5, 10*time.Second)
	last := seen[len(seen)-1].Seq
	_ = b.Close()

	// Ann keeps sending while Ben is away and while he resubscribes.
	stop := make(chan struct{})
	sent := make(chan int, 1)
	go func() {
		n := 0
		defer func() { sent <- n }()
		for ; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := a.Send(ctx, "room-h", fmt.Sprintf("b-%d", n), n); err != nil {
				t.Errorf("send b-%d: %v", n, err)
				return
			}
			if n == 30 {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	b2 := dial(t, cl.URL(0), "ben", "room-*")
	f, err := b2.Subscribe(ctx, "room-h", &last)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Recovered {
		t.Fatalf("subscribed %+v: want recovered", f)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	n := <-sent
	// Ben must now see b-0 .. b-(n-1), each once, seqs dense from last+1.
	got := collectMsgs(t, b2, "room-h", n, 20*time.Second)
	for i, m := range got {
		if m.Seq != last+1+uint64(i) {
			t.Fatalf("message %d has seq %d, want %d", i, m.Seq, last+1+uint64(i))
		}
		if m.ClientMsgID != fmt.Sprintf("b-%d", i) {
			t.Fatalf("message %d is %s, want b-%d", i, m.ClientMsgID, i)
		}
	}
	select {
	case f := <-b2.Events():
		if f.Type == "msg" {
			t.Fatalf("extra message %s seq %d", f.ClientMsgID, f.Seq)
		}
	case <-time.After(300 * time.Millisecond):
	}
}

// Beyond the history window, subscribe with since says recovered false.
func TestSubscribeSinceBeyondHistory(t *testing.T) {
	cl := startCluster(t, 1, func(c *devcluster.Config) { c.Sequencer.Limits.HistoryCount = 3 })
	ctx := ctxT(t, 30*time.Second)
	a := dial(t, cl.URL(0), "ann", "room-*")
	joinSub(t, a, "room-w")
	for i := 0; i < 10; i++ {
		if _, err := a.Send(ctx, "room-w", fmt.Sprintf("w-%d", i), i); err != nil {
			t.Fatal(err)
		}
	}
	b := dial(t, cl.URL(0), "ann", "room-*")
	since := uint64(2)
	f, err := b.Subscribe(ctx, "room-w", &since)
	if err != nil {
		t.Fatal(err)
	}
	if f.Recovered || f.Seq != 11 {
		t.Fatalf("subscribed %+v: want recovered false at seq 11", f)
	}
	got := collectMsgs(t, b, "room-w", 3, 10*time.Second)
	if got[0].Seq != 9 || got[2].Seq != 11 {
		t.Fatalf("replayed %d..%d, want the window 9..11", got[0].Seq, got[2].Seq)
	}
}
