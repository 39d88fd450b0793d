package sequencer

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/causeway/causeway/pipeline"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"google.golang.org/protobuf/proto"
)

// logSim is the group log without Kafka: partitions of pure States, and
// the records their outputs write back into the log, applied in the
// order written (which keeps each partition's order, as Kafka does).
type logSim struct {
	t     *testing.T
	parts []*State
	l     Limits
	// pending records, written but not applied yet.
	pending []*pb.GroupEvent
	ts      int64
	// changelog is each partition's compacted changelog: key -> value.
	changelog []map[string][]byte
}

func newLogSim(t *testing.T, partitions int, l Limits) *logSim {
	s := &logSim{t: t, l: l, ts: 1000}
	for range partitions {
		s.parts = append(s.parts, NewState(l))
		s.changelog = append(s.changelog, map[string][]byte{})
	}
	return s
}

func (s *logSim) part(key string) *State {
	return s.parts[pipeline.PartitionFor(key, int32(len(s.parts)))]
}

// step applies one record written by an edge, then every record the
// sequencer writes in consequence, and returns what they delivered, as
// lines "edge session: frame".
func (s *logSim) step(e *pb.GroupEvent) []string {
	s.t.Helper()
	s.ts++
	if e.TsMs == 0 {
		e.TsMs = s.ts
	}
	s.pending = append(s.pending, e)
	var out []string
	for n := 0; len(s.pending) > 0; n++ {
		if n > 1000 {
			s.t.Fatal("records keep forwarding each other")
		}
		r := s.pending[0]
		s.pending = s.pending[1:]
		// What Kafka would carry: the record as bytes.
		b, err := proto.Marshal(r)
		if err != nil {
			s.t.Fatal(err)
		}
		var dec pb.GroupEvent
		if err := proto.Unmarshal(b, &dec); err != nil {
			s.t.Fatal(err)
		}
		p := pipeline.PartitionFor(dec.GetGroup(), int32(len(s.parts)))
		o := s.parts[p].Apply(&dec)
		for _, w := range s.parts[p].TakeWrites() {
			if w.Value == nil {
				delete(s.changelog[p], w.Key)
			} else {
				s.changelog[p][w.Key] = w.Value
			}
		}
		out = append(out, render(o)...)
		for _, f := range o.Records {
			if f.GetVersion() == 0 || f.GetGroup() == "" {
				s.t.Fatalf("forwarded record without version or group: %v", f)
			}
		}
		s.pending = append(s.pending, o.Records...)
	}
	return out
}

// restart rebuilds every partition from its changelog, as a sequencer
// taking over would.
func (s *logSim) restart() {
	s.t.Helper()
	for i := range s.parts {
		n := NewState(s.l)
		keys := make([]string, 0, len(s.changelog[i]))
		for k := range s.changelog[i] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if !n.Restore(k, s.changelog[i][k]) {
				s.t.Fatalf("restore %q failed", k)
			}
		}
		n.FinishRestore()
		s.parts[i] = n
	}
}

