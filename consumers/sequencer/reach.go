package sequencer

import (
	"fmt"
	"sort"
	"strings"

	"github.com/causeway/causeway/schemas"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"google.golang.org/protobuf/proto"
)

// The membership index and the reach policy.
//
// "May A ring B, or see B's presence?" Under the shared_group policy the
// answer is "only if A and B share a group", and membership lives on each
// group's partition while A's and B's streams may live on two others. So
// each personal stream keeps an index of its user's groups, and the
// partitions talk through the group log itself: Apply returns records
// (Output.Records) that the sequencer writes in the same transaction as
// everything else, so each is applied exactly once, in the order of the
// partition that wrote it.
//
//   - Membership: an edge writes join and leave to the user's own stream
//     `u:<A>` (Join.group). The stream counts A's groups, pending joins
//     included (MaxGroupsPerUser: exact, since every join of A passes
//     here), and forwards the request to the group. The group sequences it
//     (or refuses it: MaxMembersPerGroup) and writes a MembershipIndex
//     record back to `u:<A>`, which records the group, or frees the place
//     a refused join held. Joins written straight to a group (edges from
//     before the index) are sequenced as before and indexed the same way.
//     Until the join is answered, the edge sends the session's other
//     requests for the group through `u:<A>` too (GroupEvent.forward_to),
//     so that they stay behind it.
//   - Signals and presence: an edge with the shared_group policy writes
//     them to the requester's stream `u:<A>` with `to` set; the stream
//     attaches A's groups (Reach) and forwards the request to `u:<B>`,
//     which accepts it only if B's index holds one of them. Requests
//     without Reach (edges with the any policy) are not checked.
//   - Presence watches stay checked: a stream that admitted a watcher of
//     user A keeps A's groups (WatcherGroups), kept current by A's stream,
//     which remembers whom A watches (Watching) and writes them a
//     ReachChange whenever A's groups change. When the two no longer share
//     a group, the watch ends with `forbidden` (reason "reach").

// Changelog kinds of the index (records.proto).
const (
	kindIndex         = "x"
	kindWatching      = "v"
	kindWatcherGroups = "y"

	reasonReach = "reach"
)

// index writes the membership index record of user for group to the
// user's stream.
func (b *builder) index(user, group string, ts int64, member bool, seq uint64) {
	b.forward(&pb.GroupEvent{Group: StreamPrefix + user, User: user, TsMs: ts,
		Kind: &pb.GroupEvent_MembershipIndex{MembershipIndex: &pb.MembershipIndex{Group: group, Member: member, Seq: seq}}})
}

// indexed tells the stream of user, a member of g, of the membership when
// it was never told (a membership older than the index), or always with
// force.
func (s *State) indexed(b *builder, g *group, user string, ts int64, force bool, seq uint64) {
	_, unindexed := g.unindexed[user]
	if !force && !unindexed {
		return
	}
	b.index(user, g.id, ts, true, seq)
	if unindexed {
		delete(g.unindexed, user)
		s.saveMember(g, user)
	}
}

// saveMember writes a member's changelog entry.
func (s *State) saveMember(g *group, user string) {
	_, unindexed := g.unindexed[user]
	rm := g.reads[user]
	s.put(stateKey(g.id, kindMember, user), &pb.Membership{Version: schemas.Version, JoinedSeq: g.members[user],
		ReadSeq: rm.seq, ReadTsMs: rm.ts, Indexed: !unindexed})
}

// forwardFrom copies a request of a user's stream for another key of the
// group log, keeping who asked, where, when, and the request ID, so the
// answer reaches the requesting session.
func forwardFrom(r *pb.GroupEvent, group string) *pb.GroupEvent {
	return &pb.GroupEvent{Group: group, Edge: r.GetEdge(), Session: r.GetSession(), User: r.GetUser(),
		RequestId: r.GetRequestId(), TsMs: r.GetTsMs(), Incarnation: r.GetIncarnation()}
}

