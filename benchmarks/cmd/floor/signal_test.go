package main

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
)

// dial connects user to the floor behind srv with the Go client the
// benchmarks use (the floor reads the token's sub without checking it).
func dial(t *testing.T, ctx context.Context, srv *httptest.Server, user string) *client.Client {
	t.Helper()
	tok, err := edge.Mint([]byte("any-secret-the-floor-does-not-check"), user, []string{"*"}, time.Hour, time.Now())
	if err != nil {
		t.Fatalf("mint token for %s: %v", user, err)
	}
	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/v1/ws", tok, &client.Options{PingInterval: -1})
	if err != nil {
		t.Fatalf("dial %s: %v", user, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// next is the next event of c, failing after a second.
func next(t *testing.T, c *client.Client) client.Frame {
	t.Helper()
	select {
	case f := <-c.Events():
		return f
	case <-time.After(time.Second):
		t.Fatalf("%s: no frame within 1s", c.User())
		return client.Frame{}
	}
}

func TestSignalRelay(t *testing.T) {
	srv := httptest.NewServer(newServer().handler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	alice, bob := dial(t, ctx, srv, "alice"), dial(t, ctx, srv, "bob")
	bob2 := dial(t, ctx, srv, "bob") // a second device: an untargeted offer rings both

	if err := alice.Signal(ctx, "bob", "", "call-1", "offer", map[string]string{"sdp": "v=0"}); err != nil {
		t.Fatalf("offer: %v", err)
	}
	for _, b := range []*client.Client{bob, bob2} {
		f := next(t, b)
		if f.Type != "signal" || f.Kind != "offer" || f.Call != "call-1" || f.CallSeq != 1 || f.From != "alice" ||
			f.FromSession != alice.Session() || string(f.Payload) != `{"sdp":"v=0"}` {
			t.Fatalf("%s got %s, want the offer from alice's session %s with call_seq 1 and the payload", b.Session(), f.Raw, alice.Session())
		}
	}

	// The answer goes to the caller's session only; call_seq counts per
	// sender and call.
	if err := bob.Signal(ctx, "alice", alice.Session(), "call-1", "answer", nil); err != nil {
		t.Fatalf("answer: %v", err)
	}
	if f := next(t, alice); f.Kind != "answer" || f.From != "bob" || f.FromSession != bob.Session() || f.CallSeq != 1 {
		t.Fatalf("alice got %s, want bob's answer with call_seq 1", f.Raw)
	}
	if err := alice.Signal(ctx, "bob", bob.Session(), "call-1", "bye", nil); err != nil {
		t.Fatalf("bye: %v", err)
	}
	if f := next(t, bob); f.Kind != "bye" || f.CallSeq != 2 {
		t.Fatalf("bob got %s, want alice's bye with call_seq 2", f.Raw)
	}
	select {
	case f := <-bob2.Events():
		t.Fatalf("bob's other session got %s; the bye was for %s only", f.Raw, bob.Session())
	case <-time.After(100 * time.Millisecond):
	}

	// Nobody there: unavailable/offline, as the edge answers.
	for _, to := range [][2]string{{"carol", ""}, {"bob", "no-such-session"}} {
		err := alice.Signal(ctx, to[0], to[1], "call-2", "offer", nil)
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code != "unavailable" || ce.Reason != "offline" {
			t.Fatalf("offer to %q session %q: got %v, want unavailable/offline", to[0], to[1], err)
		}
	}
	// A user whose last session is gone is offline again.
	_ = bob2.Close()
	_ = bob.Close()
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := alice.Signal(ctx, "bob", "", "call-3", "offer", nil)
		var ce *client.Error
		if errors.As(err, &ce) && ce.Reason == "offline" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("offer to bob after both sessions closed: got %v, want unavailable/offline", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A resubscribe with since is recovered only if nothing was missed: the
// floor has no history, and after a restart its seqs start again.
func TestSubscribeSince(t *testing.T) {
	srv := httptest.NewServer(newServer().handler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := dial(t, ctx, srv, "u")
	if _, err := c.Send(ctx, "g", "m1", "x"); err != nil {
		t.Fatalf("send: %v", err)
	}
	for _, tc := range []struct {
		since     *uint64
		recovered bool
	}{{nil, true}, {ptr(1), true}, {ptr(0), false}, {ptr(7), false}} {
		f, err := c.Subscribe(ctx, "g", tc.since)
		if err != nil {
			t.Fatalf("subscribe since %v: %v", tc.since, err)
		}
		if f.Recovered != tc.recovered || f.Seq != 1 {
			t.Fatalf("subscribe since %v: got %s, want seq 1 recovered %v", tc.since, f.Raw, tc.recovered)
		}
		if err := c.Unsubscribe(ctx, "g"); err != nil {
			t.Fatalf("unsubscribe: %v", err)
		}
	}
}

func ptr(v uint64) *uint64 { return &v }
