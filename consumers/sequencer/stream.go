package sequencer

import (
	"fmt"
	"sort"
	"strings"

	"github.com/causeway/causeway/schemas"
	pb "github.com/causeway/causeway/schemas/causewaypb"
)

// Personal streams, signaling, presence and typing.
//
// Every user has a stream `u:<user>` in the group log, partitioned like a
// group. Its attachments are the user's live sessions, so "which edges hold
// user X" is answered by the one partition that owns X's stream: no global
// directory. Signals to X are records of X's stream, so they reach X's
// sessions in the order the sender's edge wrote them. Nothing here is a
// timeline event: no seq, no history.

// Changelog kinds of personal streams (records.proto).
const (
	kindWatcher  = "w"
	kindCounter  = "c"
	kindSignal   = "s"
	kindAlias    = "r"
	kindPresence = "p"

	// StreamPrefix starts every personal stream ID.
	StreamPrefix = "u:"

	statusOnline  = "online"
	statusOffline = "offline"

	codeUnavailable = "unavailable"
	codeForbidden   = "forbidden"
	reasonOffline   = "offline"
	reasonExpired   = "expired"

	kindAnsweredElsewhere = "answered_elsewhere"
)

func isStream(id string) bool { return strings.HasPrefix(id, StreamPrefix) }

// signalSub is the changelog sub-key of a buffered signal.
func signalSub(call, from string, seq uint64) string {
	return call + keySep + from + keySep + fmt.Sprintf("%010d", seq)
}

// stream is the personal-stream part of a group's state.
type stream struct {
	user     string
	watchers map[string]attachment // session -> where it is
	counters map[string]*pb.CallCounter
	// signals are the buffered signals within their TTL, oldest first,
	// replayed to a session that attaches (a new device rings; a
	// reconnected one gets what it missed).
	signals []*pb.SignalOut
	aliases map[string]*pb.Alias // old session -> new session
	pres    *pb.PresenceState    // the changelogged current presence
	// emitted and lastEmit coalesce presence pushes; not changelogged
	// (after a failover one extra update may be pushed).
	emitted  pb.PresenceState
	lastEmit int64

	// The membership index and reach (reach.go): the user's groups and
	// pending joins; the users this user watches under the shared_group
	// policy; and the groups of the users watching this one.
	groups   map[string]*pb.IndexEntry
	watching map[string]struct{}
	reachOf  map[string]map[string]struct{}
}

// ephemeral is the coalescing state of a group's presence and typing; it
// is never changelogged.
type ephemeral struct {
	presDirty    map[string]struct{}
	presLastEmit int64
	typing       map[string]int64 // user -> expiry
	typingDirty  bool
	typingLast   int64
}

func (g *group) str() *stream {
	if g.stream == nil {
		g.stream = &stream{
			user:     strings.TrimPrefix(g.id, StreamPrefix),
			watchers: make(map[string]attachment),
			counters: make(map[string]*pb.CallCounter),
			aliases:  make(map[string]*pb.Alias),
			groups:   make(map[string]*pb.IndexEntry),
			watching: make(map[string]struct{}),
			reachOf:  make(map[string]map[string]struct{}),
		}
	}
	return g.stream
}

func (g *group) eph() *ephemeral {
	if g.ephem == nil {
		g.ephem = &ephemeral{presDirty: make(map[string]struct{}), typing: make(map[string]int64)}
	}
	return g.ephem
}

// ephemeralTo fans one ephemeral frame out to sessions, one delivery per
// edge, in edge order.
func (b *builder) ephemeralTo(group string, e *pb.Ephemeral, recipients map[string][]string) {
	edges := make([]string, 0, len(recipients))
	for e := range recipients {
		edges = append(edges, e)
	}
	sort.Strings(edges)
	for _, edge := range edges {
		ss := recipients[edge]
		sort.Strings(ss)
		b.order = append(b.order, &pb.Delivery{Version: schemas.Version, Edge: edge, Group: group, Sessions: ss, Ephemeral: e})
	}
}

func (b *builder) failReason(r *pb.GroupEvent, code, reason, msg string) {
	b.reply(r, &pb.Reply{Kind: &pb.Reply_Error{Error: &pb.Error{Code: code, Message: msg, Reason: reason}}})
}