// ownStream reports whether r acts for the stream's own user; it answers
// forbidden when not.
func ownStream(b *builder, r *pb.GroupEvent, st *stream, what string) bool {
	if r.GetUser() != "" && r.GetUser() == st.user {
		return true
	}
	b.fail(r, codeForbidden, what+" is written to the user's own stream")
	return false
}

// streamJoin admits a join of the stream's user and forwards it to the
// group: refused when the user's groups, pending joins included, are at
// MaxGroupsPerUser.
func (s *State) streamJoin(b *builder, g *group, r *pb.GroupEvent, j *pb.Join) {
	st := g.str()
	if !ownStream(b, r, st, "join") {
		return
	}
	target := j.GetGroup()
	if target == "" || isStream(target) {
		b.fail(r, codeBadRequest, "join needs a group that is not a personal stream")
		return
	}
	if _, ok := st.groups[target]; !ok {
		if m := s.limits.MaxGroupsPerUser; m > 0 && len(st.groups) >= m {
			b.failReason(r, codeRateLimited, reasonGroups, fmt.Sprintf("%s belongs to %d groups, the limit (sequencer.max_groups_per_user); leave one first", st.user, len(st.groups)))
			return
		}
		// The place is held until the group answers (MembershipIndex).
		e := &pb.IndexEntry{Version: schemas.Version, Pending: true, TsMs: r.GetTsMs()}
		st.groups[target] = e
		s.put(stateKey(g.id, kindIndex, target), e)
	}
	fw := forwardFrom(r, target)
	fw.Kind = &pb.GroupEvent_Join{Join: &pb.Join{}}
	b.forward(fw)
}

// streamLeave forwards a leave of the stream's user to the group; the
// index follows the group's answer. Leaves pass here so that a user's
// joins and leaves reach each group in the order they were made.
func (s *State) streamLeave(b *builder, g *group, r *pb.GroupEvent, l *pb.Leave) {
	if !ownStream(b, r, g.str(), "leave") {
		return
	}
	if l.GetGroup() == "" || isStream(l.GetGroup()) {
		b.fail(r, codeBadRequest, "leave needs a group that is not a personal stream")
		return
	}
	fw := forwardFrom(r, l.GetGroup())
	fw.Kind = &pb.GroupEvent_Leave{Leave: &pb.Leave{}}
	b.forward(fw)
}

// forwardRequest passes a request of the stream's user on unchanged: the
// user's edge sends a group's requests this way while a join or leave it
// sent here is unanswered, so a subscribe pipelined behind a join reaches
// the group after it; and, under the shared_group policy, the detaches
// that end presence watches forwarded from here, so they cannot overtake
// them.
func (s *State) forwardRequest(b *builder, g *group, r *pb.GroupEvent) {
	if !ownStream(b, r, g.str(), "a forwarded request") {
		return
	}
	to := r.GetForwardTo()
	if _, detach := r.GetKind().(*pb.GroupEvent_Detach); isStream(to) && !detach {
		// A detach follows a presence watch this stream forwarded; any
		// other request for a stream would skip the checks of its path.
		b.fail(r, codeBadRequest, "only a detach is forwarded to a personal stream")
		return
	}
	fw := proto.Clone(r).(*pb.GroupEvent)
	fw.Group, fw.ForwardTo = to, ""
	b.forward(fw)
}

