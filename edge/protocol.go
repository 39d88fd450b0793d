package edge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	pb "github.com/causeway/causeway/schemas/causewaypb"
)

// Error codes of PROTOCOL.md, mapped here and nowhere else.
const (
	CodeBadRequest   = "bad_request"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeNotMember    = "not_member"
	CodeTooLarge     = "too_large"
	CodeRateLimited  = "rate_limited"
	CodeUnavailable  = "unavailable"
	CodeInternal     = "internal"
)

var errorCodes = map[string]bool{CodeBadRequest: true, CodeUnauthorized: true, CodeForbidden: true, CodeNotMember: true,
	CodeTooLarge: true, CodeRateLimited: true, CodeUnavailable: true, CodeInternal: true}

// knownCode keeps a metrics label to the documented codes.
func knownCode(code string) string {
	if errorCodes[code] {
		return code
	}
	return "other"
}

// WebSocket close codes (docs/PROTOCOL.md).
const (
	CloseGoingAway     = 4000 // edge draining: reconnect elsewhere
	CloseProtocol      = 4400 // repeated protocol abuse
	CloseUnauthorized  = 4401 // no valid hello
	ClosePolicy        = 4408 // policy or rate
	CloseSlowConsumer  = 4409 // send queue overflowed: reconnect, resubscribe with since
	CloseMessageTooBig = 1009
)

// Subprotocol is the WebSocket subprotocol of PROTOCOL.md v1.
const Subprotocol = "causeway.v1"

// Reach policies (edge.reach): whom a user may signal and whose presence
// they may see.
const (
	// ReachSharedGroup: users sharing a group with them (and themselves).
	// Signals and presence requests go through the requester's own
	// stream, which attaches the requester's groups; the target's stream
	// refuses with forbidden (reason reach) when none is shared.
	ReachSharedGroup = "shared_group"
	// ReachAny: any user ID; requests go straight to the target's stream.
	ReachAny = "any"
)

// checksReach reports whether requests to other users are routed for the
// reach check ("" is the default, shared_group).
func (c *Config) checksReach() bool { return c.Reach != ReachAny }

// maxVia bounds the groups a session has joins or leaves in flight for
// (conn.via); beyond it, requests pipelined behind a join may overtake
// it (and be answered not_member).
const maxVia = 256

// pending is a join or leave in flight, as the beginnings of the frames
// that answer it: the sequencer's ack (which names the group) or an error
// (the sequencer's, or the edge's own unavailable). Both nil: a request
// without id, which no frame answers.
type pending struct{ ack, err []byte }

// awaitAnswer notes a join or leave of group, sent through the user's
// stream with request id, whose answer the session's later requests for
// the group must not overtake.
func (c *conn) awaitAnswer(group, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.via == nil {
		c.via = make(map[string][]pending)
	}
	if _, ok := c.via[group]; !ok && len(c.via) >= maxVia {
		return
	}
	var p pending
	if id != "" {
		q, _ := json.Marshal(id)
		g, _ := json.Marshal(group)
		p.ack = append(append(append([]byte(`{"type":"ack","id":`), q...), `,"group":`...), g...)
		p.err = append(append([]byte(`{"type":"error","id":`), q...), ',')
	}
	c.via[group] = append(c.via[group], p)
}

// noteAnswerLocked drops the pending request a frame answers; the caller
// holds c.mu.
func (c *conn) noteAnswerLocked(frame []byte) {
	if !bytes.HasPrefix(frame, []byte(`{"type":"ack","id":`)) && !bytes.HasPrefix(frame, []byte(`{"type":"error","id":`)) {
		return
	}
	for g, ps := range c.via {
		for i, p := range ps {
			if p.ack == nil || !bytes.HasPrefix(frame, p.ack) && !bytes.HasPrefix(frame, p.err) {
				continue
			}
			if ps = append(ps[:i], ps[i+1:]...); len(ps) == 0 {
				delete(c.via, g)
				if len(c.via) == 0 {
					c.via = nil // an empty map keeps its buckets (issue 8)
				}
			} else {
				c.via[g] = ps
			}
			return
		}
	}
}

// routedVia reports whether the session's requests for group go through
// the user's stream for now.
func (c *conn) routedVia(group string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.via[group]
	return ok
}

// produceGroup writes a request for the frame's group: to the group, or,
// while a join or leave of it is in flight, behind it through the user's
// stream.
func (c *conn) produceGroup(f *ClientFrame, ev *pb.GroupEvent) {
	if !c.routedVia(f.Group) {
		c.produce(f, ev)
		return
	}
	via := *f
	via.Group, ev.ForwardTo = personalStream(c.id.User), f.Group
	c.produce(&via, ev)
}