// render lists what an output delivers, one line per session and frame.
func render(o Output) []string {
	var out []string
	for _, d := range o.Deliveries {
		for _, sess := range d.GetSessions() {
			var what string
			switch {
			case d.GetEvent() != nil:
				ev := d.GetEvent()
				what = fmt.Sprintf("event %s#%d", ev.GetGroup(), ev.GetSeq())
				if m := ev.GetMember(); m != nil {
					what += " " + m.GetUser() + " " + strings.ToLower(m.GetChange().String())
				}
			case d.GetEphemeral().GetSignal() != nil:
				sig := d.GetEphemeral().GetSignal()
				what = fmt.Sprintf("signal %s from %s #%d", sig.GetKind(), sig.GetFrom(), sig.GetCallSeq())
			case d.GetEphemeral().GetPresence() != nil:
				p := d.GetEphemeral().GetPresence()
				if p.GetGroup() != "" {
					continue // group presence is not what these tests look at
				}
				what = fmt.Sprintf("presence %s %s", p.GetUser(), p.GetStatus())
			default:
				continue
			}
			out = append(out, d.GetEdge()+" "+sess+": "+what)
		}
		for _, r := range d.GetReplies() {
			var what string
			switch k := r.GetKind().(type) {
			case *pb.Reply_Ack:
				what = fmt.Sprintf("ack %s#%d", k.Ack.GetGroup(), k.Ack.GetSeq())
			case *pb.Reply_Error:
				what = "error " + k.Error.GetCode()
				if k.Error.GetReason() != "" {
					what += "/" + k.Error.GetReason()
				}
				if k.Error.GetUser() != "" {
					what += " user " + k.Error.GetUser()
				}
			case *pb.Reply_Subscribed:
				what = "subscribed " + k.Subscribed.GetGroup()
			default:
				continue
			}
			out = append(out, d.GetEdge()+" "+r.GetSession()+": "+what+" id="+r.GetRequestId())
		}
	}
	return out
}

// Requests as the edge writes them.
func hello(user, sess, edge string) *pb.GroupEvent {
	return &pb.GroupEvent{Version: 1, Group: "u:" + user, User: user, Session: sess, Edge: edge, Incarnation: "i",
		Kind: &pb.GroupEvent_Attach{Attach: &pb.Attach{}}}
}

func joinVia(user, sess, edge, group, req string) *pb.GroupEvent {
	return &pb.GroupEvent{Version: 1, Group: "u:" + user, User: user, Session: sess, Edge: edge, RequestId: req, Incarnation: "i",
		Kind: &pb.GroupEvent_Join{Join: &pb.Join{Group: group}}}
}

func leaveVia(user, sess, edge, group, req string) *pb.GroupEvent {
	return &pb.GroupEvent{Version: 1, Group: "u:" + user, User: user, Session: sess, Edge: edge, RequestId: req, Incarnation: "i",
		Kind: &pb.GroupEvent_Leave{Leave: &pb.Leave{Group: group}}}
}

func signalVia(from, sess, edge, to, req string) *pb.GroupEvent {
	return &pb.GroupEvent{Version: 1, Group: "u:" + from, User: from, Session: sess, Edge: edge, RequestId: req, Incarnation: "i",
		Kind: &pb.GroupEvent_Signal{Signal: &pb.Signal{To: to, Call: "c", Kind: "offer", TtlMs: 30_000}}}
}

func watchVia(from, sess, edge, to, req string) *pb.GroupEvent {
	return &pb.GroupEvent{Version: 1, Group: "u:" + from, User: from, Session: sess, Edge: edge, RequestId: req, Incarnation: "i",
		Kind: &pb.GroupEvent_PresenceWatch{PresenceWatch: &pb.PresenceWatch{To: to}}}
}

func subscribe(group, user, sess, edge, req string) *pb.GroupEvent {
	return &pb.GroupEvent{Version: 1, Group: group, User: user, Session: sess, Edge: edge, RequestId: req, Incarnation: "i",
		Kind: &pb.GroupEvent_Attach{Attach: &pb.Attach{}}}
}

