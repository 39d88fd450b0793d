package edge

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	pb "github.com/causeway/causeway/schemas/causewaypb"
)

func u64(v uint64) *uint64 { return &v }

// TestDecodeClientFrameValid: one valid frame of every client type of
// PROTOCOL.md decodes to the fields it carries.
func TestDecodeClientFrameValid(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 128)
	tests := []struct {
		name string
		in   string
		want ClientFrame
	}{
		{"hello", `{"type":"hello","id":"1","token":"eyJ.a.b"}`, ClientFrame{Type: "hello", ID: "1", Token: "eyJ.a.b"}},
		{"join", `{"type":"join","id":"2","group":"room-1"}`, ClientFrame{Type: "join", ID: "2", Group: "room-1"}},
		{"join without id", `{"type":"join","group":"room-1"}`, ClientFrame{Type: "join", Group: "room-1"}},
		{"leave", `{"type":"leave","id":"3","group":"room-1"}`, ClientFrame{Type: "leave", ID: "3", Group: "room-1"}},
		{"subscribe without since", `{"type":"subscribe","id":"4","group":"room-1"}`, ClientFrame{Type: "subscribe", ID: "4", Group: "room-1"}},
		{"subscribe since 0", `{"type":"subscribe","group":"room-1","since":0}`, ClientFrame{Type: "subscribe", Group: "room-1", Since: u64(0)}},
		{"subscribe since 42", `{"type":"subscribe","group":"room-1","since":42}`, ClientFrame{Type: "subscribe", Group: "room-1", Since: u64(42)}},
		{"subscribe since max", `{"type":"subscribe","group":"g","since":18446744073709551615}`, ClientFrame{Type: "subscribe", Group: "g", Since: u64(1<<64 - 1)}},
		{"subscribe since null is absent", `{"type":"subscribe","group":"room-1","since":null}`, ClientFrame{Type: "subscribe", Group: "room-1"}},
		{"unsubscribe", `{"type":"unsubscribe","id":"5","group":"room-1"}`, ClientFrame{Type: "unsubscribe", ID: "5", Group: "room-1"}},
		{"send object body", `{"type":"send","id":"6","group":"room-1","client_msg_id":"c-1","body":{"text":"hi"}}`,
			ClientFrame{Type: "send", ID: "6", Group: "room-1", ClientMsgID: "c-1", Body: json.RawMessage(`{"text":"hi"}`)}},
		{"send string body", `{"type":"send","group":"g","client_msg_id":"c","body":"hé ☃"}`,
			ClientFrame{Type: "send", Group: "g", ClientMsgID: "c", Body: json.RawMessage(`"hé ☃"`)}},
		{"send null body", `{"type":"send","group":"g","client_msg_id":"c","body":null}`,
			ClientFrame{Type: "send", Group: "g", ClientMsgID: "c", Body: json.RawMessage(`null`)}},
		{"send max client_msg_id", `{"type":"send","group":"g","client_msg_id":"` + long + `","body":1}`,
			ClientFrame{Type: "send", Group: "g", ClientMsgID: long, Body: json.RawMessage(`1`)}},
		{"read", `{"type":"read","id":"7","group":"room-1","seq":9}`, ClientFrame{Type: "read", ID: "7", Group: "room-1", Seq: u64(9)}},
		{"read seq 0", `{"type":"read","group":"room-1","seq":0}`, ClientFrame{Type: "read", Group: "room-1", Seq: u64(0)}},
		{"typing", `{"type":"typing","group":"room-1"}`, ClientFrame{Type: "typing", Group: "room-1"}},
		{"signal", `{"type":"signal","id":"8","to":"bob","to_session":"s-2","call":"call-1","kind":"offer","payload":{"sdp":"v=0"}}`,
			ClientFrame{Type: "signal", ID: "8", To: "bob", ToSession: "s-2", Call: "call-1", Kind: "offer", Payload: json.RawMessage(`{"sdp":"v=0"}`)}},
		{"presence", `{"type":"presence","id":"9","users":["alice","bob"]}`, ClientFrame{Type: "presence", ID: "9", Users: []string{"alice", "bob"}}},
		{"max id", `{"type":"typing","id":"` + long + `","group":"g"}`, ClientFrame{Type: "typing", ID: long, Group: "g"}},
		{"every group ID character", `{"type":"join","group":"aZ09._-:@+"}`, ClientFrame{Type: "join", Group: "aZ09._-:@+"}},
		{"128-byte group", `{"type":"join","group":"` + long + `"}`, ClientFrame{Type: "join", Group: long}},
		{"unknown fields ignored", `{"type":"join","group":"g","future":{"x":1}}`, ClientFrame{Type: "join", Group: "g"}},
		{"whitespace", " {\n\t\"type\" : \"join\" ,\"group\":\"g\"}\n", ClientFrame{Type: "join", Group: "g"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ferr := DecodeClientFrame([]byte(tt.in))
			if ferr != nil {
				t.Fatalf("DecodeClientFrame(%s) = error %v, want %+v", tt.in, ferr, tt.want)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecodeClientFrame(%s)\n got  %+v\n want %+v", tt.in, got, tt.want)
			}
		})
	}
}

