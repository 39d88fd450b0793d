package sequencer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/causeway/causeway/schemas"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"google.golang.org/protobuf/proto"
)

// Changelog key kinds; see records.proto.
const (
	kindMeta   = "g"
	kindMember = "m"
	kindAttach = "a"
	kindDedup  = "d"
	kindHist   = "h"
	keySep     = "\x00"
)

// histSub is the changelog sub-key of a history entry: zero-padded so keys
// sort by seq.
func histSub(seq uint64) string {
	// %020d without fmt: one per sequenced message.
	var b [20]byte
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + seq%10)
		seq /= 10
	}
	return string(b[:])
}

func stateKey(group, kind, sub string) string {
	if kind == kindMeta || kind == kindPresence {
		return group + keySep + kind
	}
	return group + keySep + kind + keySep + sub
}

// splitKey parses a changelog key; ok is false for keys this version does
// not know (they are ignored, so a newer writer cannot break an older
// reader).
func splitKey(k string) (group, kind, sub string, ok bool) {
	parts := strings.SplitN(k, keySep, 3)
	switch {
	case len(parts) == 2 && parts[1] == kindMeta:
		return parts[0], parts[1], "", true
	case len(parts) == 2 && parts[1] == kindPresence:
		return parts[0], parts[1], "", true
	case len(parts) == 3 && (parts[1] == kindMember || parts[1] == kindAttach || parts[1] == kindDedup || parts[1] == kindHist ||
		parts[1] == kindWatcher || parts[1] == kindCounter || parts[1] == kindSignal || parts[1] == kindAlias ||
		parts[1] == kindIndex || parts[1] == kindWatching || parts[1] == kindWatcherGroups):
		return parts[0], parts[1], parts[2], true
	}
	return "", "", "", false
}

// Error codes sent to clients (PROTOCOL.md).
const (
	codeNotMember   = "not_member"
	codeBadRequest  = "bad_request"
	codeRateLimited = "rate_limited"
	// Reasons of rate_limited for the limits decided here.
	reasonGroups  = "groups"
	reasonMembers = "members"
)

type attachment struct {
	edge, user, incarnation string
	presence                bool
	// reach: a presence watcher admitted by the shared_group policy.
	reach bool
}

type readMark struct {
	seq uint64
	ts  int64
}

type dedupEntry struct {
	seq, clock uint64
}

// group is one group's sequencing state.
type group struct {
	id         string
	seq        uint64
	dedupClock uint64
	members    map[string]uint64 // user -> seq of the join
	// unindexed holds members whose personal stream was never told of
	// the membership (joined before the index existed): the next attach
	// tells it.
	unindexed map[string]struct{}
	// reads holds members' read watermarks (absent: nothing read).
	reads       map[string]readMark
	attachments map[string]attachment
	dedup       map[string]dedupEntry
	// dedupOrder lists dedup keys oldest first (by clock), for eviction.
	dedupOrder []string
	// history holds the last timeline events, oldest first, and their
	// encoded size.
	history      []*pb.Event
	historyBytes int

	// byEdge caches the attached sessions per edge; nil when stale.
	byEdge map[string][]string

	// stream is set for personal streams (u:<user>).
	stream *stream
	// ephem coalesces presence and typing pushes; never changelogged.
	ephem *ephemeral
}

func newGroup(id string) *group {
	return &group{
		id:          id,
		members:     make(map[string]uint64),
		unindexed:   make(map[string]struct{}),
		reads:       make(map[string]readMark),
		attachments: make(map[string]attachment),
		dedup:       make(map[string]dedupEntry),
	}
}

func (g *group) recipients() map[string][]string {
	if g.byEdge != nil {
		return g.byEdge
	}
	g.byEdge = make(map[string][]string)
	for s, a := range g.attachments {
		g.byEdge[a.edge] = append(g.byEdge[a.edge], s)
	}
	for _, ss := range g.byEdge {
		sort.Strings(ss)
	}
	return g.byEdge
}