// membershipIndex applies a group's answer to the stream's index. When
// the user's groups changed, the users they watch are told, and the
// stream's own watchers are checked again.
func (s *State) membershipIndex(b *builder, g *group, r *pb.GroupEvent, mi *pb.MembershipIndex) {
	st := g.str()
	if r.GetUser() != st.user || mi.GetGroup() == "" {
		return // not the sequencer's: ignored
	}
	gid := mi.GetGroup()
	cur, had := st.groups[gid]
	wasMember := had && !cur.GetPending()
	if mi.GetMember() {
		if !wasMember || cur.GetJoinedSeq() != mi.GetSeq() {
			e := &pb.IndexEntry{Version: schemas.Version, JoinedSeq: mi.GetSeq(), TsMs: r.GetTsMs()}
			st.groups[gid] = e
			s.put(stateKey(g.id, kindIndex, gid), e)
		}
	} else if had {
		delete(st.groups, gid)
		s.del(stateKey(g.id, kindIndex, gid))
	}
	if wasMember == mi.GetMember() {
		return
	}
	// Whom this user watches re-checks with the new groups.
	targets := make([]string, 0, len(st.watching))
	for u := range st.watching {
		targets = append(targets, u)
	}
	sort.Strings(targets)
	for _, u := range targets {
		b.forward(&pb.GroupEvent{Group: StreamPrefix + u, User: st.user, TsMs: r.GetTsMs(),
			Kind: &pb.GroupEvent_ReachChange{ReachChange: &pb.ReachChange{Group: gid, Member: mi.GetMember()}}})
	}
	if !mi.GetMember() {
		s.recheckWatchers(b, g, "")
	}
}

// reachChange updates what this stream knows of a watcher's groups and,
// when they shrank, checks that watcher again.
func (s *State) reachChange(b *builder, g *group, r *pb.GroupEvent, rc *pb.ReachChange) {
	st := g.str()
	set, ok := st.reachOf[r.GetUser()]
	if !ok || rc.GetGroup() == "" {
		return // no watcher of that user here (any more)
	}
	if rc.GetMember() {
		set[rc.GetGroup()] = struct{}{}
	} else {
		delete(set, rc.GetGroup())
	}
	s.put(stateKey(g.id, kindWatcherGroups, r.GetUser()), &pb.WatcherGroups{Version: schemas.Version, Groups: sortedSet(set)})
	if !rc.GetMember() {
		s.recheckWatchers(b, g, r.GetUser())
	}
}

// recheckWatchers ends the reach-checked presence watches (of user only,
// if set) whose watcher no longer shares a group with the stream's user:
// each watching session gets forbidden (reason reach, naming the user).
func (s *State) recheckWatchers(b *builder, g *group, user string) {
	st := g.str()
	var gone []string
	for sess, w := range st.watchers {
		if !w.reach || (user != "" && w.user != user) || s.mayReach(st, w.user, st.reachOf[w.user]) {
			continue
		}
		gone = append(gone, sess)
	}
	sort.Strings(gone)
	for _, sess := range gone {
		w := st.watchers[sess]
		s.dropWatcher(g, sess)
		b.reply(&pb.GroupEvent{Session: sess, Edge: w.edge}, &pb.Reply{Kind: &pb.Reply_Error{Error: &pb.Error{
			Code: codeForbidden, Reason: reasonReach, User: st.user,
			Message: "presence of " + st.user + " ended: no group in common any more"}}})
	}
}

// dropWatcher removes a presence watcher, and what the stream kept of the
// watcher's groups when it was the user's last watching session.
func (s *State) dropWatcher(g *group, sess string) {
	st := g.str()
	w, ok := st.watchers[sess]
	if !ok {
		return
	}
	delete(st.watchers, sess)
	s.del(stateKey(g.id, kindWatcher, sess))
	if !w.reach {
		return
	}
	for _, o := range st.watchers {
		if o.reach && o.user == w.user {
			return
		}
	}
	if _, ok := st.reachOf[w.user]; ok {
		delete(st.reachOf, w.user)
		s.del(stateKey(g.id, kindWatcherGroups, w.user))
	}
}

// mayReach reports whether user, a member of groups, may reach the
// stream's user: the same user, or a group in common.
func (s *State) mayReach(st *stream, user string, groups map[string]struct{}) bool {
	if user == st.user {
		return true
	}
	// Iterate the smaller set.
	if len(groups) > len(st.groups) {
		for gid, e := range st.groups {
			if _, ok := groups[gid]; ok && !e.GetPending() {
				return true
			}
		}
		return false
	}
	for gid := range groups {
		if e, ok := st.groups[gid]; ok && !e.GetPending() {
			return true
		}
	}
	return false
}