// applyStream handles a record of a personal stream.
func (s *State) applyStream(b *builder, r *pb.GroupEvent) {
	if r.GetForwardTo() != "" {
		s.forwardRequest(b, s.group(r.GetGroup()), r)
		return
	}
	switch k := r.GetKind().(type) {
	case *pb.GroupEvent_Attach:
		s.streamAttach(b, r, k.Attach)
	case *pb.GroupEvent_Detach:
		s.streamDetach(b, r)
	case *pb.GroupEvent_Signal:
		if k.Signal.GetTo() != "" {
			s.forwardSignal(b, s.group(r.GetGroup()), r, k.Signal)
			return
		}
		s.signal(b, r, k.Signal)
	case *pb.GroupEvent_PresenceWatch:
		if k.PresenceWatch.GetTo() != "" {
			s.forwardWatch(b, s.group(r.GetGroup()), r, k.PresenceWatch)
			return
		}
		s.watch(b, r, k.PresenceWatch)
	case *pb.GroupEvent_Join:
		s.streamJoin(b, s.group(r.GetGroup()), r, k.Join)
	case *pb.GroupEvent_Leave:
		s.streamLeave(b, s.group(r.GetGroup()), r, k.Leave)
	case *pb.GroupEvent_MembershipIndex:
		s.membershipIndex(b, s.group(r.GetGroup()), r, k.MembershipIndex)
	case *pb.GroupEvent_ReachChange:
		if g := s.groups[r.GetGroup()]; g != nil {
			s.reachChange(b, g, r, k.ReachChange)
		}
	default:
		b.fail(r, codeBadRequest, "personal streams take only signal, presence, join and leave")
	}
}

func (s *State) streamAttach(b *builder, r *pb.GroupEvent, a *pb.Attach) {
	g := s.group(r.GetGroup())
	st := g.str()
	if r.GetSession() == "" || r.GetEdge() == "" || r.GetUser() != st.user {
		b.fail(r, codeForbidden, "a session attaches only to its own user's stream")
		return
	}
	want := attachment{edge: r.GetEdge(), user: r.GetUser(), incarnation: r.GetIncarnation()}
	if cur, ok := g.attachments[r.GetSession()]; !ok || cur != want {
		g.attachments[r.GetSession()] = want
		s.put(stateKey(g.id, kindAttach, r.GetSession()), &pb.Attachment{Version: schemas.Version, Edge: want.edge, User: want.user, Incarnation: want.incarnation})
		g.byEdge = nil
	}
	s.seeEdge(want)
	s.sweepStream(g)
	if old := a.GetResume(); old != "" && old != r.GetSession() {
		s.alias(g, old, r.GetSession(), r.GetTsMs())
	}
	// Replay what is still within its TTL: ringing offers to a new device,
	// what a reconnected one missed. The client drops call_seqs it has.
	me := r.GetSession()
	for _, sig := range st.signals {
		to := sig.GetToSession()
		if to != "" && s.resolve(g, to) != me {
			continue
		}
		if sig.GetKind() == kindAnsweredElsewhere && sig.GetFromSession() == me {
			continue
		}
		b.ephemeralTo(g.id, &pb.Ephemeral{Kind: &pb.Ephemeral_Signal{Signal: sig}}, map[string][]string{want.edge: {me}})
	}
	s.presenceChanged(b, g)
	if r.GetRequestId() != "" {
		b.ack(r, 0)
	}
}

func (s *State) seeEdge(a attachment) {
	if s.edges[a.edge] == nil {
		s.edges[a.edge] = &edgeLiveness{incarnation: a.incarnation}
	}
}

// alias records that old is now new (and so is anything that pointed to
// old), so signals addressed to the old session reach the new one.
func (s *State) alias(g *group, old, nu string, ts int64) {
	st := g.str()
	for k, v := range st.aliases {
		if v.GetSession() == old {
			v.Session, v.TsMs = nu, ts
			s.put(stateKey(g.id, kindAlias, k), v)
		}
	}
	al := &pb.Alias{Version: schemas.Version, Session: nu, TsMs: ts}
	st.aliases[old] = al
	s.put(stateKey(g.id, kindAlias, old), al)
}

func (s *State) resolve(g *group, sess string) string {
	if g.stream == nil {
		return sess
	}
	for range 8 { // aliases are kept flat; the bound is only a guard
		a, ok := g.stream.aliases[sess]
		if !ok || a.GetSession() == "" { // "": departed, not resumed yet
			break
		}
		sess = a.GetSession()
	}
	return sess
}

