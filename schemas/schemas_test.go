package schemas_test

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/causeway/causeway/schemas"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

var update = flag.Bool("update", false, "rewrite testdata/*.hex golden files from the current encoding")

// records is one value of every record type and every oneof kind. The
// names are the golden file names under testdata/.
func records() []struct {
	name string
	msg  proto.Message
} {
	ev := func(kind func(*pb.GroupEvent)) *pb.GroupEvent {
		e := &pb.GroupEvent{
			Version: schemas.Version, Group: "room-1", Edge: "edge-a", Session: "s-42",
			User: "alice", RequestId: "req-7", TsMs: 1_700_000_000_123,
		}
		kind(e)
		return e
	}
	return []struct {
		name string
		msg  proto.Message
	}{
		{"groupevent_join", ev(func(e *pb.GroupEvent) { e.Kind = &pb.GroupEvent_Join{Join: &pb.Join{}} })},
		{"groupevent_leave", ev(func(e *pb.GroupEvent) { e.Kind = &pb.GroupEvent_Leave{Leave: &pb.Leave{}} })},
		{"groupevent_attach", ev(func(e *pb.GroupEvent) {
			e.Kind = &pb.GroupEvent_Attach{Attach: &pb.Attach{Since: 99, HasSince: true}}
		})},
		{"groupevent_attach_since0", ev(func(e *pb.GroupEvent) {
			e.Kind = &pb.GroupEvent_Attach{Attach: &pb.Attach{Since: 0, HasSince: true}}
		})},
		{"groupevent_attach_nosince", ev(func(e *pb.GroupEvent) { e.Kind = &pb.GroupEvent_Attach{Attach: &pb.Attach{}} })},
		{"groupevent_detach", ev(func(e *pb.GroupEvent) { e.Kind = &pb.GroupEvent_Detach{Detach: &pb.Detach{}} })},
		{"groupevent_send", ev(func(e *pb.GroupEvent) {
			e.Kind = &pb.GroupEvent_Send{Send: &pb.Send{ClientMsgId: "c-1", Body: []byte(`{"text":"héllo ☃","n":[1,2]}`)}}
		})},
		{"groupevent_heartbeat", ev(func(e *pb.GroupEvent) {
			e.Group, e.Session, e.User, e.RequestId = "", "", "", ""
			e.Kind = &pb.GroupEvent_Heartbeat{Heartbeat: &pb.EdgeHeartbeat{IntervalMs: 3000, Slot: 5}}
		})},
		{"delivery_msg", &pb.Delivery{
			Version: schemas.Version, Edge: "edge-a", Group: "room-1",
			Event: &pb.Event{Group: "room-1", Seq: 17, TsMs: 1_700_000_000_456, Kind: &pb.Event_Msg{Msg: &pb.Message{
				From: "alice", ClientMsgId: "c-1", Body: []byte(`"hi"`),
			}}},
			Sessions: []string{"s-1", "s-2", "s-3"},
		}},
		{"delivery_member", &pb.Delivery{
			Version: schemas.Version, Edge: "edge-b", Group: "room-1",
			Event: &pb.Event{Group: "room-1", Seq: 18, TsMs: 1_700_000_000_789, Kind: &pb.Event_Member{Member: &pb.Member{
				User: "bob", Change: pb.Member_LEFT,
			}}},
			Sessions: []string{"s-9"},
		}},
		{"delivery_replies", &pb.Delivery{
			Version: schemas.Version, Edge: "edge-a", Group: "room-1",
			Replies: []*pb.Reply{
				{Session: "s-1", RequestId: "r1", Kind: &pb.Reply_Ack{Ack: &pb.Ack{Group: "room-1", Seq: 17}}},
				{Session: "s-2", RequestId: "r2", Kind: &pb.Reply_Error{Error: &pb.Error{Code: "not_member", Message: "join room-1 first"}}},
				{Session: "s-3", RequestId: "r3", Kind: &pb.Reply_Subscribed{Subscribed: &pb.Subscribed{
					Group: "room-1", Seq: 17, ReadSeq: 12, Recovered: true,
				}}},
			},
		}},
		{"delivery_event_and_replies", &pb.Delivery{
			Version: schemas.Version, Edge: "edge-a", Group: "room-1",
			Event:    &pb.Event{Group: "room-1", Seq: 1, Kind: &pb.Event_Member{Member: &pb.Member{User: "carol", Change: pb.Member_JOINED}}},
			Sessions: []string{"s-5"},
			Replies:  []*pb.Reply{{Session: "s-5", RequestId: "j", Kind: &pb.Reply_Ack{Ack: &pb.Ack{Group: "room-1", Seq: 1}}}},
		}},
		{"groupmeta", &pb.GroupMeta{Version: schemas.Version, Seq: 12345, DedupClock: 678}},
		{"membership", &pb.Membership{Version: schemas.Version, JoinedSeq: 4}},
		{"attachment", &pb.Attachment{Version: schemas.Version, Edge: "edge-a", User: "alice"}},
		{"dedup", &pb.Dedup{Version: schemas.Version, Seq: 17, Clock: 679}},
		// The membership index and reach (consumers/sequencer/reach.go).
		{"groupevent_join_via_stream", ev(func(e *pb.GroupEvent) {
			e.Group = "u:alice"
			e.Kind = &pb.GroupEvent_Join{Join: &pb.Join{Group: "room-1"}}
		})},
		{"groupevent_forward_to", ev(func(e *pb.GroupEvent) {
			e.Group, e.ForwardTo = "u:alice", "room-1"
			e.Kind = &pb.GroupEvent_Attach{Attach: &pb.Attach{}}
		})},
		{"groupevent_signal_reach", ev(func(e *pb.GroupEvent) {
			e.Group = "u:bob"
			e.Kind = &pb.GroupEvent_Signal{Signal: &pb.Signal{Call: "c-1", Kind: "offer", TtlMs: 30000, Reach: &pb.Reach{Groups: []string{"room-1", "room-2"}}}}
		})},
		{"groupevent_membership_index", ev(func(e *pb.GroupEvent) {
			e.Group, e.Edge, e.Session, e.RequestId = "u:alice", "", "", ""
			e.Kind = &pb.GroupEvent_MembershipIndex{MembershipIndex: &pb.MembershipIndex{Group: "room-1", Member: true, Seq: 3}}
		})},
		{"indexentry", &pb.IndexEntry{Version: schemas.Version, JoinedSeq: 3, TsMs: 1_700_000_000_123}},
	}
}

