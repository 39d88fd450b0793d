package sequencer

import (
	"testing"
	"time"

	pb "github.com/causeway/causeway/schemas/causewaypb"
)

func sig(to, from, fromSess, edge, call, kind, toSess string, ts int64) *pb.GroupEvent {
	e := ev("", "u:"+to, from, fromSess, edge, "r")
	e.TsMs = ts
	e.Kind = &pb.GroupEvent_Signal{Signal: &pb.Signal{Call: call, Kind: kind, ToSession: toSess, TtlMs: 30_000}}
	return e
}

func attachStream(user, sess, edge string, ts int64, resume string) *pb.GroupEvent {
	e := ev("", "u:"+user, user, sess, edge, "")
	e.TsMs = ts
	e.Kind = &pb.GroupEvent_Attach{Attach: &pb.Attach{Resume: resume}}
	return e
}

// signalsTo lists the signals in out for session sess as kind/call_seq.
func signalsTo(out Output, sess string) []*pb.SignalOut {
	var got []*pb.SignalOut
	for _, d := range out.Deliveries {
		for _, s := range d.GetSessions() {
			if s == sess && d.GetEphemeral().GetSignal() != nil {
				got = append(got, d.GetEphemeral().GetSignal())
			}
		}
	}
	return got
}

func errorOf(out Output) *pb.Error {
	for _, d := range out.Deliveries {
		for _, r := range d.GetReplies() {
			if e := r.GetError(); e != nil {
				return e
			}
		}
	}
	return nil
}

// The call state (call_seq counters, buffered signals, aliases) survives
// a failover: a state restored from the changelog continues the count and
// replays the buffer; nothing is renumbered.
func TestStreamStateRestored(t *testing.T) {
	t.Parallel()
	s := NewState(testLimits(10))
	s.Apply(attachStream("bob", "b1", "e2", 1000, ""))
	for i := range 3 {
		if got := signalsTo(s.Apply(sig("bob", "alice", "a1", "e1", "c", "ice", "", 1001+int64(i))), "b1"); len(got) != 1 || got[0].GetCallSeq() != uint64(i+1) {
			t.Fatalf("signal %d: %v", i, got)
		}
	}
	s.Apply(ev("detach", "u:bob", "bob", "b1", "e2", ""))
	r := NewState(testLimits(10))
	for _, w := range s.TakeWrites() {
		if !r.Restore(w.Key, w.Value) {
			t.Fatalf("restore %q failed", w.Key)
		}
	}
	r.FinishRestore()
	// Addressed to the departed session: held for its resume, not refused.
	if out := r.Apply(sig("bob", "alice", "a1", "e1", "c", "ice", "b1", 1010)); errorOf(out) != nil {
		t.Fatalf("signal to a session that just dropped: %v", errorOf(out))
	}
	out := r.Apply(attachStream("bob", "b2", "e3", 1020, "b1"))
	got := signalsTo(out, "b2")
	if len(got) != 4 {
		t.Fatalf("resumed session got %d signals, want 4 (3 replayed + 1 held)", len(got))
	}
	for i, g := range got {
		if g.GetCallSeq() != uint64(i+1) {
			t.Fatalf("replayed call_seq %d at %d", g.GetCallSeq(), i)
		}
	}
	if got := signalsTo(r.Apply(sig("bob", "alice", "a1", "e1", "c", "ice", "b1", 1030)), "b2"); len(got) != 1 || got[0].GetCallSeq() != 5 {
		t.Fatalf("redirected signal: %v", got)
	}
}

// A signal the log reaches only after its TTL (a lagging or failed-over
// sequencer) is refused as expired and delivered to nobody; the buffer
// forgets signals past their TTL.
func TestStaleSignalNeverDelivered(t *testing.T) {
	t.Parallel()
	s := NewState(testLimits(10))
	s.Apply(attachStream("bob", "b1", "e2", 1000, ""))
	hb := heartbeat("e2", "", 100_000) // the log's clock moves on
	s.Apply(hb)
	out := s.Apply(sig("bob", "alice", "a1", "e1", "c", "offer", "", 1000))
	if e := errorOf(out); e == nil || e.GetReason() != "expired" {
		t.Fatalf("stale offer: error %v", e)
	}
	if got := signalsTo(out, "b1"); len(got) != 0 {
		t.Fatalf("stale offer delivered: %v", got)
	}
	s.Apply(sig("bob", "alice", "a1", "e1", "c2", "offer", "", 100_000))
	s.Apply(heartbeat("e2", "", 100_000+31_000))
	if got := signalsTo(s.Apply(attachStream("bob", "b9", "e2", 131_001, "")), "b9"); len(got) != 0 {
		t.Fatalf("an offer past its TTL rang a new device: %v", got)
	}
}

// Presence pushes are coalesced in the log's time: 20 flaps within one
// window cost a watcher the first change and one held-back update, which
// carries the final state.
func TestPresenceCoalescing(t *testing.T) {
	t.Parallel()
	l := testLimits(10)
	l.PresenceWindow = time.Second
	s := NewState(l)
	w := ev("", "u:bob", "alice", "a1", "e1", "")
	w.Kind = &pb.GroupEvent_PresenceWatch{PresenceWatch: &pb.PresenceWatch{}}
	s.Apply(w)
	pushes := 0
	var last *pb.PresenceOut
	count := func(out Output) {
		for _, d := range out.Deliveries {
			if p := d.GetEphemeral().GetPresence(); p != nil && len(d.GetSessions()) == 1 && d.GetSessions()[0] == "a1" {
				pushes++
				last = p
			}
		}
	}
	for i := range 20 {
		ts := int64(2000 + i*40)
		count(s.Apply(attachStream("bob", "b", "e2", ts, "")))
		d := ev("detach", "u:bob", "bob", "b", "e2", "")
		d.TsMs = ts + 20
		count(s.Apply(d))
	}
	count(s.Apply(heartbeat("e1", "", 3500))) // same incarnation as the watcher's edge
	if pushes != 2 || last.GetStatus() != "offline" {
		t.Fatalf("%d pushes, last %v; want 2 ending offline", pushes, last)
	}
}
