package rollup

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/causeway/causeway/schemas"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"google.golang.org/protobuf/proto"
)

// The rollup reads the sequencer's changelog, not the raw group log: there
// every message already has its seq, sender, send time and the member
// count, every member its join seq, and every accepted `read` is the
// member's new watermark (the sequencer validated it: a member, forward
// only, not beyond the latest seq). The rollup only counts.
//
// Counting is order-free within a transaction (the sequencer writes a
// batch's changelog sorted by key): a message counts the members whose
// watermark already passed it when it arrives, and a watermark that moves
// counts the messages it passes.

// Sequencer changelog kinds the rollup reads (consumers/sequencer).
const (
	seqKindMember = "m"
	seqKindHist   = "h"
	keySep        = "\x00"
	streamPrefix  = "u:"

	kindMember  = "m"
	kindMessage = "x"
)

// Limits configure counting and the size-adaptive summaries.
type Limits struct {
	// Window: at most one summary per group per window (level 0).
	Window time.Duration
	// MaxMessages bounds the messages tracked per group for counting: the
	// oldest leave the count (their last count stays in ClickHouse).
	MaxMessages int
	// CountsOnlyAbove: groups with more members get summaries SlowFactor
	// times less often (level 1). SenderOnlyAbove: groups with more
	// members get each message's count only at its sender (level 2).
	CountsOnlyAbove, SenderOnlyAbove int
	SlowFactor                       int
	// TTRSamples bounds the time-to-read samples kept per message.
	TTRSamples int
}

// DefaultLimits are the documented defaults.
func DefaultLimits() Limits {
	return Limits{Window: 500 * time.Millisecond, MaxMessages: 1000, CountsOnlyAbove: 100, SenderOnlyAbove: 1000, SlowFactor: 4, TTRSamples: 64}
}

type member struct {
	joined, watermark uint64
	readTs            int64
}

type group struct {
	id      string
	members map[string]*member
	msgs    []*pb.RollupMessage // by seq
	// lastEmit is when the last summary went out (log time, not
	// changelogged: after a failover one may go out early).
	lastEmit int64
	pending  int // messages with pending set
}

// State is one partition's rollup state. Apply is pure; time is the
// records' own timestamps.
type State struct {
	groups map[string]*group
	dirty  map[string][]byte
	limits Limits
	now    int64
	// rows gathers what the ClickHouse sink should get: the latest receipt
	// aggregate per message changed since the last TakeRows.
	rows map[string]*pb.RollupMessage
}

// NewState returns an empty partition state.
func NewState(l Limits) *State {
	d := DefaultLimits()
	if l.MaxMessages <= 0 {
		l.MaxMessages = d.MaxMessages
	}
	if l.SlowFactor <= 0 {
		l.SlowFactor = d.SlowFactor
	}
	if l.TTRSamples <= 0 {
		l.TTRSamples = d.TTRSamples
	}
	if l.CountsOnlyAbove <= 0 {
		l.CountsOnlyAbove = d.CountsOnlyAbove
	}
	if l.SenderOnlyAbove <= 0 {
		l.SenderOnlyAbove = d.SenderOnlyAbove
	}
	return &State{groups: make(map[string]*group), dirty: make(map[string][]byte), limits: l, rows: make(map[string]*pb.RollupMessage)}
}

func (s *State) group(id string) *group {
	g := s.groups[id]
	if g == nil {
		g = &group{id: id, members: make(map[string]*member)}
		s.groups[id] = g
	}
	return g
}

func msgSub(seq uint64) string { return fmt.Sprintf("%020d", seq) }

func key(group, kind, sub string) string { return group + keySep + kind + keySep + sub }

func (s *State) put(k string, m proto.Message) {
	b, err := proto.Marshal(m)
	if err != nil {
		panic("rollup: marshal state: " + err.Error()) // our own messages
	}
	s.dirty[k] = b
}

func (s *State) saveMember(g *group, user string, m *member) {
	s.put(key(g.id, kindMember, user), &pb.RollupMember{Version: schemas.Version, JoinedSeq: m.joined, Watermark: m.watermark, ReadTsMs: m.readTs})
}

func (s *State) saveMessage(g *group, m *pb.RollupMessage) {
	s.put(key(g.id, kindMessage, msgSub(m.GetSeq())), m)
	s.rows[key(g.id, kindMessage, msgSub(m.GetSeq()))] = m
}