// record returns the record of records() with that name.
func record(name string) proto.Message {
	for _, r := range records() {
		if r.name == name {
			return r.msg
		}
	}
	panic("no record " + name)
}

// TestRoundTrip marshals every record, decodes it into a fresh value of the
// same type and compares; the golden hex files pin the bytes, so an
// accidental renumbering or type change fails here.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, r := range records() {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.msg)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			got := r.msg.ProtoReflect().Type().New().Interface()
			if err := proto.Unmarshal(b, got); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			if !proto.Equal(got, r.msg) {
				t.Fatalf("round trip changed the record:\n got  %v\n want %v", got, r.msg)
			}

			golden := filepath.Join("testdata", r.name+".hex")
			if *update {
				if err := os.WriteFile(golden, []byte(hex.EncodeToString(b)+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run go test ./schemas -run TestRoundTrip -update to create): %v", err)
			}
			wantBytes, err := hex.DecodeString(strings.TrimSpace(string(want)))
			if err != nil {
				t.Fatalf("golden %s: %v", golden, err)
			}
			if !bytes.Equal(b, wantBytes) {
				t.Errorf("wire bytes changed for %s:\n got  %x\n want %x\n(a schema change that alters existing records breaks old readers)", r.name, b, wantBytes)
			}
			// Records written by an earlier build decode to the same value.
			old := r.msg.ProtoReflect().Type().New().Interface()
			if err := proto.Unmarshal(wantBytes, old); err != nil || !proto.Equal(old, r.msg) {
				t.Errorf("golden %s decodes to %v (err %v), want %v", golden, old, err, r.msg)
			}
		})
	}
}

// TestAttachSinceZero: has_since tells "since 0" from "no since"; both must
// survive the wire.
func TestAttachSinceZero(t *testing.T) {
	t.Parallel()
	for _, a := range []*pb.Attach{{}, {HasSince: true}, {Since: 5, HasSince: true}} {
		b, err := proto.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		var got pb.Attach
		if err := proto.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if got.GetHasSince() != a.GetHasSince() || got.GetSince() != a.GetSince() {
			t.Errorf("attach %v decoded as %v", a, &got)
		}
	}
}

