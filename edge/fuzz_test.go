package edge

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	pb "github.com/causeway/causeway/schemas/causewaypb"
	"github.com/golang-jwt/jwt/v5"
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
		case "hello", "refresh":
			if fr.Token == "" {
				t.Fatalf("%s without token accepted: %q", fr.Type, line)
			}
		case "ping":
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
		&pb.GroupEvent{Version: 1, Group: "u:u", User: "u", Kind: &pb.GroupEvent_Join{Join: &pb.Join{Group: "g"}}},
		&pb.GroupEvent{Version: 1, Group: "u:u", User: "u", ForwardTo: "g", Kind: &pb.GroupEvent_Detach{Detach: &pb.Detach{}}},
		&pb.GroupEvent{Version: 1, Group: "u:v", User: "u", Kind: &pb.GroupEvent_Signal{Signal: &pb.Signal{Call: "c", Kind: "offer", Reach: &pb.Reach{Groups: []string{"g"}}}}},
		&pb.GroupEvent{Version: 1, Group: "u:u", User: "u", Kind: &pb.GroupEvent_MembershipIndex{MembershipIndex: &pb.MembershipIndex{Group: "g", Member: true, Seq: 1}}},
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
			{Session: "s", RequestId: "4", Kind: &pb.Reply_Error{Error: &pb.Error{Code: "forbidden", Reason: "reach", User: "b", Message: "m"}}},
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

// fuzzEdKey is a fixed Ed25519 key, so committed EdDSA seeds stay
// signed by a key the fuzzed verifier knows.
var fuzzEdKey = ed25519.NewKeyFromSeed([]byte("causeway-fuzz-ed25519-key-seed!!"))

// FuzzVerifyToken: any string presented as a token (in hello or refresh)
// is accepted only as a well-formed identity within the configured
// bounds, or refused with a TokenError of a known reason that does not
// repeat the token; never a panic.
func FuzzVerifyToken(f *testing.F) {
	secret := []byte("fuzz-secret-0123456789abcdef0123456789")
	der, err := x509.MarshalPKIXPublicKey(fuzzEdKey.Public())
	if err != nil {
		f.Fatal(err)
	}
	file := filepath.Join(f.TempDir(), "keys.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{"kid": "fz"}, Bytes: der})
	if err := os.WriteFile(file, pemBytes, 0o600); err != nil {
		f.Fatal(err)
	}
	const maxLife = 24 * time.Hour
	v, err := NewVerifierFrom(VerifierConfig{Secret: secret, PublicKeyFile: file, Issuer: "iss", Audience: "aud", MaxLifetime: maxLife})
	if err != nil {
		f.Fatal(err)
	}
	// Seeds valid now, so the accepting path is fuzzed too.
	now := time.Now()
	c := Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "ann", Issuer: "iss", Audience: jwt.ClaimStrings{"aud"},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}, Groups: []string{"room-*"}}
	for _, m := range []struct {
		method jwt.SigningMethod
		key    any
		kid    string
	}{{jwt.SigningMethodHS256, secret, ""}, {jwt.SigningMethodEdDSA, fuzzEdKey, "fz"}, {jwt.SigningMethodHS256, pemBytes, ""}} {
		tok := jwt.NewWithClaims(m.method, c)
		if m.kid != "" {
			tok.Header["kid"] = m.kid
		}
		s, err := tok.SignedString(m.key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(s)
	}
	known := map[string]bool{}
	for _, r := range authReasons {
		known[r] = true
	}
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := v.Verify(tok)
		if err != nil {
			var te *TokenError
			if !errors.As(err, &te) || !known[te.Reason] {
				t.Fatalf("refusal %v: want a TokenError with a known reason", err)
			}
			if len(tok) >= 16 && strings.Contains(err.Error(), tok) {
				t.Fatalf("the refusal repeats the token: %v", err)
			}
			return
		}
		if !ValidUserID(id.User) {
			t.Fatalf("accepted invalid user %q", id.User)
		}
		if id.Expires.Before(time.Now().Add(-time.Minute)) || id.Expires.After(time.Now().Add(maxLife+time.Minute)) {
			t.Fatalf("accepted exp %s outside (now, now + max lifetime]", id.Expires)
		}
		for _, p := range id.Groups {
			if _, err := path.Match(p, ""); err != nil {
				t.Fatalf("accepted bad pattern %q", p)
			}
		}
		var hdr struct {
			Alg string `json:"alg"`
		}
		raw, _ := base64.RawURLEncoding.DecodeString(strings.SplitN(tok, ".", 2)[0])
		if json.Unmarshal(raw, &hdr) != nil || hdr.Alg != "HS256" && hdr.Alg != "EdDSA" {
			t.Fatalf("accepted a token whose header %q names neither HS256 nor EdDSA", raw)
		}
	})
}

