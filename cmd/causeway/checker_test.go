package main

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

// The invariant checker of ../shared/FAULTS.md, over everything every
// client sent and received.

type outcome int

const (
	acked outcome = iota
	failed
	unknown // no answer before the deadline
)

// sendRec is one send by one client, in send order.
type sendRec struct {
	id      string // client_msg_id, unique per sender
	outcome outcome
	seq     uint64 // from the ack
	after   string // a message this client had received before sending (causal parent), or ""
}

// recvRec is one timeline event delivered to the application.
type recvRec struct {
	seq  uint64
	from string
	id   string // client_msg_id; "" for member events
}

// actorLog is what one client did in one group.
type actorLog struct {
	user, group string
	sends       []sendRec
	recv        []recvRec
	// lost is true when the client was told recovered=false (a reported,
	// not silent, gap).
	lost bool
}

type report struct {
	events, acked, violations int
	lines                     []string
}

func (r *report) bad(format string, args ...any) {
	r.violations++
	if len(r.lines) < 30 {
		r.lines = append(r.lines, fmt.Sprintf(format, args...))
	}
}

func msgKey(from, id string) string { return from + "/" + id }

// check verifies: every acked message reaches every member of its group,
// with the acked seq; a failed send is never delivered; no client sees a
// seq twice and seqs are dense unless the gap was reported; all members
// see the same message at each seq; per-sender FIFO; causal pairs in
// order.
func check(logs []*actorLog) report {
	var r report
	byGroup := map[string][]*actorLog{}
	for _, l := range logs {
		byGroup[l.group] = append(byGroup[l.group], l)
	}
	groups := make([]string, 0, len(byGroup))
	for g := range byGroup {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		members := byGroup[g]
		atSeq := map[uint64]string{} // seq -> message key, agreed by all
		seqOf := map[string]uint64{}
		for _, l := range members {
			var prev uint64
			for i, e := range l.recv {
				r.events++
				if i > 0 && e.seq <= prev {
					r.bad("%s in %s: seq %d after %d (duplicate or reorder)", l.user, g, e.seq, prev)
				}
				if i > 0 && e.seq > prev+1 && !l.lost {
					r.bad("%s in %s: gap %d..%d not reported", l.user, g, prev+1, e.seq-1)
				}
				prev = e.seq
				if e.id == "" {
					continue
				}
				k := msgKey(e.from, e.id)
				if have, ok := atSeq[e.seq]; ok && have != k {
					r.bad("%s in %s: seq %d is %s, another member saw %s", l.user, g, e.seq, k, have)
				}
				atSeq[e.seq] = k
				if s, ok := seqOf[k]; ok && s != e.seq {
					r.bad("%s in %s: %s delivered as seq %d and %d", l.user, g, k, s, e.seq)
				}
				seqOf[k] = e.seq
			}
		}
		for _, l := range members {
			var lastSeq uint64
			for _, s := range l.sends {
				k := msgKey(l.user, s.id)
				got, delivered := seqOf[k]
				switch s.outcome {
				case acked:
					r.acked++
					if !delivered {
						r.bad("%s in %s: acked %s (seq %d) delivered to nobody", l.user, g, s.id, s.seq)
						continue
					}
					if got != s.seq {
						r.bad("%s in %s: %s acked as seq %d, delivered as %d", l.user, g, s.id, s.seq, got)
					}
					if s.seq <= lastSeq {
						r.bad("%s in %s: FIFO: %s has seq %d after seq %d", l.user, g, s.id, s.seq, lastSeq)
					}
					lastSeq = s.seq
					for _, m := range members {
						if !m.lost && !m.has(s.seq, k) {
							r.bad("%s in %s: acked %s (seq %d) never reached %s", l.user, g, s.id, s.seq, m.user)
						}
					}
				case failed:
					if delivered {
						r.bad("%s in %s: failed send %s was delivered as seq %d", l.user, g, s.id, got)
					}
				}
				if s.after != "" && delivered {
					if p, ok := seqOf[s.after]; ok && p >= got {
						r.bad("%s in %s: reply %s (seq %d) ordered before its cause %s (seq %d)", l.user, g, s.id, got, s.after, p)
					}
				}
			}
		}
	}
	return r
}