// TestDecodeClientFrameInvalid: every malformed frame gives bad_request with
// a message naming the problem, and echoes the request ID whenever it
// could be read.
func TestDecodeClientFrameInvalid(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 129)
	tests := []struct {
		name   string
		in     string
		id     string   // the ID the error must echo
		msgHas []string // substrings of the message
	}{
		// Not JSON at all: no ID can be read.
		{"empty", ``, "", []string{"malformed JSON"}},
		{"not json", `hello`, "", []string{"malformed JSON"}},
		{"truncated", `{"type":"join","id":"1","group":"g"`, "", []string{"malformed JSON"}},
		{"trailing garbage", `{"type":"join","id":"1","group":"g"} x`, "", []string{"malformed JSON"}},
		{"two frames on one line", `{"type":"join","group":"g"}{"type":"leave","group":"g"}`, "", []string{"malformed JSON"}},
		{"bad nested body", `{"type":"send","id":"1","group":"g","client_msg_id":"c","body":{"a":}}`, "", []string{"malformed JSON"}},

		// Type.
		{"missing type", `{"id":"t1","group":"g"}`, "t1", []string{`needs "type"`}},
		{"empty type", `{"type":"","id":"t2","group":"g"}`, "t2", []string{`needs "type"`}},
		{"null frame", `null`, "", []string{"must be a JSON object"}},
		{"unknown type", `{"type":"dance","id":"t3"}`, "t3", []string{"unknown frame type", `"dance"`}},
		{"server-only type", `{"type":"welcome","id":"t4"}`, "t4", []string{"unknown frame type", `"welcome"`}},
		{"type case matters", `{"type":"JOIN","id":"t5","group":"g"}`, "t5", []string{"unknown frame type", `"JOIN"`}},
		{"type wrong type", `{"type":5,"id":"t6"}`, "t6", []string{`"type"`, "wrong type", "string"}},

		// Missing required fields, per type.
		{"hello without token", `{"type":"hello","id":"m1"}`, "m1", []string{"hello", `"token"`}},
		{"join without group", `{"type":"join","id":"m2"}`, "m2", []string{"join", `"group"`}},
		{"leave without group", `{"type":"leave","id":"m3"}`, "m3", []string{"leave", `"group"`}},
		{"subscribe without group", `{"type":"subscribe","id":"m4","since":3}`, "m4", []string{"subscribe", `"group"`}},
		{"unsubscribe without group", `{"type":"unsubscribe","id":"m5"}`, "m5", []string{"unsubscribe", `"group"`}},
		{"typing without group", `{"type":"typing","id":"m6"}`, "m6", []string{"typing", `"group"`}},
		{"send without group", `{"type":"send","id":"m7","client_msg_id":"c","body":1}`, "m7", []string{"send", `"group"`}},
		{"send without client_msg_id", `{"type":"send","id":"m8","group":"g","body":1}`, "m8", []string{"send", `"client_msg_id"`}},
		{"send without body", `{"type":"send","id":"m9","group":"g","client_msg_id":"c"}`, "m9", []string{"send", `"body"`}},
		{"read without group", `{"type":"read","id":"m10","seq":1}`, "m10", []string{"read", `"group"`}},
		{"read without seq", `{"type":"read","id":"m11","group":"g"}`, "m11", []string{"read", `"seq"`}},
		{"read seq null", `{"type":"read","id":"m12","group":"g","seq":null}`, "m12", []string{"read", `"seq"`}},
		{"signal without to", `{"type":"signal","id":"m13","call":"c","kind":"offer"}`, "m13", []string{"signal", `"to"`}},
		{"signal without call", `{"type":"signal","id":"m14","to":"bob","kind":"offer"}`, "m14", []string{"signal", `"call"`}},
		{"signal without kind", `{"type":"signal","id":"m15","to":"bob","call":"c"}`, "m15", []string{"signal", `"kind"`}},
		{"presence without users", `{"type":"presence","id":"m16"}`, "m16", []string{"presence", `"users"`}},
		{"presence empty users", `{"type":"presence","id":"m17","users":[]}`, "m17", []string{"presence", `"users"`}},

		// Wrong-typed fields: the ID is salvaged when it is a string.
		{"group number", `{"type":"join","id":"w1","group":5}`, "w1", []string{`"group"`, "wrong type", "string"}},
		{"group object", `{"type":"join","id":"w2","group":{}}`, "w2", []string{`"group"`, "wrong type"}},
		{"since string", `{"type":"subscribe","id":"w3","group":"g","since":"x"}`, "w3", []string{`"since"`, "wrong type", "uint64"}},
		{"since negative", `{"type":"subscribe","id":"w4","group":"g","since":-1}`, "w4", []string{`"since"`, "wrong type"}},
		{"since fraction", `{"type":"subscribe","id":"w5","group":"g","since":1.5}`, "w5", []string{`"since"`, "wrong type"}},
		{"since too big", `{"type":"subscribe","id":"w6","group":"g","since":18446744073709551616}`, "w6", []string{`"since"`, "wrong type"}},
		{"seq string", `{"type":"read","id":"w7","group":"g","seq":"3"}`, "w7", []string{`"seq"`, "wrong type"}},
		{"id number", `{"type":"join","id":7,"group":"g"}`, "", []string{`"id"`, "wrong type", "string"}},
		{"client_msg_id number", `{"type":"send","id":"w8","group":"g","client_msg_id":5,"body":1}`, "w8", []string{`"client_msg_id"`, "wrong type"}},
		{"token bool", `{"type":"hello","id":"w9","token":true}`, "w9", []string{`"token"`, "wrong type"}},
		{"users string", `{"type":"presence","id":"w10","users":"alice"}`, "w10", []string{`"users"`, "wrong type"}},
		{"users numbers", `{"type":"presence","id":"w11","users":[1,2]}`, "w11", []string{`"users"`, "wrong type"}},
		{"wrong type and long id", `{"type":"join","id":"` + long + `","group":5}`, "", []string{`"group"`, "wrong type"}},

		// Invalid group IDs.
		{"group with space", `{"type":"join","id":"g1","group":"room 1"}`, "g1", []string{`"room 1"`, "not a valid group ID"}},
		{"group with slash", `{"type":"subscribe","id":"g2","group":"a/b"}`, "g2", []string{`"a/b"`, "not a valid group ID"}},
		{"group with unicode", `{"type":"send","id":"g3","group":"ré","client_msg_id":"c","body":1}`, "g3", []string{"not a valid group ID"}},
		{"group with NUL", `{"type":"leave","id":"g4","group":"a\u0000b"}`, "g4", []string{"not a valid group ID"}},
		{"group with newline", `{"type":"typing","id":"g5","group":"a\nb"}`, "g5", []string{"not a valid group ID"}},
		{"group too long", `{"type":"read","id":"g6","group":"` + long + `","seq":1}`, "g6", []string{"not a valid group ID", "1-128"}},
		{"group with quote", `{"type":"unsubscribe","id":"g7","group":"a\"b"}`, "g7", []string{"not a valid group ID"}},

		// Lengths and characters of IDs.
		{"id too long", `{"type":"join","id":"` + long + `","group":"g"}`, "", []string{"id longer than 128"}},
		{"client_msg_id too long", `{"type":"send","id":"c1","group":"g","client_msg_id":"` + long + `","body":1}`, "c1", []string{"client_msg_id", "128"}},
		{"client_msg_id tab", `{"type":"send","id":"c2","group":"g","client_msg_id":"a\tb","body":1}`, "c2", []string{"client_msg_id", "printable"}},
		{"client_msg_id newline", `{"type":"send","id":"c3","group":"g","client_msg_id":"a\nb","body":1}`, "c3", []string{"client_msg_id", "printable"}},
		{"client_msg_id NUL", `{"type":"send","id":"c4","group":"g","client_msg_id":"\u0000","body":1}`, "c4", []string{"client_msg_id", "printable"}},
		{"client_msg_id DEL", `{"type":"send","id":"c5","group":"g","client_msg_id":"a\u007f","body":1}`, "c5", []string{"client_msg_id", "printable"}},
		{"client_msg_id non-ASCII", `{"type":"send","id":"c6","group":"g","client_msg_id":"é","body":1}`, "c6", []string{"client_msg_id", "printable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, ferr := DecodeClientFrame([]byte(tt.in))
			if ferr == nil {
				t.Fatalf("DecodeClientFrame(%s) = %+v, want a bad_request error", tt.in, f)
			}
			if ferr.Code != CodeBadRequest {
				t.Errorf("code = %q, want %q (message %q)", ferr.Code, CodeBadRequest, ferr.Message)
			}
			for _, w := range tt.msgHas {
				if !strings.Contains(ferr.Message, w) {
					t.Errorf("message %q does not name the problem: want it to contain %q", ferr.Message, w)
				}
			}
			if f.ID != tt.id {
				t.Errorf("echoed id = %q, want %q", f.ID, tt.id)
			}
			// On error only the ID is meaningful: nothing half-decoded
			// may be acted upon.
			if !reflect.DeepEqual(f, ClientFrame{ID: f.ID}) {
				t.Errorf("error returned a half-decoded frame %+v; want only the ID", f)
			}
			if ferr.Error() != ferr.Code+": "+ferr.Message {
				t.Errorf("Error() = %q", ferr.Error())
			}
		})
	}
}