// Apply takes one record of the sequencer's changelog (value nil for a
// tombstone) written at tsMs. It reports false for a record it could not
// decode.
func (s *State) Apply(k string, value []byte, tsMs int64) bool {
	s.now = max(s.now, tsMs)
	parts := strings.SplitN(k, keySep, 3)
	if len(parts) != 3 || strings.HasPrefix(parts[0], streamPrefix) {
		return true // not a group's member or history entry
	}
	gid, kind, sub := parts[0], parts[1], parts[2]
	switch kind {
	case seqKindMember:
		if value == nil {
			// Left: past reads stay counted; the member no longer counts.
			if g := s.groups[gid]; g != nil {
				if _, ok := g.members[sub]; ok {
					delete(g.members, sub)
					s.dirty[key(gid, kindMember, sub)] = nil
				}
			}
			return true
		}
		var m pb.Membership
		if proto.Unmarshal(value, &m) != nil {
			return false
		}
		s.member(s.group(gid), sub, &m)
	case seqKindHist:
		if value == nil {
			return true // the sequencer's history window moved on
		}
		var ev pb.Event
		if proto.Unmarshal(value, &ev) != nil {
			return false
		}
		if msg := ev.GetMsg(); msg != nil {
			s.message(s.group(gid), &ev, msg.GetFrom())
		}
	}
	return true
}

func (s *State) member(g *group, user string, m *pb.Membership) {
	cur := g.members[user]
	if cur == nil || cur.joined != m.GetJoinedSeq() {
		// New, or left and joined again: a fresh watermark.
		cur = &member{joined: m.GetJoinedSeq()}
		g.members[user] = cur
		s.saveMember(g, user, cur)
	}
	if m.GetReadSeq() <= cur.watermark {
		return
	}
	old := cur.watermark
	cur.watermark, cur.readTs = m.GetReadSeq(), m.GetReadTsMs()
	s.saveMember(g, user, cur)
	// Count the messages the watermark passed.
	i := sort.Search(len(g.msgs), func(i int) bool { return g.msgs[i].GetSeq() > old })
	for ; i < len(g.msgs) && g.msgs[i].GetSeq() <= cur.watermark; i++ {
		s.countRead(g, g.msgs[i], user, cur)
	}
}

func (s *State) countRead(g *group, msg *pb.RollupMessage, user string, m *member) {
	if msg.GetSender() == user || m.joined >= msg.GetSeq() {
		return // one's own message, or joined after it
	}
	msg.ReadCount++
	ts := m.readTs
	if msg.FirstReadTsMs == 0 || ts < msg.FirstReadTsMs {
		msg.FirstReadTsMs = ts
	}
	msg.LastReadTsMs = max(msg.LastReadTsMs, ts)
	if len(msg.TtrMs) < s.limits.TTRSamples {
		msg.TtrMs = append(msg.TtrMs, max(0, ts-msg.GetSentTsMs()))
	}
	if !msg.Pending {
		msg.Pending = true
		g.pending++
	}
	s.saveMessage(g, msg)
}

func (s *State) message(g *group, ev *pb.Event, sender string) {
	seq := ev.GetSeq()
	i := sort.Search(len(g.msgs), func(i int) bool { return g.msgs[i].GetSeq() >= seq })
	if i < len(g.msgs) && g.msgs[i].GetSeq() == seq {
		return // seen (a redelivered record)
	}
	if i == 0 && len(g.msgs) >= s.limits.MaxMessages {
		return // older than everything tracked
	}
	msg := &pb.RollupMessage{Version: schemas.Version, Seq: seq, Sender: sender, SentTsMs: ev.GetTsMs(), MembersAtSend: ev.GetMembers()}
	g.msgs = append(g.msgs, nil)
	copy(g.msgs[i+1:], g.msgs[i:])
	g.msgs[i] = msg
	s.saveMessage(g, msg)
	users := make([]string, 0, len(g.members))
	for u := range g.members {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		if m := g.members[u]; m.watermark >= seq {
			s.countRead(g, msg, u, m)
		}
	}
	for len(g.msgs) > s.limits.MaxMessages {
		old := g.msgs[0]
		if old.Pending {
			g.pending--
		}
		s.dirty[key(g.id, kindMessage, msgSub(old.GetSeq()))] = nil
		g.msgs = g.msgs[1:]
	}
}

// Level is the size-adaptive receipts level for a group of n members.
func (s *State) Level(n int) uint32 {
	switch {
	case n > s.limits.SenderOnlyAbove:
		return 2
	case n > s.limits.CountsOnlyAbove:
		return 1
	}
	return 0
}

// Summary is one coalesced receipts summary for a group.
type Summary struct {
	Group   string
	Receipt *pb.ReceiptsSummary
}

