package rollup

import (
	"fmt"
	"testing"
	"time"

	pb "github.com/causeway/causeway/schemas/causewaypb"
	"google.golang.org/protobuf/proto"
)

func enc(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type feed struct {
	t *testing.T
	s *State
}

func (f feed) join(g, user string, seq uint64, ts int64) {
	f.s.Apply(g+"\x00m\x00"+user, enc(f.t, &pb.Membership{JoinedSeq: seq}), ts)
}

func (f feed) read(g, user string, joined, upTo uint64, ts int64) {
	f.s.Apply(g+"\x00m\x00"+user, enc(f.t, &pb.Membership{JoinedSeq: joined, ReadSeq: upTo, ReadTsMs: ts}), ts)
}

func (f feed) msg(g, from string, seq uint64, members uint32, ts int64) {
	ev := &pb.Event{Group: g, Seq: seq, TsMs: ts, Members: members, Kind: &pb.Event_Msg{Msg: &pb.Message{From: from}}}
	f.s.Apply(fmt.Sprintf("%s\x00h\x00%020d", g, seq), enc(f.t, ev), ts)
}

func counts(sums []Summary, g string) map[uint64]uint32 {
	out := map[uint64]uint32{}
	for _, s := range sums {
		if s.Group == g {
			for _, r := range s.Receipt.GetReads() {
				out[r.GetSeq()] = r.GetCount()
			}
		}
	}
	return out
}

// Watermarks become per-message counts: the sender and members who
// joined after a message do not count; the order of the changelog records
// within a batch does not matter; summaries are coalesced per window.
func TestCounting(t *testing.T) {
	t.Parallel()
	s := NewState(Limits{Window: 500 * time.Millisecond})
	f := feed{t, s}
	f.join("g", "ann", 1, 1000)
	f.join("g", "ben", 2, 1000)
	f.msg("g", "ann", 3, 2, 1100)
	f.msg("g", "ben", 4, 2, 1200)
	// cid joins after both messages.
	f.join("g", "cid", 5, 1300)
	// ben reads up to 4 before the rollup has seen message 4's entry: the
	// watermark counts messages that arrive later too.
	f.read("g", "ben", 2, 4, 1400)
	f.read("g", "cid", 5, 5, 1450)
	f.read("g", "ann", 1, 4, 1500)
	sums := s.Flush(1500)
	got := counts(sums, "g")
	if got[3] != 1 || got[4] != 1 || len(got) != 2 {
		t.Fatalf("counts %v, want seq 3 read by ben and seq 4 by ann", got)
	}
	if sums[0].Receipt.GetMembers() != 3 || sums[0].Receipt.GetLevel() != 0 {
		t.Fatalf("summary %v", sums[0].Receipt)
	}
	// Within the window nothing more goes out; the next change waits.
	f.msg("g", "cid", 6, 3, 1600)
	f.read("g", "ann", 1, 6, 1700)
	if sums := s.Flush(1800); len(sums) != 0 {
		t.Fatalf("summary inside the window: %v", sums)
	}
	if got := counts(s.Flush(2000), "g"); got[6] != 1 || len(got) != 1 {
		t.Fatalf("next window: %v", got)
	}
	// A redelivered record changes nothing.
	f.read("g", "ann", 1, 6, 1700)
	f.msg("g", "cid", 6, 3, 1600)
	if sums := s.Flush(5000); len(sums) != 0 {
		t.Fatalf("redelivery produced %v", sums)
	}
}

// Bigger groups get slower summaries, and the biggest only the senders'
// own counts (the sequencer routes level 2 per sender).
func TestLevels(t *testing.T) {
	t.Parallel()
	s := NewState(Limits{Window: 500 * time.Millisecond, CountsOnlyAbove: 3, SenderOnlyAbove: 5, SlowFactor: 4})
	if s.Level(3) != 0 || s.Level(4) != 1 || s.Level(6) != 2 {
		t.Fatalf("levels %d %d %d", s.Level(3), s.Level(4), s.Level(6))
	}
	f := feed{t, s}
	for i := range 4 {
		f.join("g", fmt.Sprint("u", i), uint64(i+1), 0)
	}
	f.msg("g", "u0", 5, 4, 100)
	f.read("g", "u1", 2, 5, 200)
	if sums := s.Flush(2000); len(sums) != 1 || sums[0].Receipt.GetLevel() != 1 {
		t.Fatalf("level 1 summary: %v", sums)
	}
	f.read("g", "u2", 3, 5, 2100)
	if sums := s.Flush(2100 + 1000); len(sums) != 0 {
		t.Fatalf("level 1 emitted after 1 window: %v", sums)
	}
	if sums := s.Flush(2000 + 2000); len(sums) != 1 {
		t.Fatalf("level 1 after 4 windows: %v", sums)
	}
}

// The state survives a failover exactly: counts, watermarks and the
// summaries still owed.
func TestRestore(t *testing.T) {
	t.Parallel()
	s := NewState(Limits{Window: time.Second})
	f := feed{t, s}
	f.join("g", "ann", 1, 0)
	f.join("g", "ben", 2, 0)
	f.msg("g", "ann", 3, 2, 100)
	f.read("g", "ben", 2, 3, 200) // owed, not yet flushed
	r := NewState(Limits{Window: time.Second})
	for _, w := range s.TakeWrites() {
		if !r.Restore(w.Key, w.Value) {
			t.Fatalf("restore %q", w.Key)
		}
	}
	r.FinishRestore()
	if got := counts(r.Flush(10_000), "g"); got[3] != 1 {
		t.Fatalf("restored state owes %v, want seq 3 read once", got)
	}
	// ben's watermark came back: reading up to 3 again counts nothing.
	g := feed{t, r}
	g.read("g", "ben", 2, 3, 300)
	if sums := r.Flush(20_000); len(sums) != 0 {
		t.Fatalf("double count after restore: %v", sums)
	}
	rows := r.TakeReceiptRows()
	_ = rows
}