// Joins and leaves pass through the user's stream, which indexes the
// user's groups exactly; with the shared_group policy a signal reaches
// only a user sharing a group, and the refusal does not depend on whether
// the callee exists or is online.
func TestReachSignals(t *testing.T) {
	t.Parallel()
	for _, parts := range []int{1, 2, 8} {
		t.Run(fmt.Sprintf("%d partitions", parts), func(t *testing.T) {
			t.Parallel()
			s := newLogSim(t, parts, testLimits(100))
			for _, u := range []string{"ann", "ben", "cat"} {
				s.step(hello(u, "s-"+u, "e-"+u))
			}
			steps := []struct {
				in   *pb.GroupEvent
				want []string
			}{
				{joinVia("ann", "s-ann", "e-ann", "room", "j1"), []string{"e-ann s-ann: ack room#1 id=j1"}},
				{joinVia("ben", "s-ben", "e-ben", "room", "j2"), []string{"e-ben s-ben: ack room#2 id=j2"}},
				{joinVia("cat", "s-cat", "e-cat", "other", "j3"), []string{"e-cat s-cat: ack other#1 id=j3"}},
				// Shared group: delivered, acked by the callee's stream.
				{signalVia("ann", "s-ann", "e-ann", "ben", "x1"), []string{"e-ben s-ben: signal offer from ann #1", "e-ann s-ann: ack u:ben#0 id=x1"}},
				// No shared group: refused, whether the callee is online,
				// offline or was never seen.
				{signalVia("cat", "s-cat", "e-cat", "ben", "x2"), []string{"e-cat s-cat: error forbidden/reach id=x2"}},
				{signalVia("cat", "s-cat", "e-cat", "nobody", "x3"), []string{"e-cat s-cat: error forbidden/reach id=x3"}},
				// Oneself is always reachable (here: offline elsewhere).
				{signalVia("cat", "s-cat", "e-cat", "cat", "x4"), []string{"e-cat s-cat: signal offer from cat #1", "e-cat s-cat: ack u:cat#0 id=x4"}},
				// Sharing a group but offline: the usual offline error.
				{&pb.GroupEvent{Version: 1, Group: "u:ben", User: "ben", Session: "s-ben", Edge: "e-ben", Kind: &pb.GroupEvent_Detach{Detach: &pb.Detach{}}}, nil},
				{signalVia("ann", "s-ann", "e-ann", "ben", "x5"), []string{"e-ann s-ann: error unavailable/offline id=x5"}},
				{hello("ben", "s-ben2", "e-ben"), nil},
				// Cat joins the room: now she may.
				{joinVia("cat", "s-cat", "e-cat", "room", "j4"), []string{"e-cat s-cat: ack room#3 id=j4"}},
				{signalVia("cat", "s-cat", "e-cat", "ben", "x6"), []string{"e-ben s-ben2: signal offer from cat #1", "e-cat s-cat: ack u:ben#0 id=x6"}},
				// Ben leaves: nobody shares a group with him any more.
				{leaveVia("ben", "s-ben2", "e-ben", "room", "l1"), []string{"e-ben s-ben2: ack room#4 id=l1"}},
				{signalVia("ann", "s-ann", "e-ann", "ben", "x7"), []string{"e-ann s-ann: error forbidden/reach id=x7"}},
				// Leaving a group one is not in changes nothing.
				{leaveVia("ben", "s-ben2", "e-ben", "room", "l2"), []string{"e-ben s-ben2: error not_member id=l2"}},
				// Only the user's own stream takes their joins.
				{func() *pb.GroupEvent { e := joinVia("ann", "s-ann", "e-ann", "x", "j5"); e.Group = "u:ben"; return e }(), []string{"e-ann s-ann: error forbidden id=j5"}},
				{signalVia("ann", "s-ann", "e-ann", "cat", "x8"), []string{"e-cat s-cat: signal offer from ann #1", "e-ann s-ann: ack u:cat#0 id=x8"}},
			}
			for i, st := range steps {
				got := s.step(st.in)
				if st.want != nil && !reflect.DeepEqual(got, st.want) {
					t.Fatalf("step %d: got %q, want %q", i, got, st.want)
				}
				if i == 10 {
					// A sequencer taking over mid-way continues alike.
					s.restart()
				}
				if g := s.part("u:nobody").groups["u:nobody"]; g != nil {
					t.Fatalf("step %d: probing a made-up user made state for it", i)
				}
			}
		})
	}
}

