package edge

import (
	"bytes"
	"encoding/json"
	"testing"

	pb "github.com/causeway/causeway/schemas/causewaypb"
	"google.golang.org/protobuf/proto"
)

// The committed corpus is under testdata/fuzz/<FuzzName>/; `go test` runs
// it as regression cases. Fuzz locally with e.g.
//
//	go test ./edge -run '^$' -fuzz FuzzDecodeClientFrame -fuzztime 20s

// FuzzDecodeClientFrame: any bytes from a client decode to a frame that
// satisfies the protocol's invariants, or to a bad_request; never a panic.
func FuzzDecodeClientFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"hello","id":"1","token":"t"}`,
		`{"type":"join","id":"2","group":"room-1"}`,
		`{"type":"subscribe","group":"g","since":0}`,
		`{"type":"send","id":"3","group":"g","client_msg_id":"c","body":{"t":"é"}}`,
		`{"type":"read","group":"g","seq":1}`,
		`{"type":"signal","to":"bob","call":"c","kind":"offer","payload":null}`,
		`{"type":"presence","users":["a"]}`,
		`{"type":"join","group":5,"id":"x"}`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		fr, ferr := DecodeClientFrame(line)
		if len(fr.ID) > maxIDLen {
			t.Fatalf("echoed id of %d bytes, over the %d limit", len(fr.ID), maxIDLen)
		}
		if ferr != nil {
			if ferr.Code != CodeBadRequest || ferr.Message == "" {
				t.Fatalf("error %+v: want bad_request with a message", ferr)
			}
			// The error frame built from it is one valid JSON line.
			if b := encodeError(fr.ID, ferr.Code, ferr.Message); !json.Valid(b) || bytes.ContainsAny(b, "\r\n") {
				t.Fatalf("error frame %q is not one JSON line", b)
			}
			return
		}
		needGroup := false
		switch fr.Type {
		case "hello":
			if fr.Token == "" {
				t.Fatalf("hello without token accepted: %q", line)
			}
		case "join", "leave", "subscribe", "unsubscribe", "typing":
			needGroup = true
		case "send":
			needGroup = true
			if fr.ClientMsgID == "" || len(fr.ClientMsgID) > maxClientMsgIDLen || !validToken(fr.ClientMsgID) {
				t.Fatalf("send with bad client_msg_id %q accepted", fr.ClientMsgID)
			}
			if len(fr.Body) == 0 || !json.Valid(fr.Body) {
				t.Fatalf("send with body %q accepted", fr.Body)
			}
			// What the edge does next: compact, so no newline travels on.
			body, err := compactJSON(fr.Body)
			if err != nil || bytes.ContainsAny(body, "\r\n") {
				t.Fatalf("body %q compacts to %q, %v", fr.Body, body, err)
			}
		case "read":
			needGroup = true
			if fr.Seq == nil {
				t.Fatalf("read without seq accepted")
			}
		case "signal":
			if fr.To == "" || fr.Call == "" || fr.Kind == "" {
				t.Fatalf("signal without to/call/kind accepted: %+v", fr)
			}
		case "presence":
			if len(fr.Users) == 0 {
				t.Fatalf("presence without users accepted")
			}
		default:
			t.Fatalf("unknown type %q accepted from %q", fr.Type, line)
		}
		if needGroup && !ValidGroupID(fr.Group) {
			t.Fatalf("%s with invalid group %q accepted", fr.Type, fr.Group)
		}
		if fr.Payload != nil && !json.Valid(fr.Payload) {
			t.Fatalf("payload %q is not JSON", fr.Payload)
		}
	})
}

// checkReDecode: a value that decoded re-marshals, and those bytes decode
// again to an equal value.
func checkReDecode(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatalf("re-marshal of a decoded %T: %v", m, err)
	}
	again := m.ProtoReflect().Type().New().Interface()
	if err := proto.Unmarshal(b, again); err != nil {
		t.Fatalf("re-marshalled %T does not decode: %v\n%x", m, err, b)
	}
	if !proto.Equal(m, again) {
		t.Fatalf("re-decode changed the value:\n first %v\n again %v", m, again)
	}
	return b
}

func seedProto(f *testing.F, msgs ...proto.Message) {
	for _, m := range msgs {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzGroupEventDecode: any bytes on the group log decode or error; a
// decoded event survives a re-marshal.
func FuzzGroupEventDecode(f *testing.F) {
	seedProto(f,
		&pb.GroupEvent{Version: 1, Group: "g", User: "u", Kind: &pb.GroupEvent_Join{Join: &pb.Join{}}},
		&pb.GroupEvent{Version: 1, Group: "g", Kind: &pb.GroupEvent_Attach{Attach: &pb.Attach{Since: 3, HasSince: true}}},
		&pb.GroupEvent{Version: 1, Group: "g", Kind: &pb.GroupEvent_Send{Send: &pb.Send{ClientMsgId: "c", Body: []byte(`{"a":1}`)}}},
		&pb.GroupEvent{Version: 1, Kind: &pb.GroupEvent_Heartbeat{Heartbeat: &pb.EdgeHeartbeat{IntervalMs: 3000, Slot: 2}}},
	)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev pb.GroupEvent
		if proto.Unmarshal(b, &ev) != nil {
			return
		}
		checkReDecode(t, &ev)
	})
}

// FuzzDeliveryDecode: any bytes on the delivery topic decode or error; a
// decoded delivery survives a re-marshal, and the frames the edge builds
// from it are single JSON lines (given a body that is compact JSON, which
// is what edges write; see the body check below).
func FuzzDeliveryDecode(f *testing.F) {
	seedProto(f,
		&pb.Delivery{Version: 1, Edge: "e", Group: "g", Sessions: []string{"s"},
			Event: &pb.Event{Group: "g", Seq: 1, Kind: &pb.Event_Msg{Msg: &pb.Message{From: "a", ClientMsgId: "c", Body: []byte(`"hi"`)}}}},
		&pb.Delivery{Version: 1, Edge: "e", Group: "g", Sessions: []string{"s"},
			Event: &pb.Event{Group: "g", Seq: 2, Kind: &pb.Event_Member{Member: &pb.Member{User: "b", Change: pb.Member_LEFT}}}},
		&pb.Delivery{Version: 1, Edge: "e", Replies: []*pb.Reply{
			{Session: "s", RequestId: "1", Kind: &pb.Reply_Ack{Ack: &pb.Ack{Group: "g", Seq: 3}}},
			{Session: "s", RequestId: "2", Kind: &pb.Reply_Error{Error: &pb.Error{Code: "not_member", Message: "m"}}},
			{Session: "s", RequestId: "3", Kind: &pb.Reply_Subscribed{Subscribed: &pb.Subscribed{Group: "g", Seq: 3, Recovered: true}}},
		}},
	)
	f.Fuzz(func(t *testing.T, b []byte) {
		var d pb.Delivery
		if proto.Unmarshal(b, &d) != nil {
			return
		}
		checkReDecode(t, &d)
		if ev := d.GetEvent(); ev != nil {
			// encodeEvent copies the body verbatim (edges compact it
			// before sequencing), so only a compact JSON body is held to
			// the one-line invariant.
			body := ev.GetMsg().GetBody()
			if c, err := compactJSON(body); len(body) == 0 || err == nil && bytes.Equal(c, body) {
				if frame := encodeEvent(ev); frame != nil && (!json.Valid(frame) || bytes.ContainsAny(frame, "\r\n")) {
					t.Fatalf("event frame %q is not one JSON line", frame)
				}
			}
		}
		for _, r := range d.GetReplies() {
			if frame := encodeReply(r); frame != nil && (!json.Valid(frame) || bytes.ContainsAny(frame, "\r\n")) {
				t.Fatalf("reply frame %q is not one JSON line", frame)
			}
		}
	})
}