func (s *State) streamDetach(b *builder, r *pb.GroupEvent) {
	g := s.groups[r.GetGroup()]
	if g != nil {
		sess := r.GetSession()
		if _, ok := g.attachments[sess]; ok {
			delete(g.attachments, sess)
			s.del(stateKey(g.id, kindAttach, sess))
			g.byEdge = nil
			s.presenceChanged(b, g)
			// A session that drops mid-call may be back in a moment with
			// resume: signals addressed to it are kept for the TTL, not
			// refused. (Unless it already resumed elsewhere: the new
			// edge's attach can be sequenced before the old one's detach.)
			st := g.str()
			if _, ok := st.aliases[sess]; !ok {
				al := &pb.Alias{Version: schemas.Version, TsMs: s.now}
				st.aliases[sess] = al
				s.put(stateKey(g.id, kindAlias, sess), al)
				s.signalStreams[g.id] = struct{}{}
			}
			s.forgetWatching(g)
		}
		if g.stream != nil {
			s.dropWatcher(g, sess)
		}
	}
	if r.GetRequestId() != "" {
		b.ack(r, 0)
	}
}

func (s *State) signal(b *builder, r *pb.GroupEvent, sig *pb.Signal) {
	ttl := sig.GetTtlMs()
	if ttl <= 0 {
		ttl = s.limits.SignalTTL.Milliseconds()
	}
	if sig.GetCall() == "" || sig.GetKind() == "" || r.GetUser() == "" {
		b.fail(r, codeBadRequest, "signal without call, kind or sender")
		return
	}
	if r.GetTsMs()+ttl < s.now {
		// The log is behind (a failover): a stale offer must never ring.
		b.failReason(r, codeUnavailable, reasonExpired, "signal expired before it could be delivered")
		return
	}
	if rc := sig.GetReach(); rc != nil && !s.reachable(r.GetGroup(), r.GetUser(), rc) {
		// Checked before anything that depends on the callee's sessions,
		// and before any state is made for them: the refusal says nothing
		// of whether the user exists or is online, and probing made-up
		// users costs no memory.
		b.failReason(r, codeForbidden, reasonReach, "may not signal "+strings.TrimPrefix(r.GetGroup(), StreamPrefix)+": no group in common")
		return
	}
	g := s.group(r.GetGroup())
	st := g.str()
	s.sweepStream(g)
	to := ""
	held := false
	recipients := map[string][]string{}
	switch {
	case sig.GetKind() == kindAnsweredElsewhere:
		if r.GetUser() != st.user {
			b.fail(r, codeForbidden, "answered_elsewhere is written by the user's own edge")
			return
		}
		for sess, a := range g.attachments {
			if sess != r.GetSession() {
				recipients[a.edge] = append(recipients[a.edge], sess)
			}
		}
	case sig.GetToSession() != "":
		to = s.resolve(g, sig.GetToSession())
		if a, ok := g.attachments[to]; ok {
			recipients[a.edge] = []string{to}
		} else if al, ok := st.aliases[to]; ok && al.GetSession() == "" && al.GetTsMs()+ttl >= s.now {
			held = true // departed moments ago: kept for its resume
		}
	default:
		for sess, a := range g.attachments {
			recipients[a.edge] = append(recipients[a.edge], sess)
		}
	}
	if len(recipients) == 0 && !held && sig.GetKind() != kindAnsweredElsewhere {
		msg := st.user + " has no live session"
		if to != "" {
			msg = "session " + sig.GetToSession() + " of " + st.user + " is gone"
		}
		b.failReason(r, codeUnavailable, reasonOffline, "offline: "+msg)
		return
	}
	ck := sig.GetCall() + keySep + r.GetUser()
	c := st.counters[ck]
	if c == nil {
		c = &pb.CallCounter{Version: schemas.Version}
		st.counters[ck] = c
	}
	c.Seq++
	c.TsMs = r.GetTsMs()
	s.put(stateKey(g.id, kindCounter, ck), c)
	out := &pb.SignalOut{From: r.GetUser(), FromSession: r.GetSession(), Call: sig.GetCall(), CallSeq: c.GetSeq(),
		Kind: sig.GetKind(), Payload: sig.GetPayload(), TsMs: r.GetTsMs(), TtlMs: ttl, ToSession: to}
	st.signals = append(st.signals, out)
	s.put(stateKey(g.id, kindSignal, signalSub(sig.GetCall(), r.GetUser(), c.GetSeq())), out)
	s.trimSignals(g, sig.GetCall(), r.GetUser())
	s.signalStreams[g.id] = struct{}{}
	b.ephemeralTo(g.id, &pb.Ephemeral{Kind: &pb.Ephemeral_Signal{Signal: out}}, recipients)
	if r.GetRequestId() != "" {
		b.ack(r, 0)
	}
}

