package replay

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/causeway/causeway/schemas"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"google.golang.org/protobuf/proto"
)

func TestParseBound(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	for in, want := range map[string]Bound{
		"":                     {},
		"1200":                 OffsetBound(1200),
		" 0 ":                  OffsetBound(0),
		"2026-01-02T15:04:05Z": TimeBound(at),
		"0:1200,3:480":         PartitionBound(map[int32]int64{0: 1200, 3: 480}),
		"7:0":                  PartitionBound(map[int32]int64{7: 0}),
	} {
		got, err := ParseBound(in)
		if err != nil || got.String() != want.String() || got.IsSet() != want.IsSet() || got.IsTime() != want.IsTime() {
			t.Errorf("ParseBound(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"-1":                   "an offset must be 0 or more",
		"yesterday":            "want an RFC 3339 time",
		"1:2:3":                `"1:2:3" is not PARTITION:OFFSET`,
		"1:x":                  "is not PARTITION:OFFSET",
		"1:5,1:6":              "partition 1 is listed twice",
		"-1:5":                 "partitions and offsets are 0 or more",
		"1969-01-01T00:00:00Z": "after 1970",
		"2026-01-02T15:04":     "want an RFC 3339 time",
	} {
		if _, err := ParseBound(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseBound(%q): %v, want an error with %q", in, err, want)
		}
	}
	b := PartitionBound(map[int32]int64{2: 9})
	if o, ok := b.offset(2); !ok || o != 9 {
		t.Errorf("offset(2) = %d, %t", o, ok)
	}
	if _, ok := b.offset(1); ok {
		t.Error("a partition not listed has an offset")
	}
	if o, ok := OffsetBound(4).offset(5); !ok || o != 4 {
		t.Errorf("an offset for all: %d, %t", o, ok)
	}
	if err := checkRange(OffsetBound(5), OffsetBound(5)); err == nil {
		t.Error("from 5 to 5 accepted")
	}
	if err := checkRange(TimeBound(at), TimeBound(at.Add(-time.Second))); err == nil {
		t.Error("a time range backwards accepted")
	}
	if err := checkRange(OffsetBound(5), TimeBound(at)); err != nil {
		t.Errorf("an offset and a time: %v", err)
	}
}

func TestProgressLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		done, total int64
		elapsed     time.Duration
		want        string
	}{
		{2500, 10000, time.Second, "x: 2,500 of 10,000 records (25.0%), 2,500 records/s, ETA 3s"},
		{0, 10000, 0, "x: 0 of 10,000 records (0.0%), 0 records/s, ETA ?"},
		{12, 10, time.Second, "x: 10 of 10 records (100.0%), 12 records/s, ETA 0s"},
		{1234567, 0, 2 * time.Second, "x: 1,234,567 records, 617,283 records/s"},
	} {
		if got := progressLine("x", tc.done, tc.total, tc.elapsed); got != tc.want {
			t.Errorf("progressLine(%d, %d, %s) = %q, want %q", tc.done, tc.total, tc.elapsed, got, tc.want)
		}
	}
	var buf bytes.Buffer
	m := NewMeter(&buf, true)
	m.Start("replay state", 100)
	m.Label("replay state, partition 3")
	m.Add(100)
	m.Stop()
	m.Stop() // a second Stop prints nothing more
	if got := buf.String(); !strings.Contains(got, "\r\033[Kreplay state, partition 3: 100 of 100 records (100.0%), ") || !strings.HasSuffix(got, "ETA 0s\n") {
		t.Errorf("meter output %q", got)
	}
	if strings.Count(buf.String(), "\n") != 1 {
		t.Errorf("meter printed %d final lines: %q", strings.Count(buf.String(), "\n"), buf.String())
	}
}

func TestCheckpoint(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "cp.json")
	cp, resumed, err := loadCheckpoint(path, "run A")
	if err != nil || resumed {
		t.Fatalf("new checkpoint: %v, resumed %t", err, resumed)
	}
	cp.part(3).Offset, cp.part(3).Done = 42, true
	if err := cp.save(); err != nil {
		t.Fatal(err)
	}
	got, resumed, err := loadCheckpoint(path, "run A")
	if err != nil || !resumed {
		t.Fatalf("reload: %v, resumed %t", err, resumed)
	}
	if pc, ok := got.has(3); !ok || pc.Offset != 42 || !pc.Done {
		t.Errorf("reloaded partition 3: %+v", pc)
	}
	if _, ok := got.has(4); ok {
		t.Error("partition 4 appeared")
	}
	if _, _, err := loadCheckpoint(path, "run B"); !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "belongs to another run") {
		t.Errorf("another run's checkpoint: %v", err)
	}
	if err := os.WriteFile(path, []byte("{nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadCheckpoint(path, "run A"); !errors.Is(err, ErrCheckpoint) {
		t.Errorf("a broken file: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	mem, _, err := loadCheckpoint("", "run A")
	if err != nil || mem.save() != nil {
		t.Errorf("in-memory checkpoint: %v", err)
	}
}

func TestCompareAndDescribe(t *testing.T) {
	t.Parallel()
	enc := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	meta := enc(&pb.GroupMeta{Version: schemas.Version, Seq: 3})
	// The same message, encoded with an explicit default field: other
	// bytes, equal value.
	metaOther := append(append([]byte(nil), meta...), 0x18, 0x00)
	rebuilt := map[string][]byte{
		"g1\x00g":              meta,
		"g1\x00m\x00bob":       enc(&pb.Membership{Version: schemas.Version, JoinedSeq: 2}),
		"g1\x00d\x00bob\x00m1": enc(&pb.Dedup{Version: schemas.Version, Seq: 3, Clock: 1}),
		"u:bob\x00p":           enc(&pb.PresenceState{Version: schemas.Version, Status: "online", Sessions: 1}),
	}
	topic := map[string][]byte{
		"g1\x00g":              metaOther,
		"g1\x00d\x00bob\x00m1": enc(&pb.Dedup{Version: schemas.Version, Seq: 4, Clock: 1}),
		"u:bob\x00p":           []byte{0xff},
		"g9\x00q\x00y":         []byte("?"), // a kind no version knows
	}
	ds := compare(5, topic, rebuilt)
	var buf bytes.Buffer
	for _, d := range ds {
		writeDiff(&buf, d)
	}
	m, x, d := countDiffs(ds)
	if m != 1 || x != 1 || d != 2 {
		t.Errorf("missing %d, extra %d, different %d; want 1, 1, 2:\n%s", m, x, d, buf.String())
	}
	want := `partition 5: "g1" dedup "bob\x00m1": different (key "g1\x00d\x00bob\x00m1")
    state topic: Dedup {"version":1,"seq":"4","clock":"1"}
    rebuilt:     Dedup {"version":1,"seq":"3","clock":"1"}
partition 5: "g1" member "bob": missing from the state topic (key "g1\x00m\x00bob")
    rebuilt:     Membership {"version":1,"joinedSeq":"2"}
partition 5: "g9" kind "q" "y": only in the state topic (key "g9\x00q\x00y")
    state topic: (unknown kind; 1 bytes: 3f)
partition 5: "u:bob" presence: different (key "u:bob\x00p")
    state topic: (does not decode as causeway.v1.PresenceState: `
	if got := buf.String(); !strings.HasPrefix(got, want) {
		t.Errorf("diff output:\n%s\nwant it to start with:\n%s", got, want)
	}
	if got := describeKey("nosep"); got != `unparsable key "nosep"` {
		t.Errorf("describeKey of a key without kind: %s", got)
	}
}