// TestDecodeClientFrameNotAnObject: a JSON value that is not an object is a
// bad_request with no ID that says a frame must be an object.
func TestDecodeClientFrameNotAnObject(t *testing.T) {
	t.Parallel()
	for _, in := range []string{`[]`, `[{"type":"join","group":"g"}]`, `5`, `"join"`, `true`} {
		f, ferr := DecodeClientFrame([]byte(in))
		if ferr == nil || ferr.Code != CodeBadRequest || ferr.Message != "a frame must be a JSON object" || f.ID != "" {
			t.Errorf("DecodeClientFrame(%s) = %+v, %v; want bad_request with a message and no id", in, f, ferr)
		}
	}
}

func TestValidGroupID(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"": false, "a": true, "room-1": true, "u:alice": true, "a.b_c-d:e@f+g": true,
		strings.Repeat("a", 128): true, strings.Repeat("a", 129): false,
		"a b": false, "a/b": false, "a*": false, "é": false, "a\x00": false, "a,b": false,
	} {
		if got := ValidGroupID(s); got != want {
			t.Errorf("ValidGroupID(%q) = %v, want %v", s, got, want)
		}
		if got := ValidUserID(s); got != want {
			t.Errorf("ValidUserID(%q) = %v, want %v", s, got, want)
		}
	}
}

