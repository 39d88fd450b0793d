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

// changelogKinds maps a changelog key's kind letter to its name and value
// schema.
type changelogKinds = map[string]struct {
	name string
	new  func() proto.Message
}

// stateKinds are the sequencer changelog's kinds (records.proto, "The
// sequencer's changelog").
var stateKinds = changelogKinds{
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
	"x": {"membership-index", func() proto.Message { return &pb.IndexEntry{} }},
	"v": {"watching", func() proto.Message { return &pb.Watching{} }},
	"y": {"watcher-groups", func() proto.Message { return &pb.WatcherGroups{} }},
}

// changelog is what comparing and printing one changelog's records needs:
// the sequencer's (stateKinds) or the rollup's (rollupChangelog).
type changelog struct {
	kinds changelogKinds
	// ignore, if set, clears in a decoded value the fields a comparison
	// does not cover (they legitimately differ between the live writer
	// and a rebuild).
	ignore func(proto.Message)
}

func sequencerChangelog() *changelog { return &changelog{kinds: stateKinds} }

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
	// log decodes the values for people; nil: the sequencer's changelog.
	log *changelog
}

// compare lists the differences between the sequencer state topic's keys
// and the rebuilt ones (changelog.compare).
func compare(p int32, topic, rebuilt map[string][]byte) []Diff {
	return sequencerChangelog().compare(p, topic, rebuilt)
}

// compare lists the differences between a state topic's keys and the
// rebuilt ones, sorted by key. Values that differ in bytes but decode to
// equal messages (another writer's encoding), or differ only in fields
// the comparison ignores, are equal.
func (c *changelog) compare(p int32, topic, rebuilt map[string][]byte) []Diff {
	var out []Diff
	for k, want := range rebuilt {
		got, ok := topic[k]
		switch {
		case !ok:
			out = append(out, Diff{Partition: p, Key: k, Kind: Missing, Rebuilt: want, log: c})
		case !c.same(k, got, want):
			out = append(out, Diff{Partition: p, Key: k, Kind: Different, Topic: got, Rebuilt: want, log: c})
		}
	}
	for k, got := range topic {
		if _, ok := rebuilt[k]; !ok {
			out = append(out, Diff{Partition: p, Key: k, Kind: Extra, Topic: got, log: c})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func (c *changelog) same(key string, a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	_, kind, _ := splitStateKey(key)
	k, ok := c.kinds[kind]
	if !ok {
		return false
	}
	ma, mb := k.new(), k.new()
	if proto.Unmarshal(a, ma) != nil || proto.Unmarshal(b, mb) != nil {
		return false
	}
	if c.ignore != nil {
		c.ignore(ma)
		c.ignore(mb)
	}
	return proto.Equal(ma, mb)
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

// describeKey renders a sequencer changelog key for people.
func describeKey(key string) string { return sequencerChangelog().describeKey(key) }

// describeKey renders a changelog key for people: `room-1 member "bob"`.
func (c *changelog) describeKey(key string) string {
	group, kind, sub := splitStateKey(key)
	name := "kind " + strconv.Quote(kind)
	if k, ok := c.kinds[kind]; ok {
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
func (c *changelog) describeValue(key string, v []byte) string {
	if v == nil {
		return "(none)"
	}
	_, kind, _ := splitStateKey(key)
	k, ok := c.kinds[kind]
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
	c := d.log
	if c == nil {
		c = sequencerChangelog()
	}
	fmt.Fprintf(w, "partition %d: %s: %s (key %q)\n", d.Partition, c.describeKey(d.Key), d.Kind, d.Key)
	if d.Kind != Missing {
		fmt.Fprintf(w, "    state topic: %s\n", c.describeValue(d.Key, d.Topic))
	}
	if d.Kind != Extra {
		fmt.Fprintf(w, "    rebuilt:     %s\n", c.describeValue(d.Key, d.Rebuilt))
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