// reachable reports whether user, with the groups of rc, may reach the
// user of stream id, without making state for a stream never seen.
func (s *State) reachable(id, user string, rc *pb.Reach) bool {
	g := s.groups[id]
	if g == nil || g.stream == nil {
		return user == strings.TrimPrefix(id, StreamPrefix)
	}
	return s.mayReach(g.stream, user, groupSet(rc.GetGroups()))
}

// memberGroups lists the stream user's groups (not pending joins), sorted.
func (st *stream) memberGroups() []string {
	out := make([]string, 0, len(st.groups))
	for gid, e := range st.groups {
		if !e.GetPending() {
			out = append(out, gid)
		}
	}
	sort.Strings(out)
	return out
}

// forwardSignal sends a signal written to the sender's own stream on to
// the callee's stream, with the sender's groups.
func (s *State) forwardSignal(b *builder, g *group, r *pb.GroupEvent, sig *pb.Signal) {
	st := g.str()
	if !ownStream(b, r, st, "a signal with to") {
		return
	}
	if sig.GetCall() == "" || sig.GetKind() == "" {
		b.fail(r, codeBadRequest, "signal without call or kind")
		return
	}
	ttl := sig.GetTtlMs()
	if ttl <= 0 {
		ttl = s.limits.SignalTTL.Milliseconds()
	}
	if r.GetTsMs()+ttl < s.now {
		b.failReason(r, codeUnavailable, reasonExpired, "signal expired before it could be delivered")
		return
	}
	fw := forwardFrom(r, StreamPrefix+sig.GetTo())
	fw.Kind = &pb.GroupEvent_Signal{Signal: &pb.Signal{ToSession: sig.GetToSession(), Call: sig.GetCall(), Kind: sig.GetKind(),
		Payload: sig.GetPayload(), TtlMs: sig.GetTtlMs(), Reach: &pb.Reach{Groups: st.memberGroups()}}}
	b.forward(fw)
}

// forwardWatch sends a presence watch written to the watcher's own stream
// on to the watched user's stream, with the watcher's groups, and
// remembers the watched user so later changes of the groups reach it.
func (s *State) forwardWatch(b *builder, g *group, r *pb.GroupEvent, pw *pb.PresenceWatch) {
	st := g.str()
	if !ownStream(b, r, st, "a presence watch with to") {
		return
	}
	if r.GetSession() == "" || r.GetEdge() == "" {
		b.fail(r, codeBadRequest, "presence watch without a session")
		return
	}
	to := pw.GetTo()
	if to != st.user {
		if _, ok := st.watching[to]; !ok {
			st.watching[to] = struct{}{}
			s.put(stateKey(g.id, kindWatching, to), &pb.Watching{Version: schemas.Version})
		}
	}
	fw := forwardFrom(r, StreamPrefix+to)
	fw.Kind = &pb.GroupEvent_PresenceWatch{PresenceWatch: &pb.PresenceWatch{Reach: &pb.Reach{Groups: st.memberGroups()}}}
	b.forward(fw)
}

// forgetWatching drops whom the stream's user watches once the user has
// no session left: their watches ended with their sessions.
func (s *State) forgetWatching(g *group) {
	st := g.stream
	if st == nil || len(g.attachments) > 0 || len(st.watching) == 0 {
		return
	}
	for u := range st.watching {
		s.del(stateKey(g.id, kindWatching, u))
	}
	clear(st.watching)
}

func groupSet(groups []string) map[string]struct{} {
	out := make(map[string]struct{}, len(groups))
	for _, g := range groups {
		out[g] = struct{}{}
	}
	return out
}

func sortedSet(set map[string]struct{}) []string {
	out := make([]string, 0, len(set))
	for g := range set {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}