// Flush returns the summaries whose window has passed at now (log time
// or wall clock, whichever is later for the caller) and clears their
// pending marks (changelogged, so a summary is emitted exactly once with
// the state that produced it).
func (s *State) Flush(nowMs int64) []Summary {
	now := max(nowMs, s.now)
	ids := make([]string, 0)
	for id, g := range s.groups {
		if g.pending > 0 {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	var out []Summary
	for _, id := range ids {
		g := s.groups[id]
		level := s.Level(len(g.members))
		window := s.limits.Window.Milliseconds()
		if level > 0 {
			window *= int64(s.limits.SlowFactor)
		}
		if now-g.lastEmit < window {
			continue
		}
		rs := &pb.ReceiptsSummary{Members: uint32(len(g.members)), Level: level}
		for _, m := range g.msgs {
			if !m.Pending {
				continue
			}
			rs.Reads = append(rs.Reads, &pb.ReadCount{Seq: m.GetSeq(), Count: m.GetReadCount(), Sender: m.GetSender()})
			m.Pending = false
			s.put(key(g.id, kindMessage, msgSub(m.GetSeq())), m)
		}
		g.pending = 0
		g.lastEmit = now
		out = append(out, Summary{Group: id, Receipt: rs})
	}
	return out
}

// Pending reports whether some group owes a summary.
func (s *State) Pending() bool {
	for _, g := range s.groups {
		if g.pending > 0 {
			return true
		}
	}
	return false
}

// Write is one changelog record (nil Value deletes the key).
type Write struct {
	Key   string
	Value []byte
}

// TakeWrites returns the changelog writes since the last call, sorted.
func (s *State) TakeWrites() []Write {
	out := make([]Write, 0, len(s.dirty))
	for k, v := range s.dirty {
		out = append(out, Write{k, v})
	}
	clear(s.dirty)
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// TakeReceiptRows returns the receipt aggregates changed since the last
// call, one per message (the latest).
func (s *State) TakeReceiptRows() []ReceiptRow {
	keys := make([]string, 0, len(s.rows))
	for k := range s.rows {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]ReceiptRow, 0, len(keys))
	for _, k := range keys {
		m := s.rows[k]
		gid := strings.SplitN(k, keySep, 2)[0]
		out = append(out, receiptRow(gid, m))
	}
	clear(s.rows)
	return out
}

func ms(t int64) time.Time {
	if t == 0 {
		return time.Time{}
	}
	return time.UnixMilli(t).UTC()
}

func receiptRow(gid string, m *pb.RollupMessage) ReceiptRow {
	r := ReceiptRow{Group: gid, Seq: m.GetSeq(), Sender: m.GetSender(), SentAt: ms(m.GetSentTsMs()), MembersAtSend: m.GetMembersAtSend(),
		ReadCount: m.GetReadCount(), FirstReadAt: ms(m.GetFirstReadTsMs()), LastReadAt: ms(m.GetLastReadTsMs())}
	// The version orders updates of one message: counts only grow.
	r.Version = uint64(m.GetReadCount())<<32 | uint64(len(m.GetTtrMs()))
	if n := len(m.GetTtrMs()); n > 0 {
		d := append([]int64(nil), m.GetTtrMs()...)
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		q := func(p float64) float64 { return float64(d[min(n-1, int(p*float64(n)))]) }
		r.TTRp50, r.TTRp90, r.TTRp99 = q(0.5), q(0.9), q(0.99)
	}
	return r
}

// Restore applies one record of the rollup's own changelog.
func (s *State) Restore(k string, value []byte) bool {
	parts := strings.SplitN(k, keySep, 3)
	if len(parts) != 3 {
		return false
	}
	g := s.group(parts[0])
	switch parts[1] {
	case kindMember:
		if value == nil {
			delete(g.members, parts[2])
			return true
		}
		var m pb.RollupMember
		if proto.Unmarshal(value, &m) != nil {
			return false
		}
		g.members[parts[2]] = &member{joined: m.GetJoinedSeq(), watermark: m.GetWatermark(), readTs: m.GetReadTsMs()}
	case kindMessage:
		for i, m := range g.msgs {
			if msgSub(m.GetSeq()) == parts[2] {
				g.msgs = append(g.msgs[:i], g.msgs[i+1:]...)
				break
			}
		}
		if value == nil {
			return true
		}
		var m pb.RollupMessage
		if proto.Unmarshal(value, &m) != nil {
			return false
		}
		g.msgs = append(g.msgs, &m)
	default:
		return false
	}
	return true
}

// FinishRestore rebuilds the derived fields after the last Restore.
func (s *State) FinishRestore() {
	for _, g := range s.groups {
		sort.Slice(g.msgs, func(i, j int) bool { return g.msgs[i].GetSeq() < g.msgs[j].GetSeq() })
		g.pending = 0
		for _, m := range g.msgs {
			if m.Pending {
				g.pending++
			}
		}
	}
}

// Groups is the number of groups with state.
func (s *State) Groups() int { return len(s.groups) }

// markAllRows queues every tracked message's aggregate for the sink, e.g.
// after a restore: a previous process may have died before its sink wrote
// them. The tables keep the latest version, so rewriting is harmless.
func (s *State) markAllRows() {
	for _, g := range s.groups {
		for _, m := range g.msgs {
			s.rows[key(g.id, kindMessage, msgSub(m.GetSeq()))] = m
		}
	}
}