// TestForwardCompatible: a record from a newer writer, with fields this
// build does not know, still decodes; known fields keep their values and
// the unknown ones are carried through a re-marshal.
func TestForwardCompatible(t *testing.T) {
	t.Parallel()
	for _, r := range records() {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			b, err := proto.Marshal(r.msg)
			if err != nil {
				t.Fatal(err)
			}
			// A newer writer's fields: a varint, a string, a fixed64 and
			// a nested message, with numbers this schema does not use.
			var extra []byte
			extra = protowire.AppendTag(extra, 100, protowire.VarintType)
			extra = protowire.AppendVarint(extra, 424242)
			extra = protowire.AppendTag(extra, 101, protowire.BytesType)
			extra = protowire.AppendString(extra, "from the future")
			extra = protowire.AppendTag(extra, 102, protowire.Fixed64Type)
			extra = protowire.AppendFixed64(extra, 0xdeadbeef)
			extra = protowire.AppendTag(extra, 5000, protowire.BytesType)
			extra = protowire.AppendBytes(extra, protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 7))

			for _, where := range []struct {
				name string
				b    []byte
			}{
				{"appended", append(append([]byte{}, b...), extra...)},
				{"prepended", append(append([]byte{}, extra...), b...)},
			} {
				got := r.msg.ProtoReflect().Type().New().Interface()
				if err := proto.Unmarshal(where.b, got); err != nil {
					t.Fatalf("%s unknown fields: unmarshal: %v", where.name, err)
				}
				unknown := got.ProtoReflect().GetUnknown()
				if !bytes.Equal(unknown, extra) {
					t.Errorf("%s: unknown fields kept as %x, want %x", where.name, unknown, extra)
				}
				got.ProtoReflect().SetUnknown(nil)
				if !proto.Equal(got, r.msg) {
					t.Errorf("%s unknown fields changed known ones:\n got  %v\n want %v", where.name, got, r.msg)
				}
			}
		})
	}
}

