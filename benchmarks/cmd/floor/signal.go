package main

import (
	"strconv"
)

// signalKinds are the kinds a client may send (docs/PROTOCOL.md).
var signalKinds = map[string]bool{"offer": true, "answer": true, "ice": true, "bye": true, "cancel": true}

// maxCallsPerSession bounds a session's call_seq counters: the floor
// keeps no signal state beyond them, and a benchmark session that places
// a call every few milliseconds for minutes must not grow without bound.
// A call forgotten this way restarts its call_seq at 1, which no
// benchmark here can observe (each call sends one signal per side).
const maxCallsPerSession = 1 << 16

// addUser makes c reachable by signals to its user.
func (s *server) addUser(c *conn) {
	s.umu.Lock()
	s.users[c.user] = append(s.users[c.user], c)
	s.umu.Unlock()
}

func (s *server) removeUser(c *conn) {
	s.umu.Lock()
	defer s.umu.Unlock()
	l := s.users[c.user]
	for i, x := range l {
		if x == c {
			l[i] = l[len(l)-1]
			l[len(l)-1] = nil
			l = l[:len(l)-1]
			break
		}
	}
	if len(l) == 0 {
		delete(s.users, c.user)
	} else {
		s.users[c.user] = l
	}
}

// signal relays one signal frame to the sessions of f.To (or to the one
// session f.ToSession), then acks it. The frame is encoded once and the
// same bytes are queued to every target, as publish does; it is queued
// before the ack, so a caller that has its ack knows the callee's writer
// has the signal.
func (c *conn) signal(f *frame) {
	if f.To == "" || f.Call == "" || !signalKinds[f.Kind] {
		c.enqueue(errorFrame(f.ID, "bad_request", "signal needs to, call and a kind of offer, answer, ice, bye, cancel"))
		return
	}
	if c.callSeqs == nil || len(c.callSeqs) >= maxCallsPerSession {
		c.callSeqs = map[string]uint64{}
	}
	c.callSeqs[f.Call]++
	b := make([]byte, 0, 128+len(c.user)+len(f.Call)+len(f.Payload))
	b = append(b, `{"type":"signal"`...)
	b = appendStrField(b, "from", c.user)
	b = appendStrField(b, "from_session", c.session)
	b = appendStrField(b, "call", f.Call)
	b = strconv.AppendUint(append(b, `,"call_seq":`...), c.callSeqs[f.Call], 10)
	b = appendStrField(b, "kind", f.Kind)
	if len(f.Payload) > 0 {
		b = append(append(b, `,"payload":`...), f.Payload...)
	}
	b = append(b, '}')

	s := c.srv
	n := 0
	s.umu.Lock()
	for _, t := range s.users[f.To] {
		if f.ToSession == "" || t.session == f.ToSession {
			t.enqueue(b)
			n++
		}
	}
	s.umu.Unlock()
	if n == 0 {
		s.offline.Add(1)
		c.enqueue(errorReason(f.ID, "unavailable", "offline", "no live session of "+f.To))
		return
	}
	s.signals.Add(1)
	c.enqueue(ack(f.ID, "", 0))
}