// trimSignals keeps at most SignalBuffer signals per call and sender (an
// ICE storm cannot grow the buffer).
func (s *State) trimSignals(g *group, call, from string) {
	st := g.stream
	n := 0
	for _, sig := range st.signals {
		if sig.GetCall() == call && sig.GetFrom() == from {
			n++
		}
	}
	for i := 0; n > s.limits.SignalBuffer && i < len(st.signals); {
		sig := st.signals[i]
		if sig.GetCall() == call && sig.GetFrom() == from && sig.GetKind() != "offer" {
			s.del(stateKey(g.id, kindSignal, signalSub(call, from, sig.GetCallSeq())))
			st.signals = append(st.signals[:i], st.signals[i+1:]...)
			n--
			continue
		}
		i++
	}
}

// sweepStream drops signals past their TTL and counters and aliases idle
// for CallIdle, in the log's time.
func (s *State) sweepStream(g *group) {
	st := g.stream
	if st == nil {
		return
	}
	now := s.now
	kept := st.signals[:0]
	for _, sig := range st.signals {
		if sig.GetTsMs()+sig.GetTtlMs() < now {
			s.del(stateKey(g.id, kindSignal, signalSub(sig.GetCall(), sig.GetFrom(), sig.GetCallSeq())))
			continue
		}
		kept = append(kept, sig)
	}
	clear(st.signals[len(kept):])
	st.signals = kept
	idle := s.limits.CallIdle.Milliseconds()
	for k, c := range st.counters {
		if c.GetTsMs()+idle < now {
			delete(st.counters, k)
			s.del(stateKey(g.id, kindCounter, k))
		}
	}
	departedFor := s.limits.SignalTTL.Milliseconds()
	for k, a := range st.aliases {
		if a.GetTsMs()+idle < now || a.GetSession() == "" && a.GetTsMs()+departedFor < now {
			delete(st.aliases, k)
			s.del(stateKey(g.id, kindAlias, k))
		}
	}
	if len(st.signals) == 0 && len(st.counters) == 0 && len(st.aliases) == 0 {
		delete(s.signalStreams, g.id)
	}
}

func (s *State) watch(b *builder, r *pb.GroupEvent, pw *pb.PresenceWatch) {
	if r.GetSession() == "" || r.GetEdge() == "" {
		b.fail(r, codeBadRequest, "presence watch without a session")
		return
	}
	rc := pw.GetReach()
	if rc != nil && !s.reachable(r.GetGroup(), r.GetUser(), rc) {
		// The edge acked the presence request already: the refusal
		// carries its ID and names the user.
		target := strings.TrimPrefix(r.GetGroup(), StreamPrefix)
		b.reply(r, &pb.Reply{Kind: &pb.Reply_Error{Error: &pb.Error{Code: codeForbidden, Reason: reasonReach, User: target,
			Message: "may not see the presence of " + target + ": no group in common"}}})
		return
	}
	g := s.group(r.GetGroup())
	st := g.str()
	checked := rc != nil && r.GetUser() != st.user
	if checked {
		groups := groupSet(rc.GetGroups())
		// What the watcher's stream sent is the latest: it forwarded this
		// watch after every ReachChange it wrote here before.
		st.reachOf[r.GetUser()] = groups
		s.put(stateKey(g.id, kindWatcherGroups, r.GetUser()), &pb.WatcherGroups{Version: schemas.Version, Groups: sortedSet(groups)})
	}
	w := attachment{edge: r.GetEdge(), user: r.GetUser(), incarnation: r.GetIncarnation(), reach: checked}
	if cur, ok := st.watchers[r.GetSession()]; !ok || cur != w {
		st.watchers[r.GetSession()] = w
		s.put(stateKey(g.id, kindWatcher, r.GetSession()), &pb.Attachment{Version: schemas.Version, Edge: w.edge, User: w.user, Incarnation: w.incarnation, Reach: w.reach})
	}
	s.seeEdge(w)
	snap := s.userPresence(g)
	if snap.GetStatus() != st.emitted.GetStatus() || snap.GetSessions() != st.emitted.GetSessions() {
		// The snapshot is newer than what was last pushed (a change held
		// back by the window). Coalescing compares with what was pushed:
		// a change back to that state before the window closes would
		// push nothing, leaving this watcher with the snapshot. Forget
		// it, so the next flush pushes the state whatever it is.
		st.emitted = pb.PresenceState{}
	}
	b.ephemeralTo(g.id, &pb.Ephemeral{Kind: &pb.Ephemeral_Presence{Presence: snap}}, map[string][]string{w.edge: {r.GetSession()}})
	// A forwarded watch (rc set) was acked by its edge with the request;
	// its ID is here only for a refusal.
	if r.GetRequestId() != "" && rc == nil {
		b.ack(r, 0)
	}
}