// The index survives a failover, and a signal sent straight to the
// callee's stream (an edge with the any policy) is not checked.
func TestReachIndexRestoredAndAnyPolicy(t *testing.T) {
	t.Parallel()
	s := newLogSim(t, 4, testLimits(100))
	s.step(hello("ann", "a1", "e1"))
	s.step(hello("ben", "b1", "e2"))
	s.step(joinVia("ann", "a1", "e1", "g1", ""))
	s.step(joinVia("ben", "b1", "e2", "g1", ""))
	s.restart()
	if got, want := s.part("u:ann").groups["u:ann"].str().memberGroups(), []string{"g1"}; !slices.Equal(got, want) {
		t.Fatalf("ann's groups after restore: %v, want %v", got, want)
	}
	if got := s.step(signalVia("ann", "a1", "e1", "ben", "x")); !slices.Contains(got, "e2 b1: signal offer from ann #1") {
		t.Fatalf("after restore: %q", got)
	}
	s.step(leaveVia("ben", "b1", "e2", "g1", ""))
	direct := &pb.GroupEvent{Version: 1, Group: "u:ben", User: "ann", Session: "a1", Edge: "e1", RequestId: "d",
		Kind: &pb.GroupEvent_Signal{Signal: &pb.Signal{Call: "c2", Kind: "offer", TtlMs: 30_000}}}
	if got, want := s.step(direct), []string{"e2 b1: signal offer from ann #1", "e1 a1: ack u:ben#0 id=d"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("unchecked signal: got %q, want %q", got, want)
	}
}

// Presence under shared_group: a watch of a user sharing no group is
// refused with the request's id and the user; an admitted watch ends,
// with forbidden and the user, when either side leaves the last group
// they shared, and not while another shared group remains.
func TestReachPresence(t *testing.T) {
	t.Parallel()
	for _, parts := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d partitions", parts), func(t *testing.T) {
			t.Parallel()
			s := newLogSim(t, parts, testLimits(100))
			for _, u := range []string{"ann", "ben", "cat"} {
				s.step(hello(u, "s-"+u, "e-"+u))
			}
			s.step(joinVia("ann", "s-ann", "e-ann", "g1", ""))
			s.step(joinVia("ben", "s-ben", "e-ben", "g1", ""))
			s.step(joinVia("ann", "s-ann", "e-ann", "g2", ""))
			s.step(joinVia("ben", "s-ben", "e-ben", "g2", ""))
			check := func(step string, got, want []string) {
				t.Helper()
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%s: got %q, want %q", step, got, want)
				}
			}
			check("ann watches ben", s.step(watchVia("ann", "s-ann", "e-ann", "ben", "p1")), []string{"e-ann s-ann: presence ben online"})
			check("cat watches ben", s.step(watchVia("cat", "s-cat", "e-cat", "ben", "p2")), []string{"e-cat s-cat: error forbidden/reach user ben id=p2"})
			check("cat watches nobody", s.step(watchVia("cat", "s-cat", "e-cat", "nobody", "p3")), []string{"e-cat s-cat: error forbidden/reach user nobody id=p3"})
			check("cat watches herself", s.step(watchVia("cat", "s-cat", "e-cat", "cat", "p4")), []string{"e-cat s-cat: presence cat online"})
			// The refused watcher gets nothing when ben's presence changes;
			// ann does.
			pushed := s.step(hello("ben", "s-ben2", "e-ben"))
			pushed = append(pushed, s.step(&pb.GroupEvent{Version: 1, Group: "u:ben", TsMs: 5000, Edge: "e-ben", Incarnation: "i",
				Kind: &pb.GroupEvent_Heartbeat{Heartbeat: &pb.EdgeHeartbeat{}}})...)
			check("ben's second session", pushed, []string{"e-ann s-ann: presence ben online"})
			// Leaving one of two shared groups keeps the watch.
			check("ann leaves g1", s.step(leaveVia("ann", "s-ann", "e-ann", "g1", "l1")), []string{"e-ann s-ann: ack g1#3 id=l1"})
			// Ben leaving the last one ends it, naming ben.
			check("ben leaves g2", s.step(leaveVia("ben", "s-ben", "e-ben", "g2", "l2")), []string{
				"e-ben s-ben: ack g2#3 id=l2", "e-ann s-ann: error forbidden/reach user ben id="})
			s.step(hello("ann", "s-ann", "e-ann"))
			s.step(&pb.GroupEvent{Version: 1, Group: "u:ben", User: "ben", Session: "s-ben2", Edge: "e-ben", Kind: &pb.GroupEvent_Detach{Detach: &pb.Detach{}}})
			s.step(&pb.GroupEvent{Version: 1, Group: "u:ben", TsMs: 9000, Edge: "e-ben", Incarnation: "i",
				Kind: &pb.GroupEvent_Heartbeat{Heartbeat: &pb.EdgeHeartbeat{}}})
			for _, p := range s.parts {
				if g := p.groups["u:ben"]; g != nil && len(g.str().watchers) != 0 {
					t.Fatalf("ben still has watchers: %v", g.str().watchers)
				}
			}

			// The watcher's side: cat joins g1 with ben, watches him, then
			// leaves: her stream tells ben's, which ends the watch.
			s.step(joinVia("ben", "s-ben", "e-ben", "g3", ""))
			s.step(joinVia("cat", "s-cat", "e-cat", "g3", ""))
			check("cat watches ben again", s.step(watchVia("cat", "s-cat", "e-cat", "ben", "p5")), []string{"e-cat s-cat: presence ben online"})
			s.restart()
			check("cat leaves g3", s.step(leaveVia("cat", "s-cat", "e-cat", "g3", "l3")), []string{
				"e-cat s-cat: ack g3#3 id=l3", "e-cat s-cat: error forbidden/reach user ben id="})
		})
	}
}