// fastFrameSeeds are frames clients send, and near misses that the fast
// decoder must leave to encoding/json.
var fastFrameSeeds = []string{
	`{"type":"send","id":"r-1","group":"g","client_msg_id":"c-1","body":"hello"}`,
	`{"type":"send","id":"r-1","group":"g","client_msg_id":"c-1","body":{"t":"é","n":[1,2.5e3,{"x":"}"}],"q":"a\"b"}}`,
	` { "type" : "read" , "group" : "g" , "seq" : 18446744073709551615 } `,
	`{"type":"read","group":"g","seq":18446744073709551616}`,
	`{"type":"subscribe","group":"g","since":0,"presence":true}`,
	`{"type":"subscribe","group":"g","since":01}`,
	`{"type":"subscribe","group":"g","since":-1}`,
	`{"type":"subscribe","group":"g","since":1.0}`,
	`{"type":"subscribe","group":"g","since":null}`,
	`{"type":"signal","to":"bob","call":"c","kind":"offer","to_session":"s","payload":{"sdp":"v=0\r\n"}}`,
	`{"type":"signal","to":"bob","call":"c","kind":"offer","payload":null}`,
	`{"type":"hello","token":"a.b.c","resume":"s-1"}`,
	`{"type":"join","group":"g","group":"h"}`,
	`{"Type":"join","group":"g"}`,
	`{"type":"join","group":"g","extra":1}`,
	`{"type":"jo\u0069n","group":"g"}`,
	"{\"type\":\"join\",\"group\":\"g\xff\"}",
	`{"type":"join","group":"g",}`,
	`{"type":"join","group":"g"} x`,
	`{"type":"send","group":"g","client_msg_id":"c","body":tru}`,
	`{"type":"send","group":"g","client_msg_id":"c","body":[1,2}`,
	`{"type":"presence","users":["a","b"]}`,
	`{}`,
}

// TestDecodeFastMatchesEncodingJSON: what the fast decoder accepts, it
// decodes exactly as encoding/json does; and it does take the frames
// clients send most.
func TestDecodeFastMatchesEncodingJSON(t *testing.T) {
	for _, s := range fastFrameSeeds {
		checkFastFrame(t, []byte(s))
	}
	for _, s := range fastFrameSeeds[:3] {
		if _, ok := decodeFast([]byte(s)); !ok {
			t.Errorf("decodeFast left %s to encoding/json", s)
		}
	}
}

// FuzzDecodeFast: the fast decoder agrees with encoding/json on any input
// it accepts.
func FuzzDecodeFast(f *testing.F) {
	for _, s := range fastFrameSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) { checkFastFrame(t, line) })
}

func checkFastFrame(t *testing.T, line []byte) {
	t.Helper()
	fast, ok := decodeFast(line)
	if !ok {
		return
	}
	var want ClientFrame
	if err := json.Unmarshal(line, &want); err != nil {
		t.Fatalf("decodeFast accepted %q, encoding/json refuses it: %v", line, err)
	}
	if !reflect.DeepEqual(fast, want) {
		t.Fatalf("decodeFast(%q) = %+v, encoding/json %+v", line, fast, want)
	}
	checkCompactDecoded(t, fast.Body)
	checkCompactDecoded(t, fast.Payload)
}

// checkCompactDecoded: for a decoded (valid) value, compactDecoded gives
// what compactJSON gives.
func checkCompactDecoded(t *testing.T, v []byte) {
	t.Helper()
	got, gerr := compactDecoded(v)
	want, werr := compactJSON(v)
	if (gerr == nil) != (werr == nil) || !bytes.Equal(got, want) {
		t.Fatalf("compactDecoded(%q) = %q, %v; compactJSON %q, %v", v, got, gerr, want, werr)
	}
}