func (s *State) userPresence(g *group) *pb.PresenceOut {
	st := g.str()
	p := st.pres
	if p == nil {
		p = &pb.PresenceState{Status: statusOffline}
	}
	return &pb.PresenceOut{User: st.user, Status: p.GetStatus(), Sessions: p.GetSessions(), TsMs: p.GetTsMs()}
}

// presenceChanged records a personal stream's presence after its sessions
// changed and pushes it to watchers, at most once per PresenceWindow: a
// user flapping 20 times in a second costs watchers two updates.
func (s *State) presenceChanged(b *builder, g *group) {
	st := g.str()
	status := statusOffline
	if len(g.attachments) > 0 {
		status = statusOnline
	}
	n := uint32(len(g.attachments))
	if st.pres == nil || st.pres.GetStatus() != status || st.pres.GetSessions() != n {
		st.pres = &pb.PresenceState{Version: schemas.Version, Status: status, Sessions: n, TsMs: s.now}
		s.put(stateKey(g.id, kindPresence, ""), st.pres)
	}
	s.flushUserPresence(b, g)
}

func (s *State) flushUserPresence(b *builder, g *group) {
	st := g.str()
	p := st.pres
	if p == nil || (st.emitted.GetStatus() == p.GetStatus() && st.emitted.GetSessions() == p.GetSessions()) {
		delete(s.pending, g.id)
		return
	}
	if s.now-st.lastEmit < s.limits.PresenceWindow.Milliseconds() {
		s.pending[g.id] = struct{}{}
		return
	}
	delete(s.pending, g.id)
	st.lastEmit = s.now
	st.emitted.Status, st.emitted.Sessions = p.GetStatus(), p.GetSessions()
	if len(st.watchers) == 0 {
		return
	}
	recipients := map[string][]string{}
	for sess, w := range st.watchers {
		recipients[w.edge] = append(recipients[w.edge], sess)
	}
	b.ephemeralTo(g.id, &pb.Ephemeral{Kind: &pb.Ephemeral_Presence{Presence: s.userPresence(g)}}, recipients)
}

// Group presence: a member is online in a group while one of their
// sessions is subscribed to it. Sessions that subscribed with presence get
// a change per member, coalesced per PresenceWindow, or, in groups of more
// than PresenceMaxGroup members, only the online and member counts.

func (g *group) onlineSessions(user string) uint32 {
	var n uint32
	for _, a := range g.attachments {
		if a.user == user {
			n++
		}
	}
	return n
}

func (g *group) presenceWatchers() map[string][]string {
	out := map[string][]string{}
	for sess, a := range g.attachments {
		if a.presence {
			out[a.edge] = append(out[a.edge], sess)
		}
	}
	return out
}

func (s *State) countsOnly(g *group) bool { return len(g.members) > s.limits.PresenceMaxGroup }

func (s *State) groupCounts(g *group) *pb.PresenceOut {
	users := map[string]struct{}{}
	for _, a := range g.attachments {
		users[a.user] = struct{}{}
	}
	return &pb.PresenceOut{Group: g.id, Counts: true, Online: uint32(len(users)), Members: uint32(len(g.members)), TsMs: s.now}
}

func (s *State) memberPresence(g *group, user string) *pb.PresenceOut {
	n := g.onlineSessions(user)
	status := statusOffline
	if n > 0 {
		status = statusOnline
	}
	return &pb.PresenceOut{Group: g.id, User: user, Status: status, Sessions: n, TsMs: s.now}
}