// Limits bound a partition's state per group.
type Limits struct {
	// DedupWindow is how many client_msg_ids per group are remembered.
	DedupWindow int
	// HistoryCount, HistoryAge and HistoryBytes bound the timeline
	// events kept per group for subscribe-with-since: an event leaves
	// the history when any bound is passed.
	HistoryCount int
	HistoryAge   time.Duration
	HistoryBytes int
	// EdgeTimeout expires the attachments of an edge whose heartbeats
	// stopped, measured in the log's own time (heartbeat timestamps).
	EdgeTimeout time.Duration
	// SignalTTL is the TTL of a signal whose edge set none.
	SignalTTL time.Duration
	// SignalBuffer bounds the signals kept per call and sender for replay
	// (an offer is kept over ICE candidates).
	SignalBuffer int
	// CallIdle drops a call's counters and session aliases after this long
	// without a signal.
	CallIdle time.Duration
	// PresenceWindow: at most one presence push per user (or group) per
	// window.
	PresenceWindow time.Duration
	// PresenceMaxGroup: groups with more members get online/member counts
	// instead of per-member presence.
	PresenceMaxGroup int
	// TypingWindow: at most one typing push per group per window;
	// TypingExpiry: a typer is dropped this long after their last frame.
	TypingWindow, TypingExpiry time.Duration
	// MaxGroupsPerUser bounds the groups a user belongs to, counted by
	// the user's stream (joins written there; see reach.go), and
	// MaxMembersPerGroup the members of a group; 0: no limit. A join over
	// either is refused with rate_limited and changes nothing.
	MaxGroupsPerUser   int
	MaxMembersPerGroup int
}

// DefaultLimits are the documented defaults.
func DefaultLimits() Limits {
	return Limits{DedupWindow: 1000, HistoryCount: 1000, HistoryAge: 24 * time.Hour, HistoryBytes: 1 << 20, EdgeTimeout: 15 * time.Second,
		SignalTTL: 30 * time.Second, SignalBuffer: 256, CallIdle: time.Hour,
		PresenceWindow: time.Second, PresenceMaxGroup: 100, TypingWindow: 500 * time.Millisecond, TypingExpiry: 5 * time.Second,
		MaxGroupsPerUser: 1000, MaxMembersPerGroup: 10000}
}

// Validate reports the first invalid limit of those the sequencer's
// Config.Validate does not check.
func (l Limits) Validate() error {
	switch {
	case l.MaxGroupsPerUser < 0 || l.MaxGroupsPerUser > maxGroupsPerUserCap:
		return fmt.Errorf("sequencer.max_groups_per_user %d: must be between 0 (no limit) and %d", l.MaxGroupsPerUser, maxGroupsPerUserCap)
	case l.MaxMembersPerGroup < 0:
		return fmt.Errorf("sequencer.max_members_per_group %d: must not be negative (0: no limit)", l.MaxMembersPerGroup)
	}
	return nil
}

// maxGroupsPerUserCap bounds sequencer.max_groups_per_user: a user's group
// IDs travel with every request their stream forwards under the
// shared_group reach policy (128 bytes each at most), and must stay well
// inside one Kafka record.
const maxGroupsPerUserCap = 4000

// edgeLiveness is what a partition knows of one edge from its heartbeats.
type edgeLiveness struct {
	incarnation string
	// silentSince is the timestamp of the first heartbeat of another edge
	// after this edge's last one (0: none yet). The timeout runs from
	// there, not from this edge's last heartbeat: after a broker outage
	// every edge comes back at about the same time, and none should be
	// expired for the outage itself.
	silentSince int64
}

// State is the sequencing state of one partition of the group log. Apply is
// a pure function of the state and the record: no I/O, no clock (time is
// the records' own timestamps). State is not safe for concurrent use; one
// partition worker owns it.
type State struct {
	groups map[string]*group
	// dirty holds changelog writes since the last TakeWrites: key ->
	// value (nil is a tombstone).
	dirty  map[string][]byte
	limits Limits
	// edges is rebuilt from heartbeats (and, after a restore, from the
	// attachments), not changelogged.
	edges map[string]*edgeLiveness
	// now is the latest record timestamp seen: the log's own clock.
	now int64
	// pending holds groups and streams with a presence or typing push
	// held back by its window; signalStreams the streams with buffered
	// signals, counters or aliases to expire.
	pending, signalStreams map[string]struct{}
}

// NewState returns an empty partition state.
func NewState(l Limits) *State {
	l.DedupWindow = max(l.DedupWindow, 1)
	l.HistoryCount = max(l.HistoryCount, 0)
	// Zero values (partial Limits in tests) take the defaults where zero
	// would mean "drop at once".
	d := DefaultLimits()
	l.SignalBuffer = max(l.SignalBuffer, 1)
	if l.SignalTTL <= 0 {
		l.SignalTTL = d.SignalTTL
	}
	if l.CallIdle <= 0 {
		l.CallIdle = d.CallIdle
	}
	if l.TypingExpiry <= 0 {
		l.TypingExpiry = d.TypingExpiry
	}
	if l.PresenceMaxGroup <= 0 {
		l.PresenceMaxGroup = d.PresenceMaxGroup
	}
	return &State{groups: make(map[string]*group), dirty: make(map[string][]byte), limits: l, edges: make(map[string]*edgeLiveness),
		pending: make(map[string]struct{}), signalStreams: make(map[string]struct{})}
}

// Groups is the number of groups with state.
func (s *State) Groups() int { return len(s.groups) }