// sequencer.max_groups_per_user counts a user's groups and the joins
// in flight, so even joins pipelined faster than the groups answer cannot
// pass it; a join refused by its group frees its place.
// sequencer.max_members_per_group refuses the join and changes nothing
// else: no member event, no seq.
func TestJoinLimits(t *testing.T) {
	t.Parallel()
	l := testLimits(100)
	l.MaxGroupsPerUser, l.MaxMembersPerGroup = 2, 2
	s := newLogSim(t, 4, l)
	for _, u := range []string{"ann", "ben", "cat"} {
		s.step(hello(u, "s-"+u, "e-"+u))
	}
	// Three joins written before any is answered.
	s.pending = append(s.pending, joinVia("ann", "s-ann", "e-ann", "g1", "j1"), joinVia("ann", "s-ann", "e-ann", "g2", "j2"))
	got := s.step(joinVia("ann", "s-ann", "e-ann", "g3", "j3"))
	slices.Sort(got)
	if want := []string{"e-ann s-ann: ack g1#1 id=j1", "e-ann s-ann: ack g2#1 id=j2", "e-ann s-ann: error rate_limited/groups id=j3"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("three pipelined joins with a limit of two: got %q, want %q", got, want)
	}
	// Joining a group one is in does not count twice.
	if got, want := s.step(joinVia("ann", "s-ann", "e-ann", "g1", "j4")), []string{"e-ann s-ann: ack g1#0 id=j4"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("rejoin: got %q, want %q", got, want)
	}
	s.step(subscribe("g1", "ann", "s-ann", "e-ann", ""))
	s.step(joinVia("ben", "s-ben", "e-ben", "g1", ""))
	// g1 is full: cat is refused, ann sees no member event, and g1's next
	// seq is still 3.
	if got, want := s.step(joinVia("cat", "s-cat", "e-cat", "g1", "j5")), []string{"e-cat s-cat: error rate_limited/members id=j5"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("join of a full group: got %q, want %q", got, want)
	}
	if got := s.part("u:cat").groups["u:cat"].str().groups; len(got) != 0 {
		t.Fatalf("cat's refused join still holds a place: %v", got)
	}
	if got, want := s.step(leaveVia("ben", "s-ben", "e-ben", "g1", "l1")), []string{"e-ann s-ann: event g1#3 ben left", "e-ben s-ben: ack g1#3 id=l1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("leave after a refused join: got %q, want %q", got, want)
	}
	// Leaving freed a place of ann's too.
	if got, want := s.step(leaveVia("ann", "s-ann", "e-ann", "g2", "")), []string{"e-ann s-ann: ack g2#2 id="}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ann leaves g2: got %q, want %q", got, want)
	}
	if got, want := s.step(joinVia("ann", "s-ann", "e-ann", "g3", "j6")), []string{"e-ann s-ann: ack g3#1 id=j6"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("join after leaving: got %q, want %q", got, want)
	}
}

