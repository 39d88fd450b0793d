package main

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
)

// An edge SIGKILLed mid-call: its users go offline for their watchers
// within the edge timeout, so the peer learns the other side is gone; the
// callee's client resumes on another edge and, with resume, gets the
// signals the caller kept sending to its old session.
func TestEdgeKilledMidCall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := newFaultCluster(t, 1, 3) // edge timeout 3s, heartbeats every 500ms
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dial := func(i int, user string, opts *client.Options) *client.Client {
		tok, err := edge.Mint([]byte(e2eSecret), user, []string{"room-*"}, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cl, err := client.Dial(ctx, c.urls()[i], tok, opts)
		if err != nil {
			t.Fatalf("dial edge %d as %s: %v", i, user, err)
		}
		t.Cleanup(func() { _ = cl.Close() })
		return cl
	}
	presence := func(cl *client.Client, user, status string, d time.Duration) time.Time {
		t.Helper()
		deadline := time.After(d)
		for {
			select {
			case f, ok := <-cl.Events():
				if !ok {
					t.Fatalf("watcher ended: %v", cl.Err())
				}
				if f.Type == "presence" && f.User == user && f.Status == status {
					return time.Now()
				}
			case <-deadline:
				t.Fatalf("%s never became %s within %s", user, status, d)
			}
		}
	}
	alice := dial(0, "alice", nil)
	bob := dial(2, "bob", nil)
	// The default reach policy: only users sharing a group ring and
	// watch each other.
	for _, cl := range []*client.Client{alice, bob} {
		if err := cl.Join(ctx, "room-call"); err != nil {
			t.Fatalf("join: %v", err)
		}
	}
	if err := alice.Presence(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	presence(alice, "bob", "online", 10*time.Second)
	if err := alice.Signal(ctx, "bob", "", "call", "offer", nil); err != nil {
		t.Fatalf("offer: %v", err)
	}
	if err := bob.Signal(ctx, "alice", alice.Session(), "call", "answer", nil); err != nil {
		t.Fatalf("answer: %v", err)
	}
	old := bob.Session()

	killed := time.Now()
	c.signalEdge(2, syscall.SIGKILL)
	// The caller trickles candidates to bob's (dead) session meanwhile.
	for i := range 3 {
		if err := alice.Signal(ctx, "bob", old, "call", "ice", map[string]int{"i": i}); err != nil {
			t.Fatalf("ice %d to a session that just dropped: %v", i, err)
		}
	}
	off := presence(alice, "bob", "offline", 15*time.Second)
	// Edge timeout (3s) after the other edges' next beats, plus a
	// presence window (1s) and delivery.
	if took := off.Sub(killed); took > 8*time.Second {
		t.Fatalf("bob offline %s after the kill, want within the edge timeout", took)
	}
	t.Logf("bob offline %s after his edge was killed", off.Sub(killed).Round(time.Millisecond))

	bob2 := dial(1, "bob", &client.Options{Resume: old})
	presence(alice, "bob", "online", 10*time.Second)
	got := map[uint64]string{}
	deadline := time.After(10 * time.Second)
	for len(got) < 4 { // offer (1) and the 3 candidates (2..4) from alice
		select {
		case f := <-bob2.Events():
			if f.Type == "signal" && f.Call == "call" && f.From == "alice" {
				got[f.CallSeq] = f.Kind
			}
		case <-deadline:
			t.Fatalf("resumed callee got %v, want call_seq 1-4", got)
		}
	}
	for seq, kind := range map[uint64]string{1: "offer", 2: "ice", 3: "ice", 4: "ice"} {
		if got[seq] != kind {
			t.Fatalf("call_seq %d: %q, want %s (got %v)", seq, got[seq], kind, got)
		}
	}
}