// decodeOne checks b is exactly one JSON object on one line and returns it.
func decodeOne(t *testing.T, b []byte) map[string]any {
	t.Helper()
	if bytes.ContainsAny(b, "\n\r") {
		t.Fatalf("frame contains a raw line break: %q", b)
	}
	if !json.Valid(b) {
		t.Fatalf("frame is not valid JSON: %q", b)
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("frame %q: %v", b, err)
	}
	return m
}

// awkward are strings that need escaping in JSON, or that take the slow
// path of frameWriter.str.
var awkward = []string{
	"plain",
	"",
	`quo"te`,
	`back\slash`,
	"new\nline",
	"cr\rlf\r\n",
	"tab\there",
	"nul\x00ctl\x1f",
	"del\x7f",
	"héllo ☃ 😀 日本",
	"sep\u2028par\u2029",
	"<script>&amp;</script>",
	"bad utf8 \xff\xfe",
}

// TestEncodeEvent: msg and member frames are valid single-line JSON that
// round-trips with every field of the event.
func TestEncodeEvent(t *testing.T) {
	t.Parallel()
	bodies := []string{
		`{"text":"hi"}`,
		`"héllo ☃ 😀"`,
		`{"t":"line\nbreak \"q\" \u2028","n":[1,2.5,-3e10],"ok":true,"nil":null}`,
		`12345678901234567890`,
		"{\"raw\":\"\u2028 and é\"}",
		`[]`,
	}
	for _, s := range awkward {
		for _, body := range bodies {
			ev := &pb.Event{Group: s, Seq: 1<<64 - 1, TsMs: -5, Kind: &pb.Event_Msg{Msg: &pb.Message{
				From: s, ClientMsgId: s + "-id", Body: []byte(body),
			}}}
			m := decodeOne(t, encodeEvent(ev))
			want := map[string]any{
				"type": "msg", "group": jsonString(s), "seq": json.Number("18446744073709551615"),
				"from": jsonString(s), "client_msg_id": jsonString(s + "-id"), "ts": json.Number("-5"),
			}
			for k, v := range want {
				if m[k] != v {
					t.Errorf("msg %q field %s = %#v, want %#v", s, k, m[k], v)
				}
			}
			gotBody, _ := json.Marshal(m["body"])
			var wantBody any
			d := json.NewDecoder(strings.NewReader(body))
			d.UseNumber()
			_ = d.Decode(&wantBody)
			wantJSON, _ := json.Marshal(wantBody)
			if !bytes.Equal(gotBody, wantJSON) {
				t.Errorf("msg body = %s, want %s", gotBody, wantJSON)
			}
			if len(m) != 7 {
				t.Errorf("msg frame has fields %v, want exactly type, group, seq, from, client_msg_id, ts, body", m)
			}
		}

		for change, word := range map[pb.Member_Change]string{pb.Member_JOINED: "joined", pb.Member_LEFT: "left"} {
			ev := &pb.Event{Group: s, Seq: 7, TsMs: 1_700_000_000_000, Kind: &pb.Event_Member{Member: &pb.Member{User: s, Change: change}}}
			m := decodeOne(t, encodeEvent(ev))
			want := map[string]any{
				"type": "member", "group": jsonString(s), "seq": json.Number("7"),
				"user": jsonString(s), "event": word, "ts": json.Number("1700000000000"),
			}
			if !reflect.DeepEqual(m, want) {
				t.Errorf("member frame for %q:\n got  %#v\n want %#v", s, m, want)
			}
		}
	}
}