// A membership from before the index (a changelog entry without indexed)
// is indexed at the member's next subscribe, once.
func TestLegacyMembershipIndexedOnAttach(t *testing.T) {
	t.Parallel()
	s := NewState(testLimits(100))
	b, err := proto.Marshal(&pb.Membership{Version: 1, JoinedSeq: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Restore(stateKey("g", kindMember, "ann"), b) {
		t.Fatal("restore failed")
	}
	s.FinishRestore()
	out := s.Apply(subscribe("g", "ann", "s1", "e1", "r"))
	if len(out.Records) != 1 || out.Records[0].GetGroup() != "u:ann" || !out.Records[0].GetMembershipIndex().GetMember() ||
		out.Records[0].GetMembershipIndex().GetGroup() != "g" || out.Records[0].GetMembershipIndex().GetSeq() != 1 {
		t.Fatalf("first attach wrote %v, want one index record for u:ann", out.Records)
	}
	if out := s.Apply(subscribe("g", "ann", "s2", "e1", "r")); len(out.Records) != 0 {
		t.Fatalf("second attach wrote %v again", out.Records)
	}
	var saved bool
	for _, w := range s.TakeWrites() {
		var m pb.Membership
		if w.Key == stateKey("g", kindMember, "ann") && proto.Unmarshal(w.Value, &m) == nil && m.GetIndexed() {
			saved = true
		}
	}
	if !saved {
		t.Fatal("the membership was not saved as indexed")
	}
}

// Apply stays a pure function: the same records give byte-identical
// outputs and changelog writes, however maps iterate.
func TestReachDeterministic(t *testing.T) {
	t.Parallel()
	run := func() []byte {
		s := newLogSim(t, 1, testLimits(100))
		var all []byte
		for i := range 6 {
			u := fmt.Sprintf("u%d", i)
			s.step(hello(u, "s"+u, "e"+u))
			for g := range 4 {
				s.step(joinVia(u, "s"+u, "e"+u, fmt.Sprintf("g%d", (i+g)%5), ""))
			}
		}
		for i := range 6 {
			for j := range 6 {
				s.pending = append(s.pending, watchVia(fmt.Sprintf("u%d", i), fmt.Sprintf("su%d", i), fmt.Sprintf("eu%d", i), fmt.Sprintf("u%d", j), "p"))
			}
		}
		s.step(leaveVia("u0", "su0", "eu0", "g0", ""))
		keys := make([]string, 0, len(s.changelog[0]))
		for k := range s.changelog[0] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			all = append(all, k...)
			all = append(all, s.changelog[0][k]...)
		}
		for _, line := range s.step(leaveVia("u1", "su1", "eu1", "g1", "")) {
			all = append(all, line...)
		}
		return all
	}
	first := run()
	for range 5 {
		if !slices.Equal(run(), first) {
			t.Fatal("two runs over the same records differ")
		}
	}
}

// A watcher that arrives while a change is held back by the presence
// window gets the new state as its snapshot; if the user flips back
// before the window closes, the watcher is still told (coalescing
// compared with what was pushed before, and pushed nothing).
func TestPresenceWatchDuringHeldBackChange(t *testing.T) {
	t.Parallel()
	s := NewState(testLimits(100))
	at := func(e *pb.GroupEvent, ts int64) *pb.GroupEvent { e.TsMs = ts; return e }
	s.Apply(at(hello("bob", "b1", "e1"), 1000))
	s.Apply(at(&pb.GroupEvent{Version: 1, Group: "u:bob", User: "bob", Session: "b1", Edge: "e1", Kind: &pb.GroupEvent_Detach{Detach: &pb.Detach{}}}, 1100))
	watch := at(&pb.GroupEvent{Version: 1, Group: "u:bob", User: "ann", Session: "a1", Edge: "e1", RequestId: "p",
		Kind: &pb.GroupEvent_PresenceWatch{PresenceWatch: &pb.PresenceWatch{}}}, 1200)
	if got, want := render(s.Apply(watch)), []string{"e1 a1: presence bob offline", "e1 a1: ack u:bob#0 id=p"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("watch: got %q, want %q", got, want)
	}
	got := render(s.Apply(at(hello("bob", "b2", "e1"), 1300)))
	got = append(got, render(s.Apply(at(&pb.GroupEvent{Version: 1, Edge: "e1", Incarnation: "i", Kind: &pb.GroupEvent_Heartbeat{Heartbeat: &pb.EdgeHeartbeat{}}}, 2500)))...)
	if want := []string{"e1 a1: presence bob online"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("bob back online within the window: got %q, want %q", got, want)
	}
}

// Requests an edge routes through the user's own stream (forward_to) go
// on unchanged, in order: a subscribe behind a join, a detach behind the
// presence watch it ends. Nothing else is forwarded to a stream, and only
// the stream's own user forwards through it.
func TestForwardTo(t *testing.T) {
	t.Parallel()
	s := newLogSim(t, 3, testLimits(100))
	s.step(hello("ann", "a1", "e1"))
	s.step(hello("ben", "b1", "e2"))
	s.step(joinVia("ben", "b1", "e2", "g", ""))
	via := func(e *pb.GroupEvent, to string) *pb.GroupEvent {
		e.ForwardTo, e.Group = to, "u:"+e.GetUser()
		return e
	}
	// Written together, before anything is applied.
	s.pending = append(s.pending, joinVia("ann", "a1", "e1", "g", "j"), via(subscribe("g", "ann", "a1", "e1", "s"), "g"))
	got := s.step(via(send("g", "ann", "a1", "e1", "m", "c1"), "g"))
	want := []string{"e1 a1: ack g#2 id=j", "e1 a1: subscribed g id=s", "e1 a1: ack g#0 id=s", "e1 a1: event g#3", "e1 a1: ack g#3 id=m"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("pipelined behind a join: got %q, want %q", got, want)
	}
	// A watch and the detach of the watching session's close, written
	// back to back: the watcher does not outlive the session.
	s.pending = append(s.pending, watchVia("ann", "a1", "e1", "ben", "p"))
	s.step(via(&pb.GroupEvent{Version: 1, User: "ann", Session: "a1", Edge: "e1", Kind: &pb.GroupEvent_Detach{Detach: &pb.Detach{}}}, "u:ben"))
	if w := s.part("u:ben").groups["u:ben"].str().watchers; len(w) != 0 {
		t.Fatalf("watchers left after the detach: %v", w)
	}
	// A signal forwarded to a stream would skip the reach check.
	sig := via(&pb.GroupEvent{Version: 1, User: "ann", Session: "a1", Edge: "e1", RequestId: "x",
		Kind: &pb.GroupEvent_Signal{Signal: &pb.Signal{Call: "c", Kind: "offer", TtlMs: 30_000}}}, "u:ben")
	if got, want := s.step(sig), []string{"e1 a1: error bad_request id=x"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("signal forwarded to a stream: got %q, want %q", got, want)
	}
	// Ben cannot send as ann through his own stream, nor ann through his.
	forged := via(send("g", "ann", "a1", "e1", "f", "c2"), "g")
	forged.Group = "u:ben"
	if got, want := s.step(forged), []string{"e1 a1: error forbidden id=f"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("forwarding through another user's stream: got %q, want %q", got, want)
	}
}
