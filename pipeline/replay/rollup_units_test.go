package replay

import (
	"bytes"
	"strings"
	"testing"

	"github.com/causeway/causeway/consumers/rollup"
	"github.com/causeway/causeway/schemas"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
)

func enc(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// TestRollupChangelogCompare: counts, watermarks and the rest differ;
// the pending mark, read times and time-to-read samples do not.
func TestRollupChangelogCompare(t *testing.T) {
	t.Parallel()
	c := rollupChangelog()
	msg := &pb.RollupMessage{Version: schemas.Version, Seq: 4, Sender: "alice", SentTsMs: 10, MembersAtSend: 3, ReadCount: 2,
		FirstReadTsMs: 20, LastReadTsMs: 30, TtrMs: []int64{10, 20}}
	other := proto.Clone(msg).(*pb.RollupMessage)
	other.Pending, other.FirstReadTsMs, other.LastReadTsMs, other.TtrMs = true, 25, 25, []int64{15, 15}
	more := proto.Clone(msg).(*pb.RollupMessage)
	more.ReadCount = 3
	bob := &pb.RollupMember{Version: schemas.Version, JoinedSeq: 2, Watermark: 6, ReadTsMs: 40}
	bobLater := proto.Clone(bob).(*pb.RollupMember)
	bobLater.Watermark = 7
	k4, k5 := "g\x00x\x0000000000000000000004", "g\x00x\x0000000000000000000005"
	rebuilt := map[string][]byte{k4: enc(msg), k5: enc(msg), "g\x00m\x00bob": enc(bob), "g\x00m\x00carol": enc(bob)}
	topic := map[string][]byte{k4: enc(other), k5: enc(more), "g\x00m\x00bob": enc(bobLater), "g\x00q\x00?": []byte("?")}
	ds := c.compare(2, topic, rebuilt)
	var buf bytes.Buffer
	for _, d := range ds {
		writeDiff(&buf, d)
	}
	want := `partition 2: "g" member "bob": different (key "g\x00m\x00bob")
    state topic: RollupMember {"version":1,"joinedSeq":"2","watermark":"7","readTsMs":"40"}
    rebuilt:     RollupMember {"version":1,"joinedSeq":"2","watermark":"6","readTsMs":"40"}
partition 2: "g" member "carol": missing from the state topic (key "g\x00m\x00carol")
    rebuilt:     RollupMember {"version":1,"joinedSeq":"2","watermark":"6","readTsMs":"40"}
partition 2: "g" kind "q" "?": only in the state topic (key "g\x00q\x00?")
    state topic: (unknown kind; 1 bytes: 3f)
partition 2: "g" message "00000000000000000005": different (key "g\x00x\x0000000000000000000005")
    state topic: RollupMessage {"version":1,"seq":"4","sender":"alice","sentTsMs":"10","membersAtSend":3,"readCount":3,`
	if got := buf.String(); !strings.HasPrefix(got, want) || len(ds) != 4 {
		t.Errorf("%d differences:\n%s\nwant 4, starting with:\n%s", len(ds), got, want)
	}
}

// TestResumedState: a rollup restoring a state and applying the
// sequencer changelog records it has not applied yet. Records already in
// the state change nothing; a read by a member who left since is counted
// again (why --write refuses a rollup offset behind such records).
func TestResumedState(t *testing.T) {
	t.Parallel()
	l := rollup.DefaultLimits()
	ev := func(seq uint64, from string) []byte {
		return enc(&pb.Event{Group: "g", Seq: seq, TsMs: int64(seq), Members: 2, Kind: &pb.Event_Msg{Msg: &pb.Message{From: from}}})
	}
	member := func(joined, read uint64) []byte {
		return enc(&pb.Membership{Version: schemas.Version, JoinedSeq: joined, ReadSeq: read, ReadTsMs: 100})
	}
	rec := func(k string, v []byte) *kgo.Record { return &kgo.Record{Key: []byte(k), Value: v} }
	log := []*kgo.Record{
		rec("g\x00m\x00alice", member(1, 0)),
		rec("g\x00m\x00bob", member(2, 0)),
		rec("g\x00h\x00"+"3", ev(3, "alice")),
		rec("g\x00m\x00bob", member(2, 3)),
		rec("g\x00m\x00bob", nil), // bob left
	}
	// The state after the whole log, as a rollup changelogs it.
	st := rollup.NewState(l)
	keys := map[string][]byte{}
	for _, r := range log {
		st.Apply(string(r.Key), r.Value, 0)
	}
	for _, w := range st.TakeWrites() {
		if w.Value != nil {
			keys[w.Key] = w.Value
		}
	}
	c := rollupChangelog()
	if d := c.compare(0, resumedState(l, keys, nil), keys); len(d) != 0 {
		t.Errorf("nothing to apply changed %d keys", len(d))
	}
	if d := c.compare(0, resumedState(l, keys, log[2:3]), keys); len(d) != 0 {
		t.Errorf("the message again changed %d keys", len(d))
	}
	d := c.compare(0, resumedState(l, keys, log[3:]), keys)
	if len(d) != 1 || d[0].Key != "g\x00x\x0000000000000000000003" {
		t.Fatalf("bob's read and leave again: %+v, want message 3 counted twice", d)
	}
	var m pb.RollupMessage
	if err := proto.Unmarshal(d[0].Topic, &m); err != nil || m.GetReadCount() != 2 {
		t.Errorf("message 3 after bob's read again: %v, %v; want read by 2", &m, err)
	}
}