// presenceSnapshot answers a subscribe with presence: every member's
// state (or the counts) for that session only.
func (s *State) presenceSnapshot(b *builder, g *group, edge, sess string) {
	to := map[string][]string{edge: {sess}}
	if s.countsOnly(g) {
		b.ephemeralTo(g.id, &pb.Ephemeral{Kind: &pb.Ephemeral_Presence{Presence: s.groupCounts(g)}}, to)
		return
	}
	users := make([]string, 0, len(g.members))
	for u := range g.members {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		b.ephemeralTo(g.id, &pb.Ephemeral{Kind: &pb.Ephemeral_Presence{Presence: s.memberPresence(g, u)}}, to)
	}
}

// memberChanged notes that user's sessions in group g changed.
func (s *State) memberChanged(b *builder, g *group, user string) {
	e := g.eph()
	e.presDirty[user] = struct{}{}
	s.flushGroup(b, g)
}

// flushGroup pushes pending group presence and typing when their windows
// allow.
func (s *State) flushGroup(b *builder, g *group) {
	e := g.ephem
	if e == nil {
		return
	}
	now := s.now
	if len(e.presDirty) > 0 && now-e.presLastEmit >= s.limits.PresenceWindow.Milliseconds() {
		e.presLastEmit = now
		if w := g.presenceWatchers(); len(w) > 0 {
			if s.countsOnly(g) {
				b.ephemeralTo(g.id, &pb.Ephemeral{Kind: &pb.Ephemeral_Presence{Presence: s.groupCounts(g)}}, w)
			} else {
				users := make([]string, 0, len(e.presDirty))
				for u := range e.presDirty {
					users = append(users, u)
				}
				sort.Strings(users)
				for _, u := range users {
					b.ephemeralTo(g.id, &pb.Ephemeral{Kind: &pb.Ephemeral_Presence{Presence: s.memberPresence(g, u)}}, copyRecipients(w))
				}
			}
		}
		clear(e.presDirty)
	}
	// Typers expire on their own: the list shrinks without a new frame.
	for u, exp := range e.typing {
		if exp <= now {
			delete(e.typing, u)
			e.typingDirty = true
		}
	}
	if e.typingDirty && now-e.typingLast >= s.limits.TypingWindow.Milliseconds() {
		e.typingDirty = false
		e.typingLast = now
		users := make([]string, 0, len(e.typing))
		for u := range e.typing {
			users = append(users, u)
		}
		sort.Strings(users)
		if r := g.recipients(); len(r) > 0 {
			b.ephemeralTo(g.id, &pb.Ephemeral{Kind: &pb.Ephemeral_Typing{Typing: &pb.TypingOut{Users: users}}}, copyRecipients(r))
		}
	}
	if len(e.presDirty) > 0 || e.typingDirty || len(e.typing) > 0 {
		s.pending[g.id] = struct{}{}
	} else {
		delete(s.pending, g.id)
	}
}

// copyRecipients copies a recipients map, since ephemeralTo sorts the
// session slices it is given in place and g.recipients() is a cache.
func copyRecipients(r map[string][]string) map[string][]string {
	out := make(map[string][]string, len(r))
	for e, ss := range r {
		out[e] = append([]string(nil), ss...)
	}
	return out
}

func (s *State) typing(b *builder, r *pb.GroupEvent) {
	g := s.groups[r.GetGroup()]
	if g == nil {
		b.fail(r, codeNotMember, "not a member of "+r.GetGroup())
		return
	}
	if _, ok := g.members[r.GetUser()]; !ok {
		b.fail(r, codeNotMember, "not a member of "+r.GetGroup())
		return
	}
	e := g.eph()
	if _, ok := e.typing[r.GetUser()]; !ok {
		e.typingDirty = true
	}
	e.typing[r.GetUser()] = r.GetTsMs() + s.limits.TypingExpiry.Milliseconds()
	s.flushGroup(b, g)
	if r.GetRequestId() != "" {
		b.ack(r, 0)
	}
}

// flushPending runs on every heartbeat: windows that closed since the
// last change push what they held back, and signals past their TTL leave
// the buffers.
func (s *State) flushPending(b *builder) {
	ids := make([]string, 0, len(s.pending))
	for id := range s.pending {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		g := s.groups[id]
		if g == nil {
			delete(s.pending, id)
			continue
		}
		if isStream(id) {
			s.flushUserPresence(b, g)
		} else {
			s.flushGroup(b, g)
		}
	}
	if len(s.signalStreams) > 0 {
		ids = ids[:0]
		for id := range s.signalStreams {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			if g := s.groups[id]; g != nil {
				s.sweepStream(g)
			} else {
				delete(s.signalStreams, id)
			}
		}
	}
}