// ClientFrame is one decoded client -> edge frame. Fields a type does not
// use are ignored.
type ClientFrame struct {
	Type        string          `json:"type"`
	ID          string          `json:"id,omitempty"`
	Token       string          `json:"token,omitempty"`
	Group       string          `json:"group,omitempty"`
	Since       *uint64         `json:"since,omitempty"`
	Seq         *uint64         `json:"seq,omitempty"`
	Body        json.RawMessage `json:"body,omitempty"`
	ClientMsgID string          `json:"client_msg_id,omitempty"`
	To          string          `json:"to,omitempty"`
	ToSession   string          `json:"to_session,omitempty"`
	Call        string          `json:"call,omitempty"`
	Kind        string          `json:"kind,omitempty"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	Users       []string        `json:"users,omitempty"`
	// Presence on subscribe: also push the group's member presence.
	Presence bool `json:"presence,omitempty"`
	// Resume on hello: the session this client had before reconnecting.
	Resume string `json:"resume,omitempty"`
}

// FrameError is a client-visible failure: one of the documented codes.
type FrameError struct {
	Code    string
	Message string
}

func (e *FrameError) Error() string { return e.Code + ": " + e.Message }

func badRequest(format string, args ...any) *FrameError {
	return &FrameError{Code: CodeBadRequest, Message: fmt.Sprintf(format, args...)}
}

const (
	maxIDLen          = 128
	maxClientMsgIDLen = 128
	// MaxPresenceUsers bounds one presence request.
	MaxPresenceUsers = 100
)

// Signal kinds a client may send (answered_elsewhere is the edge's own).
var signalKinds = map[string]bool{"offer": true, "answer": true, "ice": true, "bye": true, "cancel": true}

// DecodeClientFrame parses and validates one frame. On failure it still
// returns the request ID when one could be read, so the error can echo it.
func DecodeClientFrame(line []byte) (ClientFrame, *FrameError) {
	var f ClientFrame
	if t := bytes.TrimLeft(line, " \t\r"); len(t) > 0 && t[0] != '{' {
		if json.Valid(line) {
			return ClientFrame{}, badRequest("a frame must be a JSON object")
		}
		return ClientFrame{}, badRequest("malformed JSON")
	}
	if fast, ok := decodeFast(line); ok {
		f = fast
	} else if err := json.Unmarshal(line, &f); err != nil {
		id := salvageID(line)
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return ClientFrame{ID: id}, badRequest("field %q has the wrong type: want %s", te.Field, te.Type.String())
		}
		return ClientFrame{ID: id}, badRequest("malformed JSON: %v", err)
	}
	if len(f.ID) > maxIDLen {
		return ClientFrame{}, badRequest("id longer than %d bytes", maxIDLen)
	}
	if err := f.validate(); err != nil {
		return ClientFrame{ID: f.ID}, err
	}
	return f, nil
}

// salvageID reads "id" from a frame that failed to decode as a whole.
func salvageID(line []byte) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(line, &m) != nil {
		return ""
	}
	var id string
	if json.Unmarshal(m["id"], &id) != nil || len(id) > maxIDLen {
		return ""
	}
	return id
}

func (f *ClientFrame) validate() *FrameError {
	needGroup := func() *FrameError {
		if f.Group == "" {
			return badRequest("%s needs \"group\"", f.Type)
		}
		if !ValidGroupID(f.Group) {
			return badRequest("group %q is not a valid group ID (1-128 of A-Z a-z 0-9 . _ - : @ +)", f.Group)
		}
		return nil
	}
	switch f.Type {
	case "":
		return badRequest("frame needs \"type\"")
	case "refresh":
		if f.Token == "" {
			return badRequest("refresh needs \"token\"")
		}
	case "hello":
		if f.Token == "" {
			return badRequest("hello needs \"token\"")
		}
		if f.Resume != "" && (len(f.Resume) > maxIDLen || !validToken(f.Resume)) {
			return badRequest("resume must be a session ID")
		}
	case "ping":
	case "join", "leave", "unsubscribe", "typing":
		return needGroup()
	case "subscribe":
		return needGroup()
	case "send":
		if err := needGroup(); err != nil {
			return err
		}
		if f.ClientMsgID == "" {
			return badRequest("send needs \"client_msg_id\"")
		}
		if len(f.ClientMsgID) > maxClientMsgIDLen || !validToken(f.ClientMsgID) {
			return badRequest("client_msg_id must be 1-%d printable characters", maxClientMsgIDLen)
		}
		if len(f.Body) == 0 {
			return badRequest("send needs \"body\"")
		}
	case "read":
		if err := needGroup(); err != nil {
			return err
		}
		if f.Seq == nil {
			return badRequest("read needs \"seq\"")
		}
	case "signal":
		if f.To == "" || f.Call == "" || f.Kind == "" {
			return badRequest("signal needs \"to\", \"call\" and \"kind\"")
		}
		if !ValidUserID(f.To) {
			return badRequest("to %q is not a valid user ID", f.To)
		}
		if len(f.Call) > maxIDLen || !validToken(f.Call) {
			return badRequest("call must be 1-%d printable characters", maxIDLen)
		}
		if !signalKinds[f.Kind] {
			return badRequest("signal kind %q: want offer, answer, ice, bye or cancel", f.Kind)
		}
		if f.ToSession != "" && (len(f.ToSession) > maxIDLen || !validToken(f.ToSession)) {
			return badRequest("to_session must be a session ID")
		}
	case "presence":
		if len(f.Users) == 0 {
			return badRequest("presence needs a non-empty \"users\"")
		}
		if len(f.Users) > MaxPresenceUsers {
			return badRequest("presence takes at most %d users", MaxPresenceUsers)
		}
		for _, u := range f.Users {
			if !ValidUserID(u) {
				return badRequest("user %q is not a valid user ID", u)
			}
		}
	default:
		return badRequest("unknown frame type %q", f.Type)
	}
	return nil
}

// ValidGroupID reports whether s is a well-formed group ID.
func ValidGroupID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == '-', c == ':', c == '@', c == '+':
		default:
			return false
		}
	}
	return true
}

// ValidUserID reports whether s is a well-formed user ID (the token's sub).
func ValidUserID(s string) bool { return ValidGroupID(s) }

// validToken: printable ASCII without control characters.
func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return len(s) > 0
}

// frameWriter appends server frames as JSON lines. It writes by hand on the
// hot path (msg, member) so a frame is encoded once per edge with no
// reflection, and falls back to encoding/json for the rest.
type frameWriter struct{ b []byte }

func (w *frameWriter) str(s string) {
	// strconv.AppendQuote escapes differently from JSON; use the JSON
	// encoder's rules via json.Marshal for exotic input only.
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			q, _ := json.Marshal(s)
			w.b = append(w.b, q...)
			return
		}
	}
	w.b = append(w.b, '"')
	w.b = append(w.b, s...)
	w.b = append(w.b, '"')
}

func (w *frameWriter) key(k string) {
	w.b = append(w.b, ',', '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
}

func (w *frameWriter) uint(v uint64) { w.b = strconv.AppendUint(w.b, v, 10) }
func (w *frameWriter) int(v int64)   { w.b = strconv.AppendInt(w.b, v, 10) }

// compactDecoded is compactJSON for a value the frame decoder already
// validated (a body, a payload): one that has no whitespace outside its
// strings, as clients send them, comes back as it is, without a copy or a
// second validation (issue 8: CPU per sent message). An empty value is
// refused as compactJSON refuses it.
func compactDecoded(v []byte) ([]byte, error) {
	if len(v) == 0 {
		return compactJSON(v)
	}
	inString := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case inString:
			if c == '\\' {
				i++
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			return compactJSON(v)
		}
	}
	return v, nil
}

// compactJSON validates and compacts a JSON value, so a body can never
// carry a newline into the NDJSON stream.
func compactJSON(raw []byte) ([]byte, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func marshalFrame(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own frame structs are marshalled here.
		panic("edge: marshal frame: " + err.Error())
	}
	return b
}

type errorFrame struct {
	Type    string `json:"type"`
	ID      string `json:"id,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Reason  string `json:"reason,omitempty"`
	// User is the user a refusal is about (a presence request's users
	// are answered one by one).
	User string `json:"user,omitempty"`
}

