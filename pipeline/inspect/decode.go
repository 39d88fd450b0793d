package inspect

import (
	"fmt"
	"strings"

	pb "github.com/causeway/causeway/schemas/causewaypb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// topicKind is which schema a topic's values have.
type topicKind int

const (
	groupLog    topicKind = iota // GroupEvent, keyed by group (empty: heartbeat)
	stateLog                     // the sequencer changelog, schema by key kind
	deliveryLog                  // Delivery, keyed by edge
)

// StateKey is a parsed sequencer changelog key, `<group>\0<kind>[\0<sub>]`
// (records.proto). Kind is the key's letter spelled out: meta, member,
// attachment, dedup, history.
type StateKey struct {
	Group string `json:"group"`
	Kind  string `json:"kind"`
	Sub   string `json:"sub,omitempty"`
}

// stateKinds maps a changelog key's kind letter to its name and value
// schema. It repeats records.proto (which the sequencer also follows)
// rather than importing the sequencer: the schemas, not the sequencer's
// code, are the contract a reader of the topic relies on.
var stateKinds = map[string]struct {
	name string
	new  func() proto.Message
}{
	"g": {"meta", func() proto.Message { return &pb.GroupMeta{} }},
	"m": {"member", func() proto.Message { return &pb.Membership{} }},
	"a": {"attachment", func() proto.Message { return &pb.Attachment{} }},
	"d": {"dedup", func() proto.Message { return &pb.Dedup{} }},
	"h": {"history", func() proto.Message { return &pb.Event{} }},
}

// parseStateKey splits a changelog key; ok is false when the key does not
// have the documented shape or an unknown kind.
func parseStateKey(key []byte) (StateKey, proto.Message, bool) {
	parts := strings.SplitN(string(key), "\x00", 3)
	if len(parts) < 2 {
		return StateKey{Group: string(key)}, nil, false
	}
	k, known := stateKinds[parts[1]]
	sk := StateKey{Group: parts[0], Kind: parts[1]}
	if len(parts) == 3 {
		sk.Sub = parts[2]
	}
	if !known || (parts[1] == "g") != (len(parts) == 2) {
		return sk, nil, false
	}
	sk.Kind = k.name
	return sk, k.new(), true
}

// decode fills r's decoded fields from its key and raw value. It never
// fails: what it cannot decode is left in r.Err, with r.Raw kept.
func decode(kind topicKind, r *Record) {
	var m proto.Message
	switch kind {
	case groupLog:
		m = &pb.GroupEvent{}
	case deliveryLog:
		m = &pb.Delivery{}
	case stateLog:
		sk, msg, ok := parseStateKey(r.Key)
		r.StateKey = &sk
		if !ok {
			r.Err = fmt.Errorf("state key %q: not <group>\\0<kind>[\\0<sub>] with a known kind", r.Key)
			return
		}
		m = msg
	}
	r.Schema = string(m.ProtoReflect().Descriptor().FullName())
	if r.Raw == nil {
		// Only the compacted changelog deletes keys; elsewhere a nil value
		// is still shown as what it is.
		r.Tombstone = true
		return
	}
	if err := proto.Unmarshal(r.Raw, m); err != nil {
		r.Err = fmt.Errorf("decode %s: %w", r.Schema, err)
		return
	}
	r.Value = m
	if f := m.ProtoReflect().Descriptor().Fields().ByName("version"); f != nil && f.Kind() == protoreflect.Uint32Kind {
		v := uint32(m.ProtoReflect().Get(f).Uint())
		r.Version = &v
	}
}

// group is the group a record belongs to, as far as it can be told; ok is
// false when it cannot (an undecodable delivery).
func group(kind topicKind, r *Record) (string, bool) {
	switch kind {
	case groupLog:
		return string(r.Key), true
	case stateLog:
		if r.StateKey != nil {
			return r.StateKey.Group, true
		}
		g, _, _ := strings.Cut(string(r.Key), "\x00")
		return g, true
	default:
		d, ok := r.Value.(*pb.Delivery)
		if !ok {
			return "", false
		}
		return d.GetGroup(), true
	}
}
