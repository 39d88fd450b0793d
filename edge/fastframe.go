package edge

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// decodeFast decodes the frames clients send all the time (send, read,
// typing, subscribe ...) without encoding/json's reflection: about 5x
// less CPU and fewer allocations per frame (benchmarks/micro), which is
// most of an edge's work per inbound message after the socket itself.
//
// It accepts only what it decodes exactly as json.Unmarshal would: one
// object whose keys are ClientFrame's own names (exact case, each once),
// string values without escapes, non-negative integers without
// exponent or fraction for since and seq, true or false for presence, and
// bodies and payloads that are valid JSON. Anything else (an escape, an
// unknown or repeated key, null, users, bad JSON) reports ok false, and
// DecodeClientFrame falls back to encoding/json, which also words the
// error. TestDecodeFastMatchesEncodingJSON and the fuzz target check that
// both agree.
func decodeFast(line []byte) (f ClientFrame, ok bool) {
	p := fastParser{b: line}
	if !p.byte('{') {
		return f, false
	}
	var seen uint16
	if p.peek() == '}' {
		p.i++
		return f, p.end()
	}
	for {
		key, ok := p.plainString()
		if !ok || !p.byte(':') {
			return f, false
		}
		bit, field := fastField(key)
		if bit == 0 || seen&bit != 0 {
			return f, false
		}
		seen |= bit
		p.space()
		switch field {
		case fType, fID, fToken, fGroup, fClientMsgID, fTo, fToSession, fCall, fKind, fResume:
			v, ok := p.plainString()
			if !ok {
				return f, false
			}
			*f.stringField(field) = string(v)
		case fSince, fSeq:
			n, ok := p.uint()
			if !ok {
				return f, false
			}
			if field == fSince {
				f.Since = &n
			} else {
				f.Seq = &n
			}
		case fBody, fPayload:
			raw, ok := p.value()
			if !ok || string(raw) == "null" {
				return f, false
			}
			if field == fBody {
				f.Body = bytes.Clone(raw)
			} else {
				f.Payload = bytes.Clone(raw)
			}
		case fPresence:
			switch {
			case p.literal("true"):
				f.Presence = true
			case p.literal("false"):
			default:
				return f, false
			}
		default:
			return f, false
		}
		p.space()
		switch {
		case p.byte(','):
			continue
		case p.byte('}'):
			return f, p.end()
		default:
			return f, false
		}
	}
}

const (
	fNone = iota
	fType
	fID
	fToken
	fGroup
	fSince
	fSeq
	fBody
	fClientMsgID
	fTo
	fToSession
	fCall
	fKind
	fPayload
	fPresence
	fResume
)

// fastField maps a key to its field and its bit in a seen-set; users
// (an array) is left to encoding/json.
func fastField(key []byte) (uint16, int) {
	var f int
	switch string(key) {
	case "type":
		f = fType
	case "id":
		f = fID
	case "token":
		f = fToken
	case "group":
		f = fGroup
	case "since":
		f = fSince
	case "seq":
		f = fSeq
	case "body":
		f = fBody
	case "client_msg_id":
		f = fClientMsgID
	case "to":
		f = fTo
	case "to_session":
		f = fToSession
	case "call":
		f = fCall
	case "kind":
		f = fKind
	case "payload":
		f = fPayload
	case "presence":
		f = fPresence
	case "resume":
		f = fResume
	default:
		return 0, fNone
	}
	return 1 << f, f
}

func (f *ClientFrame) stringField(field int) *string {
	switch field {
	case fType:
		return &f.Type
	case fID:
		return &f.ID
	case fToken:
		return &f.Token
	case fGroup:
		return &f.Group
	case fClientMsgID:
		return &f.ClientMsgID
	case fTo:
		return &f.To
	case fToSession:
		return &f.ToSession
	case fCall:
		return &f.Call
	case fKind:
		return &f.Kind
	default:
		return &f.Resume
	}
}

type fastParser struct {
	b []byte
	i int
}

// space skips JSON whitespace.
func (p *fastParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *fastParser) peek() byte {
	p.space()
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

// byte consumes c after whitespace.
func (p *fastParser) byte(c byte) bool {
	if p.peek() != c {
		return false
	}
	p.i++
	return true
}

// end reports whether only whitespace is left.
func (p *fastParser) end() bool {
	p.space()
	return p.i == len(p.b)
}

func (p *fastParser) literal(s string) bool {
	if !bytes.HasPrefix(p.b[p.i:], []byte(s)) {
		return false
	}
	p.i += len(s)
	return true
}

// plainString reads a string without escapes or control characters, in
// valid UTF-8: its bytes are its value.
func (p *fastParser) plainString() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			return s, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// uint reads a JSON integer that fits a uint64: no sign, fraction,
// exponent or leading zero (those are left to encoding/json).
func (p *fastParser) uint() (uint64, bool) {
	start := p.i
	var n uint64
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		d := uint64(p.b[p.i] - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
		p.i++
	}
	digits := p.i - start
	if digits == 0 || digits > 1 && p.b[start] == '0' {
		return 0, false
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	return n, true
}

// value reads one JSON value of any kind and returns its bytes, checked
// by json.Valid.
func (p *fastParser) value() ([]byte, bool) {
	start := p.i
	depth := 0
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch c {
		case '"':
			p.i++
			for p.i < len(p.b) && p.b[p.i] != '"' {
				if p.b[p.i] == '\\' {
					p.i++
				}
				p.i++
			}
			if p.i >= len(p.b) {
				return nil, false
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return p.raw(start)
			}
			depth--
		case ',':
			if depth == 0 {
				return p.raw(start)
			}
		}
		p.i++
		if depth == 0 && (c == '"' || c == '}' || c == ']') {
			return p.raw(start)
		}
	}
	return p.raw(start)
}

func (p *fastParser) raw(start int) ([]byte, bool) {
	v := bytes.TrimRight(p.b[start:p.i], " \t\r\n")
	if len(v) == 0 || !json.Valid(v) {
		return nil, false
	}
	return v, true
}