func (l *actorLog) has(seq uint64, key string) bool {
	i := sort.Search(len(l.recv), func(i int) bool { return l.recv[i].seq >= seq })
	return i < len(l.recv) && l.recv[i].seq == seq && msgKey(l.recv[i].from, l.recv[i].id) == key
}

func (r report) String() string {
	s := fmt.Sprintf("events checked %d, acked sends %d, violations %d", r.events, r.acked, r.violations)
	if len(r.lines) > 0 {
		s += "\n  " + strings.Join(r.lines, "\n  ")
	}
	return s
}

// synthetic builds a consistent run: n members of one group, each sending
// k messages, everyone receiving everything in one order.
func synthetic(n, k int) []*actorLog {
	logs := make([]*actorLog, n)
	var order []recvRec
	for i := range logs {
		logs[i] = &actorLog{user: fmt.Sprintf("u%d", i), group: "g"}
	}
	seq := uint64(0)
	for j := 0; j < k; j++ {
		for i, l := range logs {
			seq++
			id := fmt.Sprintf("m%d", j)
			s := sendRec{id: id, seq: seq}
			if j > 0 && i > 0 {
				s.after = msgKey(logs[i-1].user, id) // sent after seeing the previous member's
			}
			l.sends = append(l.sends, s)
			order = append(order, recvRec{seq: seq, from: l.user, id: id})
		}
	}
	for _, l := range logs {
		l.recv = append([]recvRec(nil), order...)
	}
	return logs
}

// The checker must catch a corrupted stream: a dropped delivery, a
// reordered one, a duplicate, an order that differs between members, a
// failed send that was delivered, a reply before its cause.
func TestCheckerCatchesCorruption(t *testing.T) {
	t.Parallel()
	if r := check(synthetic(4, 20)); r.violations != 0 {
		t.Fatalf("clean run: %s", r)
	}
	corrupt := map[string]func([]*actorLog){
		"drop one delivery": func(l []*actorLog) { l[2].recv = append(l[2].recv[:10], l[2].recv[11:]...) },
		"reorder two deliveries": func(l []*actorLog) {
			l[1].recv[5], l[1].recv[6] = l[1].recv[6], l[1].recv[5]
		},
		"duplicate one delivery": func(l []*actorLog) {
			l[3].recv = append(l[3].recv[:8], append([]recvRec{l[3].recv[7]}, l[3].recv[8:]...)...)
		},
		"members disagree on the order": func(l []*actorLog) {
			a, b := l[0].recv[3], l[0].recv[4]
			l[0].recv[3] = recvRec{seq: a.seq, from: b.from, id: b.id}
			l[0].recv[4] = recvRec{seq: b.seq, from: a.from, id: a.id}
		},
		"failed send delivered": func(l []*actorLog) { l[1].sends[3].outcome = failed },
		"reply before its cause": func(l []*actorLog) {
			l[2].sends[5].after = msgKey(l[1].user, "m9")
		},
		"ack with the wrong seq": func(l []*actorLog) { l[0].sends[2].seq++ },
		"acked but never delivered": func(l []*actorLog) {
			l[0].sends = append(l[0].sends, sendRec{id: "ghost", seq: 999})
		},
	}
	for name, f := range corrupt {
		logs := synthetic(4, 20)
		f(logs)
		if r := check(logs); r.violations == 0 {
			t.Errorf("%s: not caught", name)
		}
	}
	// A gap the client was told about is not a violation.
	logs := synthetic(3, 10)
	logs[1].recv = append(logs[1].recv[:4], logs[1].recv[9:]...)
	logs[1].lost = true
	if r := check(logs); r.violations != 0 {
		t.Fatalf("reported gap counted as a violation: %s", r)
	}
}