func encodeError(id, code, msg string) []byte {
	return encodeErrorReason(id, code, msg, "")
}

func encodeErrorReason(id, code, msg, reason string) []byte {
	return marshalFrame(errorFrame{Type: "error", ID: id, Code: code, Message: msg, Reason: reason})
}

type signalFrame struct {
	Type        string          `json:"type"`
	From        string          `json:"from"`
	FromSession string          `json:"from_session"`
	Call        string          `json:"call"`
	CallSeq     uint64          `json:"call_seq"`
	Kind        string          `json:"kind"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	Ts          int64           `json:"ts"`
}

type presenceFrame struct {
	Type     string `json:"type"`
	Group    string `json:"group,omitempty"`
	User     string `json:"user,omitempty"`
	Status   string `json:"status,omitempty"`
	Sessions uint32 `json:"sessions"`
	Ts       int64  `json:"ts"`
}

type presenceCountsFrame struct {
	Type    string `json:"type"`
	Group   string `json:"group"`
	Online  uint32 `json:"online"`
	Members uint32 `json:"members"`
	Ts      int64  `json:"ts"`
}

type receiptsFrame struct {
	Type    string      `json:"type"`
	Group   string      `json:"group"`
	Members uint32      `json:"members"`
	Reads   []readCount `json:"reads"`
}

type readCount struct {
	Seq   uint64 `json:"seq"`
	Count uint32 `json:"count"`
}

type typingFrame struct {
	Type  string   `json:"type"`
	Group string   `json:"group"`
	Users []string `json:"users"`
}

type welcomeFrame struct {
	Type    string `json:"type"`
	ID      string `json:"id,omitempty"`
	User    string `json:"user"`
	Session string `json:"session"`
	Edge    string `json:"edge"`
}

type ackFrame struct {
	Type  string `json:"type"`
	ID    string `json:"id,omitempty"`
	Group string `json:"group,omitempty"`
	Seq   uint64 `json:"seq,omitempty"`
}

type subscribedFrame struct {
	Type      string `json:"type"`
	ID        string `json:"id,omitempty"`
	Group     string `json:"group"`
	Seq       uint64 `json:"seq"`
	ReadSeq   uint64 `json:"read_seq"`
	Recovered bool   `json:"recovered"`
}