func (s *State) group(id string) *group {
	g := s.groups[id]
	if g == nil {
		g = newGroup(id)
		s.groups[id] = g
	}
	return g
}

func (s *State) put(key string, m proto.Message) {
	b, err := proto.Marshal(m)
	if err != nil {
		// Marshalling our own well-formed messages cannot fail.
		panic("sequencer: marshal state: " + err.Error())
	}
	s.dirty[key] = b
}

func (s *State) del(key string) { s.dirty[key] = nil }

// Write is one changelog record.
type Write struct {
	Key   string
	Value []byte // nil deletes the key
}

// TakeWrites returns the changelog writes since the last call, one per key
// (the latest value), sorted by key for determinism.
func (s *State) TakeWrites() []Write {
	if len(s.dirty) == 0 {
		return nil
	}
	out := make([]Write, 0, len(s.dirty))
	for k, v := range s.dirty {
		out = append(out, Write{k, v})
	}
	clear(s.dirty)
	slices.SortFunc(out, func(a, b Write) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Restore applies one changelog record read back from the state topic. It
// reports false for a record it could not decode (counted and skipped by the
// caller).
func (s *State) Restore(key string, value []byte) bool {
	gid, kind, sub, ok := splitKey(key)
	if !ok {
		return false
	}
	g := s.group(gid)
	g.byEdge = nil
	if value == nil {
		switch kind {
		case kindMeta:
			delete(s.groups, gid)
		case kindMember:
			delete(g.members, sub)
			delete(g.reads, sub)
			delete(g.unindexed, sub)
		case kindAttach:
			delete(g.attachments, sub)
		case kindDedup:
			delete(g.dedup, sub)
		case kindHist:
			g.dropHistory(sub)
		case kindWatcher:
			delete(g.str().watchers, sub)
		case kindCounter:
			delete(g.str().counters, sub)
		case kindAlias:
			delete(g.str().aliases, sub)
		case kindSignal:
			st := g.str()
			for i, sig := range st.signals {
				if signalSub(sig.GetCall(), sig.GetFrom(), sig.GetCallSeq()) == sub {
					st.signals = append(st.signals[:i], st.signals[i+1:]...)
					break
				}
			}
		case kindPresence:
			g.str().pres = nil
		case kindIndex:
			delete(g.str().groups, sub)
		case kindWatching:
			delete(g.str().watching, sub)
		case kindWatcherGroups:
			delete(g.str().reachOf, sub)
		}
		return true
	}
	switch kind {
	case kindMeta:
		var m pb.GroupMeta
		if proto.Unmarshal(value, &m) != nil {
			return false
		}
		g.seq, g.dedupClock = m.GetSeq(), m.GetDedupClock()
	case kindMember:
		var m pb.Membership
		if proto.Unmarshal(value, &m) != nil {
			return false
		}
		g.members[sub] = m.GetJoinedSeq()
		if m.GetIndexed() {
			delete(g.unindexed, sub)
		} else {
			g.unindexed[sub] = struct{}{}
		}
		if m.GetReadSeq() > 0 {
			g.reads[sub] = readMark{seq: m.GetReadSeq(), ts: m.GetReadTsMs()}
		} else {
			delete(g.reads, sub)
		}
	case kindAttach:
		var m pb.Attachment
		if proto.Unmarshal(value, &m) != nil {
			return false
		}
		g.attachments[sub] = attachment{edge: m.GetEdge(), user: m.GetUser(), incarnation: m.GetIncarnation(), presence: m.GetPresence()}
	case kindWatcher:
		var m pb.Attachment
		if proto.Unmarshal(value, &m) != nil {
			return false
		}
		g.str().watchers[sub] = attachment{edge: m.GetEdge(), user: m.GetUser(), incarnation: m.GetIncarnation(), reach: m.GetReach()}
	case kindIndex:
		var m pb.IndexEntry
		if proto.Unmarshal(value, &m) != nil {
			return false
		}
		g.str().groups[sub] = &m
	case kindWatching:
		var m pb.Watching
		if proto.Unmarshal(value, &m) != nil {
			return false
		}
		g.str().watching[sub] = struct{}{}
	case kindWatcherGroups:
		var m pb.WatcherGroups
		if proto.Unmarshal(value, &m) != nil {
			return false
		}
		g.str().reachOf[sub] = groupSet(m.GetGroups())
	case kindCounter:
		var m pb.CallCounter
		if proto.Unmarshal(value, &m) != nil {
			return false
		}
		g.str().counters[sub] = &m
	case kindAlias:
		var m pb.Alias
		if proto.Unmarshal(value, &m) != nil {
			return false
		}
		g.str().aliases[sub] = &m
	case kindSignal:
		var m pb.SignalOut
		if proto.Unmarshal(value, &m) != nil || signalSub(m.GetCall(), m.GetFrom(), m.GetCallSeq()) != sub {
			return false
		}
		st := g.str()
		st.signals = append(st.signals, &m)
	case kindPresence:
		var m pb.PresenceState
		if proto.Unmarshal(value, &m) != nil {
			return false
		}
		g.str().pres = &m
	case kindDedup:
		var m pb.Dedup
		if proto.Unmarshal(value, &m) != nil {
			return false
		}
		g.dedup[sub] = dedupEntry{seq: m.GetSeq(), clock: m.GetClock()}
	case kindHist:
		var ev pb.Event
		if proto.Unmarshal(value, &ev) != nil || histSub(ev.GetSeq()) != sub {
			return false
		}
		g.dropHistory(sub)
		g.history = append(g.history, &ev)
	}
	return true
}

// dropHistory removes a history entry during a restore.
func (g *group) dropHistory(sub string) {
	for i, ev := range g.history {
		if histSub(ev.GetSeq()) == sub {
			g.history = append(g.history[:i], g.history[i+1:]...)
			return
		}
	}
}

// FinishRestore rebuilds derived indexes after the last Restore.
func (s *State) FinishRestore() {
	for _, g := range s.groups {
		g.dedupOrder = g.dedupOrder[:0]
		for k := range g.dedup {
			g.dedupOrder = append(g.dedupOrder, k)
		}
		sort.Slice(g.dedupOrder, func(i, j int) bool {
			return g.dedup[g.dedupOrder[i]].clock < g.dedup[g.dedupOrder[j]].clock
		})
		sort.Slice(g.history, func(i, j int) bool { return g.history[i].GetSeq() < g.history[j].GetSeq() })
		g.historyBytes = 0
		for _, ev := range g.history {
			g.historyBytes += proto.Size(ev)
		}
		g.byEdge = nil
		// Edges known only from restored attachments start their timeout
		// at the next heartbeat this partition sees.
		for _, a := range g.attachments {
			s.seeEdge(a)
		}
		if st := g.stream; st != nil {
			for _, w := range st.watchers {
				s.seeEdge(w)
			}
			sort.SliceStable(st.signals, func(i, j int) bool { return st.signals[i].GetTsMs() < st.signals[j].GetTsMs() })
			if len(st.signals) > 0 || len(st.counters) > 0 || len(st.aliases) > 0 {
				s.signalStreams[g.id] = struct{}{}
			}
			// What watchers last saw is unknown: the next change is pushed.
			if st.pres != nil {
				st.emitted.Status, st.emitted.Sessions = st.pres.GetStatus(), st.pres.GetSessions()
			}
		}
	}
}

// Output is what one group-log record produces: deliveries, at most one per
// edge, and records for the group log itself (Records: requests forwarded
// from a user's stream to a group or another user's stream, and the
// membership index), which the caller writes in the same transaction,
// keyed and partitioned by their Group, so they are applied exactly once.
type Output struct {
	Deliveries []*pb.Delivery
	Records    []*pb.GroupEvent
}

// maxDeliveryBytes bounds one delivery record (a history replay is split
// over several), well under Kafka's default 1 MB message limit.
const maxDeliveryBytes = 256 << 10

// builder gathers the deliveries of one Apply, one per edge, or more when
// a history replay is large.
type builder struct {
	group   string
	byEdge  map[string]*pb.Delivery
	size    map[string]int
	order   []*pb.Delivery
	records []*pb.GroupEvent
}

func (b *builder) to(edge string) *pb.Delivery {
	if b.byEdge == nil {
		b.byEdge = make(map[string]*pb.Delivery, 2)
	}
	d := b.byEdge[edge]
	if d == nil {
		d = &pb.Delivery{Version: schemas.Version, Edge: edge, Group: b.group}
		b.byEdge[edge] = d
		b.order = append(b.order, d)
	}
	return d
}

func (b *builder) event(ev *pb.Event, recipients map[string][]string) {
	edges := make([]string, 0, len(recipients))
	for e := range recipients {
		edges = append(edges, e)
	}
	sort.Strings(edges)
	for _, e := range edges {
		d := b.to(e)
		d.Event = ev
		d.Sessions = recipients[e]
	}
}

func (b *builder) reply(r *pb.GroupEvent, rep *pb.Reply) {
	if r.GetSession() == "" || r.GetEdge() == "" {
		return
	}
	rep.Session = r.GetSession()
	rep.RequestId = r.GetRequestId()
	edge := r.GetEdge()
	if ev := rep.GetEvent(); ev != nil {
		if b.size == nil {
			b.size = make(map[string]int)
		}
		n := proto.Size(ev)
		if b.size[edge]+n > maxDeliveryBytes && b.byEdge[edge] != nil {
			delete(b.byEdge, edge) // continue in a new record, in order
			b.size[edge] = 0
		}
		b.size[edge] += n
	}
	d := b.to(edge)
	d.Replies = append(d.Replies, rep)
}

func (b *builder) ack(r *pb.GroupEvent, seq uint64) {
	b.reply(r, &pb.Reply{Kind: &pb.Reply_Ack{Ack: &pb.Ack{Group: b.group, Seq: seq}}})
}

func (b *builder) fail(r *pb.GroupEvent, code, msg string) {
	b.reply(r, &pb.Reply{Kind: &pb.Reply_Error{Error: &pb.Error{Code: code, Message: msg}}})
}

func (b *builder) out() Output {
	return Output{Deliveries: b.order, Records: b.records}
}

// forward adds a record for the group log.
func (b *builder) forward(ev *pb.GroupEvent) {
	ev.Version = schemas.Version
	b.records = append(b.records, ev)
}

// Apply sequences one record of the group log. Records that are not
// sequenced (heartbeats, unknown kinds from newer writers) produce nothing.
func (s *State) Apply(r *pb.GroupEvent) Output {
	b := builder{group: r.GetGroup()}
	s.now = max(s.now, r.GetTsMs())
	if hb := r.GetHeartbeat(); hb != nil {
		s.heartbeat(&b, r)
		s.flushPending(&b)
		return b.out()
	}
	if r.GetGroup() == "" {
		return b.out()
	}
	if isStream(r.GetGroup()) {
		s.applyStream(&b, r)
		return b.out()
	}
	switch k := r.GetKind().(type) {
	case *pb.GroupEvent_Typing:
		s.typing(&b, r)
	case *pb.GroupEvent_Read:
		s.read(&b, r, k.Read)
	case *pb.GroupEvent_Receipts:
		s.receipts(&b, k.Receipts)
	case *pb.GroupEvent_Join:
		s.join(&b, r)
	case *pb.GroupEvent_Leave:
		s.leave(&b, r)
	case *pb.GroupEvent_Attach:
		s.attach(&b, r, k.Attach)
	case *pb.GroupEvent_Detach:
		s.detach(&b, r)
	case *pb.GroupEvent_Send:
		s.send(&b, r, k.Send)
	}
	return b.out()
}

func (s *State) saveMeta(g *group) {
	s.put(stateKey(g.id, kindMeta, ""), &pb.GroupMeta{Version: schemas.Version, Seq: g.seq, DedupClock: g.dedupClock})
}

func (s *State) next(g *group, r *pb.GroupEvent) *pb.Event {
	g.seq++
	s.saveMeta(g)
	return &pb.Event{Group: g.id, Seq: g.seq, TsMs: r.GetTsMs(), Members: uint32(len(g.members))}
}

// remember adds a complete timeline event to the group's history and
// evicts what falls out of the window.
func (s *State) remember(g *group, ev *pb.Event) {
	if s.limits.HistoryCount == 0 {
		return
	}
	g.history = append(g.history, ev)
	b, err := proto.Marshal(ev)
	if err != nil {
		panic("sequencer: marshal state: " + err.Error()) // as put
	}
	g.historyBytes += len(b) // = proto.Size(ev), which trimHistory subtracts
	s.dirty[stateKey(g.id, kindHist, histSub(ev.GetSeq()))] = b
	s.trimHistory(g, ev.GetTsMs())
}

// trimHistory evicts events past the count, byte or age bound (age in the
// log's time, now being the current record's timestamp).
func (s *State) trimHistory(g *group, nowMs int64) {
	l := s.limits
	n := 0
	for n < len(g.history) {
		ev := g.history[n]
		over := len(g.history)-n > l.HistoryCount || g.historyBytes > l.HistoryBytes ||
			l.HistoryAge > 0 && nowMs-ev.GetTsMs() > l.HistoryAge.Milliseconds()
		if !over {
			break
		}
		g.historyBytes -= proto.Size(ev)
		s.del(stateKey(g.id, kindHist, histSub(ev.GetSeq())))
		n++
	}
	if n > 0 {
		clear(g.history[:n])
		g.history = g.history[n:]
	}
}

func (s *State) join(b *builder, r *pb.GroupEvent) {
	if r.GetUser() == "" {
		b.fail(r, codeBadRequest, "join without a user")
		return
	}
	g := s.group(r.GetGroup())
	user := r.GetUser()
	if seq, ok := g.members[user]; ok {
		// Joining twice is a no-op, so a retried join is harmless. The
		// user's stream is told again: that answers a join it admitted,
		// and indexes a membership older than the index.
		b.ack(r, 0)
		s.indexed(b, g, user, r.GetTsMs(), true, seq)
		return
	}
	if m := s.limits.MaxMembersPerGroup; m > 0 && len(g.members) >= m {
		b.failReason(r, codeRateLimited, reasonMembers, fmt.Sprintf("%s has %d members, the limit (sequencer.max_members_per_group)", g.id, len(g.members)))
		// The stream that admitted the join frees its place.
		b.index(user, g.id, r.GetTsMs(), false, 0)
		return
	}
	ev := s.next(g, r)
	ev.Kind = &pb.Event_Member{Member: &pb.Member{User: user, Change: pb.Member_JOINED}}
	g.members[user] = ev.Seq
	delete(g.unindexed, user)
	s.saveMember(g, user)
	b.index(user, g.id, r.GetTsMs(), true, ev.Seq)
	s.remember(g, ev)
	b.event(ev, g.recipients())
	b.ack(r, ev.Seq)
	s.memberChanged(b, g, r.GetUser())
}

func (s *State) leave(b *builder, r *pb.GroupEvent) {
	g := s.groups[r.GetGroup()]
	if g == nil {
		b.fail(r, codeNotMember, "not a member of "+r.GetGroup())
		return
	}
	if _, ok := g.members[r.GetUser()]; !ok {
		b.fail(r, codeNotMember, "not a member of "+r.GetGroup())
		return
	}
	ev := s.next(g, r)
	ev.Kind = &pb.Event_Member{Member: &pb.Member{User: r.GetUser(), Change: pb.Member_LEFT}}
	s.remember(g, ev)
	// The leaver's sessions see their own leave, then are detached.
	b.event(ev, g.recipients())
	b.ack(r, ev.Seq)
	delete(g.members, r.GetUser())
	delete(g.reads, r.GetUser())
	delete(g.unindexed, r.GetUser())
	s.del(stateKey(g.id, kindMember, r.GetUser()))
	b.index(r.GetUser(), g.id, r.GetTsMs(), false, 0)
	for sess, a := range g.attachments {
		if a.user == r.GetUser() {
			delete(g.attachments, sess)
			s.del(stateKey(g.id, kindAttach, sess))
			g.byEdge = nil
		}
	}
	if e := g.ephem; e != nil {
		delete(e.typing, r.GetUser())
	}
	s.memberChanged(b, g, r.GetUser())
}

func (s *State) attach(b *builder, r *pb.GroupEvent, a *pb.Attach) {
	g := s.groups[r.GetGroup()]
	if g == nil || r.GetSession() == "" || r.GetEdge() == "" {
		b.fail(r, codeNotMember, "not a member of "+r.GetGroup())
		return
	}
	seq, ok := g.members[r.GetUser()]
	if !ok {
		b.fail(r, codeNotMember, "not a member of "+r.GetGroup())
		return
	}
	s.indexed(b, g, r.GetUser(), r.GetTsMs(), false, seq)
	want := attachment{edge: r.GetEdge(), user: r.GetUser(), incarnation: r.GetIncarnation(), presence: a.GetPresence()}
	cur, had := g.attachments[r.GetSession()]
	if !had || cur != want {
		g.attachments[r.GetSession()] = want
		s.put(stateKey(g.id, kindAttach, r.GetSession()), &pb.Attachment{Version: schemas.Version, Edge: want.edge, User: want.user, Incarnation: want.incarnation, Presence: want.presence})
		g.byEdge = nil
	}
	s.seeEdge(want)
	// The attach is a record in the group's log, so the replay below and
	// the live events after it are in one order: no gap, no duplicate
	// at the seam.
	s.trimHistory(g, r.GetTsMs())
	recovered := true
	var replay []*pb.Event
	if a.GetHasSince() && a.GetSince() < g.seq {
		since := a.GetSince()
		i := sort.Search(len(g.history), func(i int) bool { return g.history[i].GetSeq() > since })
		replay = g.history[i:]
		recovered = len(replay) > 0 && replay[0].GetSeq() == since+1
	} else if a.GetHasSince() && a.GetSince() > g.seq {
		// The client saw more than the group has: its history is from
		// another life of the group. Say so rather than pretend.
		recovered = false
	}
	b.reply(r, &pb.Reply{Kind: &pb.Reply_Subscribed{Subscribed: &pb.Subscribed{Group: g.id, Seq: g.seq, ReadSeq: g.reads[r.GetUser()].seq, Recovered: recovered}}})
	for _, ev := range replay {
		b.reply(r, &pb.Reply{Kind: &pb.Reply_Event{Event: ev}})
	}
	b.ack(r, 0)
	if want.presence {
		s.presenceSnapshot(b, g, want.edge, r.GetSession())
	}
	if !had {
		s.memberChanged(b, g, want.user)
	}
}

// heartbeat records an edge's liveness and expires the attachments of
// edges that restarted (new incarnation) or went silent while others kept
// beating for EdgeTimeout. A silent edge may only have lost Kafka for a
// while, with its clients still connected and believing they are
// subscribed: it is told which sessions were detached (it closes them with
// going_away, and they resubscribe with since), or they would wait forever
// for events that are no longer routed to them.
func (s *State) heartbeat(b *builder, r *pb.GroupEvent) {
	now := r.GetTsMs()
	e := s.edges[r.GetEdge()]
	if e == nil {
		e = &edgeLiveness{incarnation: r.GetIncarnation()}
		s.edges[r.GetEdge()] = e
	}
	if e.incarnation != r.GetIncarnation() {
		// The old incarnation's sessions died with it: nobody to tell.
		s.expire(b, r.GetEdge(), r.GetIncarnation())
		e.incarnation = r.GetIncarnation()
	}
	e.silentSince = 0
	timeout := s.limits.EdgeTimeout.Milliseconds()
	silent := make([]string, 0, 2)
	for id, o := range s.edges {
		if id == r.GetEdge() {
			continue
		}
		if o.silentSince == 0 {
			o.silentSince = now
		}
		if timeout > 0 && now-o.silentSince > timeout {
			silent = append(silent, id)
		}
	}
	sort.Strings(silent) // map order must not leak into the output
	for _, id := range silent {
		b.order = append(b.order, detachedNotices(id, s.expire(b, id, "\x00none"))...)
		delete(s.edges, id)
	}
}

// detachedNotices tells edge which of its sessions were detached, one
// delivery per group.
func detachedNotices(edge string, bySession map[string][]string) []*pb.Delivery {
	groups := make([]string, 0, len(bySession))
	for g := range bySession {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	out := make([]*pb.Delivery, 0, len(groups))
	for _, g := range groups {
		sessions := bySession[g]
		sort.Strings(sessions)
		d := &pb.Delivery{Version: schemas.Version, Edge: edge, Group: g}
		for _, sess := range sessions {
			d.Replies = append(d.Replies, &pb.Reply{Session: sess, Kind: &pb.Reply_Detached{
				Detached: &pb.Detached{Group: g, Reason: "edge heartbeat timed out"}}})
		}
		out = append(out, d)
	}
	return out
}

// expire detaches every session (and presence watcher) of edge whose
// incarnation is not keep and returns the detached sessions by group (not
// the personal streams: a session closed by its edge also leaves those).
// Presence follows: the users go offline.
func (s *State) expire(b *builder, edge, keep string) map[string][]string {
	var gone map[string][]string
	ids := make([]string, 0, len(s.groups))
	for id := range s.groups {
		ids = append(ids, id)
	}
	sort.Strings(ids) // the pushes below must not follow map order
	for _, id := range ids {
		g := s.groups[id]
		var users []string
		for sess, a := range g.attachments {
			if a.edge == edge && a.incarnation != keep {
				delete(g.attachments, sess)
				s.del(stateKey(g.id, kindAttach, sess))
				g.byEdge = nil
				users = append(users, a.user)
				if st := g.stream; st != nil {
					if _, ok := st.aliases[sess]; !ok {
						// Its client may resume elsewhere mid-call.
						al := &pb.Alias{Version: schemas.Version, TsMs: s.now}
						st.aliases[sess] = al
						s.put(stateKey(g.id, kindAlias, sess), al)
						s.signalStreams[g.id] = struct{}{}
					}
				}
				if g.stream == nil {
					if gone == nil {
						gone = make(map[string][]string)
					}
					gone[g.id] = append(gone[g.id], sess)
				}
			}
		}
		if st := g.stream; st != nil {
			for sess, w := range st.watchers {
				if w.edge == edge && w.incarnation != keep {
					s.dropWatcher(g, sess)
				}
			}
			if len(users) > 0 {
				s.presenceChanged(b, g)
				s.forgetWatching(g)
			}
			continue
		}
		sort.Strings(users)
		for _, u := range users {
			s.memberChanged(b, g, u)
		}
	}
	return gone
}

func (s *State) detach(b *builder, r *pb.GroupEvent) {
	if g := s.groups[r.GetGroup()]; g != nil {
		if a, ok := g.attachments[r.GetSession()]; ok {
			delete(g.attachments, r.GetSession())
			s.del(stateKey(g.id, kindAttach, r.GetSession()))
			g.byEdge = nil
			s.memberChanged(b, g, a.user)
		}
	}
	if r.GetRequestId() != "" {
		b.ack(r, 0)
	}
}

func (s *State) send(b *builder, r *pb.GroupEvent, m *pb.Send) {
	g := s.groups[r.GetGroup()]
	if g == nil {
		b.fail(r, codeNotMember, "not a member of "+r.GetGroup())
		return
	}
	if _, ok := g.members[r.GetUser()]; !ok {
		b.fail(r, codeNotMember, "not a member of "+r.GetGroup())
		return
	}
	if m.GetClientMsgId() == "" {
		b.fail(r, codeBadRequest, "send without client_msg_id")
		return
	}
	// Edges send compact JSON; anything else (a body that could smuggle a
	// newline into the NDJSON stream) is refused, whoever wrote the log.
	if body := m.GetBody(); len(body) == 0 || bytes.IndexByte(body, '\n') >= 0 || !json.Valid(body) {
		b.fail(r, codeBadRequest, "body is not compact JSON")
		return
	}
	dk := r.GetUser() + keySep + m.GetClientMsgId()
	if d, ok := g.dedup[dk]; ok {
		// A retry: answer with the original seq, sequence nothing.
		b.ack(r, d.seq)
		return
	}
	// The clock moves first: next saves the group's meta (seq and clock)
	// once for both.
	g.dedupClock++
	ev := s.next(g, r)
	ev.Kind = &pb.Event_Msg{Msg: &pb.Message{From: r.GetUser(), ClientMsgId: m.GetClientMsgId(), Body: m.GetBody()}}
	g.dedup[dk] = dedupEntry{seq: ev.Seq, clock: g.dedupClock}
	g.dedupOrder = append(g.dedupOrder, dk)
	s.put(stateKey(g.id, kindDedup, dk), &pb.Dedup{Version: schemas.Version, Seq: ev.Seq, Clock: g.dedupClock})
	for len(g.dedupOrder) > s.limits.DedupWindow {
		old := g.dedupOrder[0]
		g.dedupOrder = g.dedupOrder[1:]
		delete(g.dedup, old)
		s.del(stateKey(g.id, kindDedup, old))
	}
	s.remember(g, ev)
	b.event(ev, g.recipients())
	b.ack(r, ev.Seq)
}

// read moves a member's read watermark forward and tells the user's other
// sessions on the group, so a read on one device clears the badge on the
// others. The rollup turns watermarks into receipt counts.
func (s *State) read(b *builder, r *pb.GroupEvent, m *pb.Read) {
	g := s.groups[r.GetGroup()]
	if g == nil {
		b.fail(r, codeNotMember, "not a member of "+r.GetGroup())
		return
	}
	if _, ok := g.members[r.GetUser()]; !ok {
		b.fail(r, codeNotMember, "not a member of "+r.GetGroup())
		return
	}
	if m.GetSeq() > g.seq {
		b.fail(r, codeBadRequest, fmt.Sprintf("read up to %d is beyond the group's latest seq %d", m.GetSeq(), g.seq))
		return
	}
	if m.GetSeq() <= g.reads[r.GetUser()].seq {
		b.ack(r, 0) // watermarks only move forward; a stale one is harmless
		return
	}
	g.reads[r.GetUser()] = readMark{seq: m.GetSeq(), ts: r.GetTsMs()}
	s.saveMember(g, r.GetUser())
	others := map[string][]string{}
	for sess, a := range g.attachments {
		if a.user == r.GetUser() && sess != r.GetSession() {
			others[a.edge] = append(others[a.edge], sess)
		}
	}
	if len(others) > 0 {
		b.ephemeralTo(g.id, &pb.Ephemeral{Kind: &pb.Ephemeral_Read{Read: &pb.Read{Seq: m.GetSeq()}}}, others)
	}
	b.ack(r, 0)
}

// receipts delivers a rollup summary: to every subscribed session, or, at
// the largest size level, each message's count only to its sender.
func (s *State) receipts(b *builder, rs *pb.ReceiptsSummary) {
	g := s.groups[b.group]
	if g == nil || len(g.attachments) == 0 || len(rs.GetReads()) == 0 {
		return
	}
	if rs.GetLevel() < 2 {
		b.ephemeralTo(g.id, &pb.Ephemeral{Kind: &pb.Ephemeral_Receipts{Receipts: rs}}, copyRecipients(g.recipients()))
		return
	}
	bySender := map[string][]*pb.ReadCount{}
	for _, rc := range rs.GetReads() {
		bySender[rc.GetSender()] = append(bySender[rc.GetSender()], rc)
	}
	senders := make([]string, 0, len(bySender))
	for u := range bySender {
		senders = append(senders, u)
	}
	sort.Strings(senders)
	for _, u := range senders {
		to := map[string][]string{}
		for sess, a := range g.attachments {
			if a.user == u {
				to[a.edge] = append(to[a.edge], sess)
			}
		}
		if len(to) > 0 {
			b.ephemeralTo(g.id, &pb.Ephemeral{Kind: &pb.Ephemeral_Receipts{Receipts: &pb.ReceiptsSummary{
				Members: rs.GetMembers(), Reads: bySender[u], Level: rs.GetLevel()}}}, to)
		}
	}
}
