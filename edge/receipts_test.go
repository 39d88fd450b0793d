package edge_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/causeway/causeway/edge/client"
)

// Read watermarks: validated, synced to the user's other sessions, carried
// by subscribed; the rollup turns them into receipt counts that exclude
// the sender and members who joined later.
func TestReadReceipts(t *testing.T) {
	cl := startCluster(t, 2, nil)
	ctx := ctxT(t, 30*time.Second)
	ann := dial(t, cl.URL(0), "ann", "room-*")
	joinSub(t, ann, "room-r")
	phone := dial(t, cl.URL(0), "ben", "room-*")
	joinSub(t, phone, "room-r")
	laptop := dial(t, cl.URL(1), "ben", "room-*")
	if _, err := laptop.Subscribe(ctx, "room-r", nil); err != nil {
		t.Fatal(err)
	}
	var last uint64
	for i := range 3 {
		seq, err := ann.Send(ctx, "room-r", fmt.Sprint("m", i), "hi")
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	// A late joiner does not count toward the earlier messages.
	cid := dial(t, cl.URL(1), "cid", "room-*")
	joinSub(t, cid, "room-r")

	if err := phone.Read(ctx, "room-r", last+5); !isCode(err, "bad_request") {
		t.Fatalf("read beyond the latest seq: %v, want bad_request", err)
	}
	eve := dial(t, cl.URL(0), "eve", "room-*")
	if err := eve.Read(ctx, "room-r", 1); !isCode(err, "not_member") {
		t.Fatalf("read by a non-member: %v, want not_member", err)
	}
	if err := phone.Read(ctx, "room-r", last-1); err != nil {
		t.Fatal(err)
	}
	if err := cid.Read(ctx, "room-r", last); err != nil {
		t.Fatal(err)
	}
	// The laptop's badge clears.
	if f := next(t, laptop, 10*time.Second, "read"); f.Group != "room-r" || f.Seq != last-1 {
		t.Fatalf("laptop got %s", f.Raw)
	}
	// ann sees ben's read of her first two messages, counted once, and
	// nothing from cid.
	want := map[uint64]uint32{last - 2: 1, last - 1: 1}
	got := map[uint64]uint32{}
	deadline := time.After(10 * time.Second)
	for len(got) < len(want) || got[last-2] != 1 || got[last-1] != 1 {
		select {
		case f := <-ann.Events():
			if f.Type != "receipts" {
				continue
			}
			var r struct {
				Members int
				Reads   []struct{ Seq, Count uint64 }
			}
			if err := jsonUnmarshal(f.Raw, &r); err != nil {
				t.Fatal(err)
			}
			if r.Members != 3 {
				t.Fatalf("receipts for %d members, want 3: %s", r.Members, f.Raw)
			}
			for _, x := range r.Reads {
				got[x.Seq] = uint32(x.Count)
			}
		case <-deadline:
			t.Fatalf("receipts %v, want %v", got, want)
		}
	}
	if got[last] != 0 {
		t.Fatalf("the last message counted %d reads (cid joined after it, ben did not reach it)", got[last])
	}
	// A new session of ben's is told its watermark: unread = seq - read_seq.
	tablet := dial(t, cl.URL(1), "ben", "room-*")
	sub, err := tablet.Subscribe(ctx, "room-r", nil)
	if err != nil {
		t.Fatal(err)
	}
	if sub.ReadSeq != last-1 {
		t.Fatalf("subscribed read_seq %d, want %d", sub.ReadSeq, last-1)
	}
	// Watermarks only move forward: an older read is a no-op.
	if err := phone.Read(ctx, "room-r", 1); err != nil {
		t.Fatal(err)
	}
	if sub, _ := tablet.Subscribe(ctx, "room-r", nil); sub.ReadSeq != last-1 {
		t.Fatalf("read_seq moved back to %d", sub.ReadSeq)
	}
}

// The chattiness budget: 200 members on 2 edges each read all of 20
// messages. Naive receipts would be 200*199*20 frames; coalesced summaries
// must be linear (at most members x windows elapsed) and 100x fewer.
func TestReceiptsChattiness(t *testing.T) {
	const members, msgs = 200, 20
	cl := startCluster(t, 2, nil)
	ctx := ctxT(t, 120*time.Second)
	clients := make([]*client.Client, members)
	var frames atomic.Int64
	var wg sync.WaitGroup
	for i := range clients {
		c := dial(t, cl.URL(i%2), fmt.Sprint("u", i), "room-*")
		clients[i] = c
		if err := c.Join(ctx, "room-big"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Subscribe(ctx, "room-big", nil); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	var lastSeq uint64
	for i := range msgs {
		seq, err := clients[i%members].Send(ctx, "room-big", fmt.Sprint("m", i), "hello")
		if err != nil {
			t.Fatal(err)
		}
		lastSeq = seq
	}
	// Everyone reads everything (each read is one frame in; what matters
	// is the receipts frames out).
	done := make(chan struct{})
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case f, ok := <-c.Events():
					if !ok {
						return
					}
					if f.Type == "receipts" {
						frames.Add(1)
					}
				case <-done:
					return
				}
			}
		}()
	}
	for _, c := range clients {
		if err := c.Read(ctx, "room-big", lastSeq); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until the last message's count reaches everyone but its sender
	// (seen by the first client), then a little more for stragglers.
	time.Sleep(6 * time.Second)
	close(done)
	wg.Wait()
	elapsed := time.Since(start)
	windows := int64(elapsed/(500*time.Millisecond)) + 1
	naive := int64(members * (members - 1) * msgs)
	n := frames.Load()
	t.Logf("receipts frames %d for %d members x %d messages in %s (%d windows): naive %d, ratio %.0fx",
		n, members, msgs, elapsed.Round(time.Millisecond), windows, naive, float64(naive)/float64(max(n, 1)))
	if n == 0 {
		t.Fatal("no receipts at all")
	}
	if n > members*windows {
		t.Fatalf("%d receipts frames > members x windows = %d: not linear", n, members*windows)
	}
	if n*100 > naive {
		t.Fatalf("%d receipts frames: not 100x below naive %d", n, naive)
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