// jsonString is s as it reads back after a JSON round trip (invalid UTF-8
// becomes U+FFFD, one per bad byte, as []rune does).
func jsonString(s string) string { return string([]rune(s)) }

func TestEncodeEventEdgeCases(t *testing.T) {
	t.Parallel()
	// No body: null, not an empty value that would break the JSON.
	m := decodeOne(t, encodeEvent(&pb.Event{Group: "g", Seq: 1, Kind: &pb.Event_Msg{Msg: &pb.Message{From: "a"}}}))
	if v, ok := m["body"]; !ok || v != nil {
		t.Errorf("empty body encoded as %#v (present %v), want null", v, ok)
	}
	// A nil Msg is decoded by proto as an empty message: still valid.
	decodeOne(t, encodeEvent(&pb.Event{Group: "g", Kind: &pb.Event_Msg{}}))
	// No kind (a newer event type): nothing to send.
	if b := encodeEvent(&pb.Event{Group: "g", Seq: 1}); b != nil {
		t.Errorf("event without kind encoded as %q, want nil", b)
	}
}

// TestCompactJSON: the edge compacts a body before it is sequenced, so a
// multi-line body can never carry a newline into the NDJSON stream, and
// rejects a body that is not JSON.
func TestCompactJSON(t *testing.T) {
	t.Parallel()
	in := "{\n  \"text\": \"a\\nb\",\r\n  \"list\": [ 1,\n 2 ]\n}\n"
	out, err := compactJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"text":"a\nb","list":[1,2]}` {
		t.Errorf("compactJSON = %s", out)
	}
	ev := &pb.Event{Group: "g", Kind: &pb.Event_Msg{Msg: &pb.Message{Body: out}}}
	decodeOne(t, encodeEvent(ev))
	for _, bad := range []string{`{`, `{"a":}`, `nope`, `{"a":1} {"b":2}`} {
		if _, err := compactJSON([]byte(bad)); err == nil {
			t.Errorf("compactJSON(%q) accepted invalid JSON", bad)
		}
	}
}

// compactDecoded returns a compact value as it is and compacts the rest
// exactly as compactJSON does, whatever the strings hold.
func TestCompactDecoded(t *testing.T) {
	t.Parallel()
	for _, v := range []string{
		`"plain"`, `{"text":"hello world"}`, `{"a":"x\"  y"}`, `{"a":"x\\"}`, `["a\\", "b"]`,
		`{"t":"tab\tin"}`, "{ \"a\" : 1 }", "[1,\n2]", `{"q":"\"","s":" "}`, `12`, `true`, `null`,
		`{"deep":[{"x":[1,{"y":" s "}]}]}`, "{\"a\":\"b\"}\r\n", `"\u00e9 é"`,
	} {
		checkCompactDecoded(t, []byte(v))
	}
	body := []byte(`{"text":"already compact"}`)
	if got, _ := compactDecoded(body); &got[0] != &body[0] {
		t.Error("compactDecoded copied a value that was already compact")
	}
	if _, err := compactDecoded(nil); err == nil {
		t.Error("compactDecoded accepted an empty value")
	}
}

// TestEncodeReply: ack, error and subscribed replies round-trip with their
// fields and echo the request ID, whatever it contains.
func TestEncodeReply(t *testing.T) {
	t.Parallel()
	for _, id := range awkward {
		tests := []struct {
			r    *pb.Reply
			want map[string]any
		}{
			{&pb.Reply{RequestId: id, Kind: &pb.Reply_Ack{Ack: &pb.Ack{Group: "room-1", Seq: 42}}},
				map[string]any{"type": "ack", "id": jsonString(id), "group": "room-1", "seq": json.Number("42")}},
			{&pb.Reply{RequestId: id, Kind: &pb.Reply_Ack{Ack: &pb.Ack{}}},
				map[string]any{"type": "ack", "id": jsonString(id)}},
			{&pb.Reply{RequestId: id, Kind: &pb.Reply_Error{Error: &pb.Error{Code: CodeNotMember, Message: "join \"" + id + "\"\nfirst"}}},
				map[string]any{"type": "error", "id": jsonString(id), "code": "not_member", "message": jsonString("join \"" + id + "\"\nfirst")}},
			{&pb.Reply{RequestId: id, Kind: &pb.Reply_Subscribed{Subscribed: &pb.Subscribed{Group: "room-1", Seq: 10, ReadSeq: 8, Recovered: true}}},
				map[string]any{"type": "subscribed", "id": jsonString(id), "group": "room-1", "seq": json.Number("10"), "read_seq": json.Number("8"), "recovered": true}},
			{&pb.Reply{RequestId: id, Kind: &pb.Reply_Subscribed{Subscribed: &pb.Subscribed{Group: "g"}}},
				map[string]any{"type": "subscribed", "id": jsonString(id), "group": "g", "seq": json.Number("0"), "read_seq": json.Number("0"), "recovered": false}},
		}
		for _, tt := range tests {
			if id == "" {
				delete(tt.want, "id") // omitted, not ""
			}
			m := decodeOne(t, encodeReply(tt.r))
			if !reflect.DeepEqual(m, tt.want) {
				t.Errorf("encodeReply(%v):\n got  %#v\n want %#v", tt.r, m, tt.want)
			}
		}
	}
	if b := encodeReply(&pb.Reply{RequestId: "x"}); b != nil {
		t.Errorf("reply without kind encoded as %q, want nil", b)
	}
}

// TestEncodeError: the error frame the edge sends for a bad client frame.
func TestEncodeError(t *testing.T) {
	t.Parallel()
	_, ferr := DecodeClientFrame([]byte(`{"type":"join","id":"r\"1","group":"a b"}`))
	m := decodeOne(t, encodeError(`r"1`, ferr.Code, ferr.Message))
	want := map[string]any{"type": "error", "id": `r"1`, "code": "bad_request", "message": ferr.Message}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("error frame = %#v, want %#v", m, want)
	}
}