// TestUnknownKind: a GroupEvent whose kind is a oneof member added later
// decodes with no kind, so a reader can count and skip it (schemas.go).
func TestUnknownKind(t *testing.T) {
	t.Parallel()
	b, err := proto.Marshal(&pb.GroupEvent{Version: 2, Group: "room-1", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	b = protowire.AppendTag(b, 99, protowire.BytesType) // a kind from a newer writer
	b = protowire.AppendBytes(b, []byte{0x08, 0x01})
	var ev pb.GroupEvent
	if err := proto.Unmarshal(b, &ev); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if ev.GetKind() != nil || ev.GetVersion() != 2 || ev.GetGroup() != "room-1" || ev.GetUser() != "alice" {
		t.Errorf("decoded %v: want version 2, group room-1, user alice and no kind", &ev)
	}
}

// TestBadInput: truncated or garbage values return an error, never panic.
func TestBadInput(t *testing.T) {
	t.Parallel()
	send, _ := proto.Marshal(record("groupevent_send"))
	delivery, _ := proto.Marshal(record("delivery_replies"))

	mustFail := []struct {
		name string
		b    []byte
	}{
		{"truncated varint", []byte{0x08, 0x80}},
		{"truncated length", []byte{0x12}},
		{"length past end", []byte{0x12, 0x10, 'r', 'o'}},
		{"truncated send body", send[:len(send)-3]},
		{"truncated delivery", delivery[:len(delivery)-1]},
		{"field number 0", []byte{0x00, 0x01}},
		{"wire type 6", []byte{0x0e, 0x01}},
		{"wire type 7", []byte{0x0f}},
		{"end group without start", []byte{0x0c}},
		{"10-byte varint overflow", []byte{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		// Field 2 is a string in both types, so UTF-8 is checked in both.
		{"invalid UTF-8 in string", protowire.AppendString(protowire.AppendTag(nil, 2, protowire.BytesType), "\xff\xfe")},
		{"all 0xff", bytes.Repeat([]byte{0xff}, 32)},
	}
	for _, tt := range mustFail {
		for _, m := range []proto.Message{&pb.GroupEvent{}, &pb.Delivery{}} {
			name := string(m.ProtoReflect().Descriptor().Name())
			t.Run(tt.name+"/"+name, func(t *testing.T) {
				got := m.ProtoReflect().Type().New().Interface()
				if err := proto.Unmarshal(tt.b, got); err == nil {
					t.Errorf("Unmarshal(%x) into %s = %v, want an error", tt.b, name, got)
				}
			})
		}
	}
	// Field 10 is GroupEvent's join (a message), so its garbage contents
	// are parsed and rejected; in Delivery it is an unknown field, kept
	// as opaque bytes (forward compatibility), so no error there.
	if err := proto.Unmarshal([]byte{0x52, 0x03, 0x0f, 0x0f, 0x0f}, &pb.GroupEvent{}); err == nil {
		t.Errorf("GroupEvent with a garbage join payload decoded without error")
	}

	// Every prefix of every record decodes or errors; none panics.
	for _, r := range records() {
		b, _ := proto.Marshal(r.msg)
		for i := 0; i < len(b); i++ {
			got := r.msg.ProtoReflect().Type().New().Interface()
			_ = proto.Unmarshal(b[:i], got)
		}
	}
}

// TestRecordsCarryVersion walks the file descriptor: every record type (a
// message that is not embedded in another one, so it is a Kafka value on
// its own) has field 1 `uint32 version`, singular and outside any oneof.
// Embedded payloads (Join, Event, Reply, ...) travel inside a versioned
// record and need no version of their own.
func TestRecordsCarryVersion(t *testing.T) {
	t.Parallel()
	fd := pb.File_causeway_v1_records_proto
	embedded := map[protoreflect.FullName]bool{}
	var all []protoreflect.MessageDescriptor
	var walk func(protoreflect.MessageDescriptors)
	walk = func(ms protoreflect.MessageDescriptors) {
		for i := 0; i < ms.Len(); i++ {
			m := ms.Get(i)
			all = append(all, m)
			for j := 0; j < m.Fields().Len(); j++ {
				if f := m.Fields().Get(j); f.Message() != nil {
					embedded[f.Message().FullName()] = true
				}
			}
			walk(m.Messages())
		}
	}
	walk(fd.Messages())

	var recs []string
	for _, m := range all {
		if embedded[m.FullName()] {
			continue
		}
		recs = append(recs, string(m.Name()))
		v := m.Fields().ByNumber(1)
		switch {
		case v == nil:
			t.Errorf("record %s has no field 1; want `uint32 version = 1`", m.FullName())
		case v.Name() != "version" || v.Kind() != protoreflect.Uint32Kind || v.Cardinality() == protoreflect.Repeated || v.ContainingOneof() != nil:
			t.Errorf("record %s field 1 is `%v %s %s` (oneof %v); want singular `uint32 version`",
				m.FullName(), v.Cardinality(), v.Kind(), v.Name(), v.ContainingOneof() != nil)
		}
		// A field named version elsewhere would be a second, confusing one.
		if f := m.Fields().ByName("version"); f != nil && f.Number() != 1 {
			t.Errorf("record %s has version as field %d, want 1", m.FullName(), f.Number())
		}
	}
	// The record set is the one PROTOCOL and the topics use; a new one must
	// be added here on purpose (and carries version like the rest).
	want := "GroupEvent Delivery GroupMeta Membership Attachment Dedup CallCounter Alias IndexEntry Watching WatcherGroups PresenceState RollupMember RollupMessage"
	if got := strings.Join(recs, " "); got != want {
		t.Errorf("record types (messages not embedded in another) = %q, want %q", got, want)
	}
	if schemas.Version != 1 {
		t.Errorf("schemas.Version = %d, but records.proto says version 1", schemas.Version)
	}
}

// TestDecodableByProtoc: a consumer that is not Causeway can read the
// records with the .proto alone. Required in CI (CI=true); skipped locally
// when protoc is not installed.
func TestDecodableByProtoc(t *testing.T) {
	t.Parallel()
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("protoc not on PATH in CI: %v (install with apt-get install -y protobuf-compiler)", err)
		}
		t.Skipf("protoc not on PATH (%v); apt-get install -y protobuf-compiler to run this test", err)
	}
	tests := []struct {
		typ  string
		msg  proto.Message
		want []string
	}{
		{"causeway.v1.GroupEvent", record("groupevent_send"), []string{
			"version: 1", `group: "room-1"`, `edge: "edge-a"`, `session: "s-42"`, `user: "alice"`,
			`request_id: "req-7"`, "ts_ms: 1700000000123", "send {", `client_msg_id: "c-1"`, `body: "{\"text\":\"h`,
		}},
		{"causeway.v1.GroupEvent", record("groupevent_attach"), []string{"attach {", "since: 99", "has_since: true"}},
		{"causeway.v1.Delivery", record("delivery_event_and_replies"), []string{
			"version: 1", `edge: "edge-a"`, "event {", "seq: 1", "member {", `user: "carol"`, "change: JOINED",
			`sessions: "s-5"`, "replies {", "ack {", `request_id: "j"`,
		}},
		{"causeway.v1.GroupMeta", record("groupmeta"), []string{"version: 1", "seq: 12345", "dedup_clock: 678"}},
	}
	for _, tt := range tests {
		b, err := proto.Marshal(tt.msg)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(protoc, "--decode="+tt.typ, "-I", "proto", "causeway/v1/records.proto")
		cmd.Stdin = bytes.NewReader(b)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("protoc --decode=%s: %v\n%s", tt.typ, err, stderr.String())
		}
		for _, w := range tt.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("protoc --decode=%s output lacks %q:\n%s", tt.typ, w, out)
			}
		}
	}
}
