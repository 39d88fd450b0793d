package replay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	pb "github.com/causeway/causeway/schemas/causewaypb"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// stateKinds maps a sequencer changelog key's kind letter to its name and
// value schema (records.proto, "The sequencer's changelog").
var stateKinds = map[string]struct {
	name string
	new  func() proto.Message
}{
	"g": {"meta", func() proto.Message { return &pb.GroupMeta{} }},
	"m": {"member", func() proto.Message { return &pb.Membership{} }},
	"a": {"attachment", func() proto.Message { return &pb.Attachment{} }},
	"d": {"dedup", func() proto.Message { return &pb.Dedup{} }},
	"h": {"history", func() proto.Message { return &pb.Event{} }},
	"w": {"watcher", func() proto.Message { return &pb.Attachment{} }},
	"c": {"call-counter", func() proto.Message { return &pb.CallCounter{} }},
	"s": {"signal", func() proto.Message { return &pb.SignalOut{} }},
	"r": {"alias", func() proto.Message { return &pb.Alias{} }},
	"p": {"presence", func() proto.Message { return &pb.PresenceState{} }},
}

// DiffKind says how a key differs.
type DiffKind int

const (
	// Missing: the rebuilt state has the key, the state topic does not.
	Missing DiffKind = iota
	// Extra: the state topic has the key, the rebuilt state does not.
	Extra
	// Different: both have it, with different values.
	Different
)

func (k DiffKind) String() string {
	switch k {
	case Missing:
		return "missing from the state topic"
	case Extra:
		return "only in the state topic"
	}
	return "different"
}

// Diff is one key on which the state topic and the rebuilt state differ.
type Diff struct {
	Partition int32
	Key       string
	Kind      DiffKind
	// Topic is the state topic's value (nil if Missing), Rebuilt the
	// rebuilt one (nil if Extra).
	Topic, Rebuilt []byte
}

// compare lists the differences between the state topic's keys and the
// rebuilt ones, sorted by key. Values that differ in bytes but decode to
// equal messages (another writer's encoding) are equal.
func compare(p int32, topic, rebuilt map[string][]byte) []Diff {
	var out []Diff
	for k, want := range rebuilt {
		got, ok := topic[k]
		switch {
		case !ok:
			out = append(out, Diff{Partition: p, Key: k, Kind: Missing, Rebuilt: want})
		case !sameValue(k, got, want):
			out = append(out, Diff{Partition: p, Key: k, Kind: Different, Topic: got, Rebuilt: want})
		}
	}
	for k, got := range topic {
		if _, ok := rebuilt[k]; !ok {
			out = append(out, Diff{Partition: p, Key: k, Kind: Extra, Topic: got})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func sameValue(key string, a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	_, kind, _ := splitStateKey(key)
	k, ok := stateKinds[kind]
	if !ok {
		return false
	}
	ma, mb := k.new(), k.new()
	return proto.Unmarshal(a, ma) == nil && proto.Unmarshal(b, mb) == nil && proto.Equal(ma, mb)
}

// splitStateKey splits `<group>\0<kind>[\0<sub>]`.
func splitStateKey(key string) (group, kind, sub string) {
	parts := strings.SplitN(key, "\x00", 3)
	switch len(parts) {
	case 1:
		return parts[0], "", ""
	case 2:
		return parts[0], parts[1], ""
	}
	return parts[0], parts[1], parts[2]
}

// describeKey renders a changelog key for people: `room-1 member "bob"`.
func describeKey(key string) string {
	group, kind, sub := splitStateKey(key)
	name := "kind " + strconv.Quote(kind)
	if k, ok := stateKinds[kind]; ok {
		name = k.name
	}
	if kind == "" {
		return fmt.Sprintf("unparsable key %q", key)
	}
	s := strconv.Quote(group) + " " + name
	if sub != "" {
		s += " " + strconv.Quote(sub)
	}
	return s
}

// describeValue renders a changelog value as compact JSON with the key's
// schema, or says why it cannot.
func describeValue(key string, v []byte) string {
	if v == nil {
		return "(none)"
	}
	_, kind, _ := splitStateKey(key)
	k, ok := stateKinds[kind]
	if !ok {
		return fmt.Sprintf("(unknown kind; %d bytes: %x)", len(v), v)
	}
	m := k.new()
	if err := proto.Unmarshal(v, m); err != nil {
		return fmt.Sprintf("(does not decode as %s: %v; %d bytes: %x)", m.ProtoReflect().Descriptor().FullName(), err, len(v), v)
	}
	j, err := protojson.Marshal(m)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	var buf bytes.Buffer
	// protojson's spacing is unstable by design; compact it.
	if json.Compact(&buf, j) != nil {
		return string(j)
	}
	return fmt.Sprintf("%s %s", m.ProtoReflect().Descriptor().Name(), buf.String())
}

// writeDiff prints one difference, e.g.
//
//	partition 3: "room-1" member "carol": missing from the state topic
//	    rebuilt:     Membership {"version":1,"joinedSeq":"3"}
func writeDiff(w io.Writer, d Diff) {
	fmt.Fprintf(w, "partition %d: %s: %s (key %q)\n", d.Partition, describeKey(d.Key), d.Kind, d.Key)
	if d.Kind != Missing {
		fmt.Fprintf(w, "    state topic: %s\n", describeValue(d.Key, d.Topic))
	}
	if d.Kind != Extra {
		fmt.Fprintf(w, "    rebuilt:     %s\n", describeValue(d.Key, d.Rebuilt))
	}
}

// countDiffs counts differences by kind.
func countDiffs(ds []Diff) (missing, extra, different int) {
	for _, d := range ds {
		switch d.Kind {
		case Missing:
			missing++
		case Extra:
			extra++
		default:
			different++
		}
	}
	return
}
