package sequencer

import (
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	pb "github.com/causeway/causeway/schemas/causewaypb"
	"google.golang.org/protobuf/proto"
)

func ev(kind string, group, user, session, edge, req string) *pb.GroupEvent {
	e := &pb.GroupEvent{Version: 1, Group: group, User: user, Session: session, Edge: edge, RequestId: req, TsMs: 1000}
	switch kind {
	case "join":
		e.Kind = &pb.GroupEvent_Join{Join: &pb.Join{}}
	case "leave":
		e.Kind = &pb.GroupEvent_Leave{Leave: &pb.Leave{}}
	case "attach":
		e.Kind = &pb.GroupEvent_Attach{Attach: &pb.Attach{}}
	case "detach":
		e.Kind = &pb.GroupEvent_Detach{Detach: &pb.Detach{}}
	case "heartbeat":
		e.Kind = &pb.GroupEvent_Heartbeat{Heartbeat: &pb.EdgeHeartbeat{IntervalMs: 3000}}
	}
	return e
}

func send(group, user, session, edge, req, cmid string) *pb.GroupEvent {
	e := ev("", group, user, session, edge, req)
	e.Kind = &pb.GroupEvent_Send{Send: &pb.Send{ClientMsgId: cmid, Body: []byte(`"hi"`)}}
	return e
}

// summary renders an output compactly: per edge, the event and recipients,
// then the replies.
type delivered struct {
	Edge     string
	Seq      uint64
	Kind     string
	Sessions []string
	Replies  []string
}

func summarize(o Output) []delivered {
	var out []delivered
	for _, d := range o.Deliveries {
		x := delivered{Edge: d.GetEdge(), Sessions: d.GetSessions()}
		if e := d.GetEvent(); e != nil {
			x.Seq = e.GetSeq()
			switch k := e.GetKind().(type) {
			case *pb.Event_Msg:
				x.Kind = "msg:" + k.Msg.GetClientMsgId()
			case *pb.Event_Member:
				x.Kind = "member:" + k.Member.GetUser() + ":" + k.Member.GetChange().String()
			}
		}
		for _, r := range d.GetReplies() {
			s := r.GetSession() + "/" + r.GetRequestId() + "="
			switch k := r.GetKind().(type) {
			case *pb.Reply_Ack:
				s += "ack:" + itoa(k.Ack.GetSeq())
			case *pb.Reply_Error:
				s += "error:" + k.Error.GetCode()
			case *pb.Reply_Event:
				s += "event:" + itoa(k.Event.GetSeq())
			case *pb.Reply_Subscribed:
				s += "subscribed:" + itoa(k.Subscribed.GetSeq())
				if !k.Subscribed.GetRecovered() {
					s += ":lost"
				}
			}
			x.Replies = append(x.Replies, s)
		}
		out = append(out, x)
	}
	return out
}

func itoa(n uint64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// none marks a step that must produce nothing; a nil want is a setup step
// whose output is not checked.
var none = []delivered{}

func TestApply(t *testing.T) {
	t.Parallel()
	type step struct {
		in   *pb.GroupEvent
		want []delivered
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"join sequences a member event and acks", []step{
			{ev("join", "g", "ann", "s1", "e1", "r1"), []delivered{{Edge: "e1", Replies: []string{"s1/r1=ack:1"}}}},
			{ev("attach", "g", "ann", "s1", "e1", "r2"), []delivered{{Edge: "e1", Replies: []string{"s1/r2=subscribed:1", "s1/r2=ack:0"}}}},
			{ev("join", "g", "ben", "s2", "e2", "r3"), []delivered{
				{Edge: "e1", Seq: 2, Kind: "member:ben:JOINED", Sessions: []string{"s1"}},
				{Edge: "e2", Replies: []string{"s2/r3=ack:2"}},
			}},
		}},
		{"joining twice is a no-op", []step{
			{ev("join", "g", "ann", "s1", "e1", "r1"), []delivered{{Edge: "e1", Replies: []string{"s1/r1=ack:1"}}}},
			{ev("join", "g", "ann", "s1", "e1", "r2"), []delivered{{Edge: "e1", Replies: []string{"s1/r2=ack:0"}}}},
			{send("g", "ann", "s1", "e1", "r3", "m1"), []delivered{{Edge: "e1", Replies: []string{"s1/r3=ack:2"}}}},
		}},
		{"non-members are refused", []step{
			{send("g", "eve", "s9", "e1", "r1", "m1"), []delivered{{Edge: "e1", Replies: []string{"s9/r1=error:not_member"}}}},
			{ev("attach", "g", "eve", "s9", "e1", "r2"), []delivered{{Edge: "e1", Replies: []string{"s9/r2=error:not_member"}}}},
			{ev("leave", "g", "eve", "s9", "e1", "r3"), []delivered{{Edge: "e1", Replies: []string{"s9/r3=error:not_member"}}}},
			{ev("join", "g", "ann", "s1", "e1", "r4"), []delivered{{Edge: "e1", Replies: []string{"s1/r4=ack:1"}}}},
			{send("g", "eve", "s9", "e1", "r5", "m1"), []delivered{{Edge: "e1", Replies: []string{"s9/r5=error:not_member"}}}},
		}},
		{"send fans out once per edge and dedups retries", []step{
			{ev("join", "g", "ann", "s1", "e1", ""), nil},
			{ev("join", "g", "ben", "s2", "e2", ""), nil},
			{ev("attach", "g", "ann", "s1", "e1", ""), []delivered{{Edge: "e1", Replies: []string{"s1/=subscribed:2", "s1/=ack:0"}}}},
			{ev("attach", "g", "ann", "s3", "e1", ""), []delivered{{Edge: "e1", Replies: []string{"s3/=subscribed:2", "s3/=ack:0"}}}},
			{ev("attach", "g", "ben", "s2", "e2", ""), []delivered{{Edge: "e2", Replies: []string{"s2/=subscribed:2", "s2/=ack:0"}}}},
			{send("g", "ben", "s2", "e2", "r1", "m1"), []delivered{
				{Edge: "e1", Seq: 3, Kind: "msg:m1", Sessions: []string{"s1", "s3"}},
				{Edge: "e2", Seq: 3, Kind: "msg:m1", Sessions: []string{"s2"}, Replies: []string{"s2/r1=ack:3"}},
			}},
			{send("g", "ben", "s2", "e2", "r2", "m1"), []delivered{{Edge: "e2", Replies: []string{"s2/r2=ack:3"}}}},
			// The same client_msg_id from another sender is a new message.
			{send("g", "ann", "s1", "e1", "r3", "m1"), []delivered{
				{Edge: "e1", Seq: 4, Kind: "msg:m1", Sessions: []string{"s1", "s3"}, Replies: []string{"s1/r3=ack:4"}},
				{Edge: "e2", Seq: 4, Kind: "msg:m1", Sessions: []string{"s2"}},
			}},
		}},
		{"leave is delivered to the leaver, then detaches all its sessions", []step{
			{ev("join", "g", "ann", "s1", "e1", ""), nil},
			{ev("join", "g", "ben", "s2", "e2", ""), nil},
			{ev("attach", "g", "ann", "s1", "e1", ""), []delivered{{Edge: "e1", Replies: []string{"s1/=subscribed:2", "s1/=ack:0"}}}},
			{ev("attach", "g", "ben", "s2", "e2", ""), []delivered{{Edge: "e2", Replies: []string{"s2/=subscribed:2", "s2/=ack:0"}}}},
			{ev("leave", "g", "ben", "s2", "e2", "r1"), []delivered{
				{Edge: "e1", Seq: 3, Kind: "member:ben:LEFT", Sessions: []string{"s1"}},
				{Edge: "e2", Seq: 3, Kind: "member:ben:LEFT", Sessions: []string{"s2"}, Replies: []string{"s2/r1=ack:3"}},
			}},
			{send("g", "ann", "s1", "e1", "", "m1"), []delivered{{Edge: "e1", Seq: 4, Kind: "msg:m1", Sessions: []string{"s1"}, Replies: []string{"s1/=ack:4"}}}},
		}},
		{"detach stops deliveries; unsubscribe is acked", []step{
			{ev("join", "g", "ann", "s1", "e1", ""), nil},
			{ev("attach", "g", "ann", "s1", "e1", ""), []delivered{{Edge: "e1", Replies: []string{"s1/=subscribed:1", "s1/=ack:0"}}}},
			{ev("detach", "g", "ann", "s1", "e1", "r1"), []delivered{{Edge: "e1", Replies: []string{"s1/r1=ack:0"}}}},
			{ev("detach", "g", "ann", "s1", "e1", ""), none},
			{send("g", "ann", "s1", "e1", "", "m1"), []delivered{{Edge: "e1", Replies: []string{"s1/=ack:2"}}}},
		}},
		{"since replays history through the ordered path", []step{
			{ev("join", "g", "ann", "s1", "e1", ""), nil},
			{send("g", "ann", "s1", "e1", "", "m1"), nil},
			{func() *pb.GroupEvent {
				e := ev("", "g", "ann", "s2", "e1", "r")
				e.Kind = &pb.GroupEvent_Attach{Attach: &pb.Attach{Since: 0, HasSince: true}}
				return e
			}(), []delivered{{Edge: "e1", Replies: []string{"s2/r=subscribed:2", "s2/r=event:1", "s2/r=event:2", "s2/r=ack:0"}}}},
			{func() *pb.GroupEvent {
				e := ev("", "g", "ann", "s3", "e1", "r")
				e.Kind = &pb.GroupEvent_Attach{Attach: &pb.Attach{Since: 2, HasSince: true}}
				return e
			}(), []delivered{{Edge: "e1", Replies: []string{"s3/r=subscribed:2", "s3/r=ack:0"}}}},
		}},
		{"heartbeats, unknown kinds and groupless records produce nothing", []step{
			{ev("heartbeat", "", "", "", "e1", ""), none},
			{ev("", "g", "ann", "s1", "e1", "r"), none},
			{ev("join", "", "ann", "s1", "e1", "r"), none},
		}},
		{"malformed requests are refused", []step{
			{ev("join", "g", "", "s1", "e1", "r1"), []delivered{{Edge: "e1", Replies: []string{"s1/r1=error:bad_request"}}}},
			{ev("join", "g", "ann", "s1", "e1", "r2"), []delivered{{Edge: "e1", Replies: []string{"s1/r2=ack:1"}}}},
			{send("g", "ann", "s1", "e1", "r3", ""), []delivered{{Edge: "e1", Replies: []string{"s1/r3=error:bad_request"}}}},
			{func() *pb.GroupEvent {
				e := send("g", "ann", "s1", "e1", "r4", "m1")
				e.GetSend().Body = []byte("1}\n{\"type\":\"msg\"")
				return e
			}(), []delivered{{Edge: "e1", Replies: []string{"s1/r4=error:bad_request"}}}},
			{func() *pb.GroupEvent {
				e := send("g", "ann", "s1", "e1", "r5", "m2")
				e.GetSend().Body = []byte("[1,\n2]")
				return e
			}(), []delivered{{Edge: "e1", Replies: []string{"s1/r5=error:bad_request"}}}},
			{send("g", "ann", "s1", "e1", "r6", "m3"), []delivered{{Edge: "e1", Replies: []string{"s1/r6=ack:2"}}}},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := NewState(testLimits(100))
			for i, st := range tc.steps {
				got := summarize(s.Apply(st.in))
				if st.want == nil {
					continue // a setup step; its output is not checked
				}
				if !reflect.DeepEqual(got, st.want) && !(len(got) == 0 && len(st.want) == 0) {
					t.Fatalf("step %d: got\n%+v\nwant\n%+v", i, got, st.want)
				}
			}
		})
	}
}

// The changelog written by Apply restores an identical state: a sequencer
// that takes over a partition continues the same seqs, members,
// attachments and dedup.
func TestRestoreFromChangelog(t *testing.T) {
	t.Parallel()
	a := NewState(testLimits(3))
	changelog := map[string][]byte{}
	apply := func(e *pb.GroupEvent) Output {
		o := a.Apply(e)
		for _, w := range a.TakeWrites() {
			changelog[w.Key] = w.Value
		}
		return o
	}
	apply(ev("join", "g", "ann", "s1", "e1", ""))
	apply(ev("join", "g", "ben", "s2", "e2", ""))
	apply(ev("attach", "g", "ann", "s1", "e1", ""))
	apply(ev("attach", "g", "ben", "s2", "e2", ""))
	for _, id := range []string{"m1", "m2", "m3", "m4", "m5"} {
		apply(send("g", "ann", "s1", "e1", "", id))
	}
	apply(ev("join", "h", "cat", "s3", "e1", ""))
	apply(ev("leave", "h", "cat", "s3", "e1", ""))

	b := NewState(testLimits(3))
	keys := make([]string, 0, len(changelog))
	for k := range changelog {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := changelog[k]
		if v == nil {
			// A compacted log may or may not still hold tombstones.
			b.Restore(k, nil)
			continue
		}
		if !b.Restore(k, v) {
			t.Fatalf("restore %q failed", k)
		}
	}
	b.FinishRestore()

	// Both states must now behave identically.
	steps := []*pb.GroupEvent{
		send("g", "ann", "s1", "e1", "r1", "m5"), // still in the dedup window
		send("g", "ann", "s1", "e1", "r2", "m1"), // evicted: sequenced anew
		send("g", "ben", "s2", "e2", "r3", "n1"),
		ev("join", "h", "cat", "s3", "e1", "r4"),
		send("g", "cat", "s3", "e1", "r5", "x"),
		attachSince("g", "ann", "s7", "e1", "r6", 2, 1000), // history survives the restore
	}
	for i, e := range steps {
		ga, gb := summarize(a.Apply(e)), summarize(b.Apply(e))
		if !reflect.DeepEqual(ga, gb) {
			t.Fatalf("step %d: original\n%+v\nrestored\n%+v", i, ga, gb)
		}
	}
	if got := summarize(a.Apply(send("g", "ann", "s1", "e1", "r9", "m5"))); got[0].Replies[0] != "s1/r9=ack:7" {
		t.Fatalf("dedup after restore: %+v", got)
	}
}

func TestDedupWindowBounded(t *testing.T) {
	t.Parallel()
	s := NewState(testLimits(10))
	s.Apply(ev("join", "g", "ann", "s1", "e1", ""))
	for i := 0; i < 1000; i++ {
		s.Apply(send("g", "ann", "s1", "e1", "", "m"+itoa(uint64(i))))
	}
	g := s.groups["g"]
	if len(g.dedup) != 10 || len(g.dedupOrder) != 10 {
		t.Fatalf("dedup holds %d/%d entries, want 10", len(g.dedup), len(g.dedupOrder))
	}
	if g.seq != 1001 {
		t.Fatalf("seq %d, want 1001", g.seq)
	}
	w := s.TakeWrites()
	tomb := 0
	for _, x := range w {
		if _, kind, _, _ := splitKey(x.Key); kind == kindDedup && x.Value == nil {
			tomb++
		}
	}
	if tomb != 990 {
		t.Fatalf("%d tombstones for evicted dedup keys, want 990", tomb)
	}
}

func TestSplitKey(t *testing.T) {
	t.Parallel()
	for _, k := range []string{"g\x00g", "g\x00m\x00ann", "g\x00a\x00s1", "g\x00d\x00ann\x00m1"} {
		if _, _, _, ok := splitKey(k); !ok {
			t.Errorf("splitKey(%q) not ok", k)
		}
	}
	for _, k := range []string{"", "g", "g\x00z\x00x", "g\x00m", "g\x00g\x00extra"} {
		if _, _, _, ok := splitKey(k); ok {
			t.Errorf("splitKey(%q) ok, want unknown", k)
		}
	}
	s := NewState(testLimits(1))
	if s.Restore("g\x00m\x00ann", []byte{0xff, 0xff}) {
		t.Error("garbage value restored")
	}
	if s.Restore("future\x00q\x00x", []byte{1}) {
		t.Error("unknown key kind restored")
	}
}

func testLimits(dedup int) Limits {
	l := DefaultLimits()
	l.DedupWindow = dedup
	return l
}

func attachSince(group, user, session, edge, req string, since uint64, ts int64) *pb.GroupEvent {
	e := ev("", group, user, session, edge, req)
	e.TsMs = ts
	e.Kind = &pb.GroupEvent_Attach{Attach: &pb.Attach{Since: since, HasSince: true}}
	return e
}

func replies(o Output) []string {
	var out []string
	for _, d := range summarize(o) {
		out = append(out, d.Replies...)
	}
	return out
}

// History is bounded by count, bytes and age; a since that reaches before
// the window answers recovered false and replays what is left.
func TestHistoryWindow(t *testing.T) {
	t.Parallel()
	t.Run("count", func(t *testing.T) {
		t.Parallel()
		l := testLimits(100)
		l.HistoryCount = 3
		s := NewState(l)
		s.Apply(ev("join", "g", "ann", "s1", "e1", ""))
		for i := 0; i < 5; i++ {
			s.Apply(send("g", "ann", "s1", "e1", "", "m"+itoa(uint64(i))))
		}
		got := replies(s.Apply(attachSince("g", "ann", "s2", "e1", "r", 1, 1000)))
		want := []string{"s2/r=subscribed:6:lost", "s2/r=event:4", "s2/r=event:5", "s2/r=event:6", "s2/r=ack:0"}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("since 1: %v, want %v", got, want)
		}
		got = replies(s.Apply(attachSince("g", "ann", "s2", "e1", "r", 4, 1000)))
		want = []string{"s2/r=subscribed:6", "s2/r=event:5", "s2/r=event:6", "s2/r=ack:0"}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("since 4: %v, want %v", got, want)
		}
		got = replies(s.Apply(attachSince("g", "ann", "s2", "e1", "r", 9, 1000)))
		if want := []string{"s2/r=subscribed:6:lost", "s2/r=ack:0"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("since beyond the latest seq: %v, want %v", got, want)
		}
	})
	t.Run("age", func(t *testing.T) {
		t.Parallel()
		l := testLimits(100)
		l.HistoryAge = time.Second
		s := NewState(l)
		s.Apply(ev("join", "g", "ann", "s1", "e1", "")) // ts 1000
		got := replies(s.Apply(attachSince("g", "ann", "s2", "e1", "r", 0, 1900)))
		if want := []string{"s2/r=subscribed:1", "s2/r=event:1", "s2/r=ack:0"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("within the age: %v, want %v", got, want)
		}
		got = replies(s.Apply(attachSince("g", "ann", "s2", "e1", "r", 0, 2500)))
		if want := []string{"s2/r=subscribed:1:lost", "s2/r=ack:0"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("past the age: %v, want %v", got, want)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		t.Parallel()
		l := testLimits(100)
		l.HistoryBytes = 2000
		s := NewState(l)
		s.Apply(ev("join", "g", "ann", "s1", "e1", ""))
		for i := 0; i < 50; i++ {
			e := send("g", "ann", "s1", "e1", "", "m"+itoa(uint64(i)))
			e.GetSend().Body = []byte(`"` + strings.Repeat("x", 200) + `"`)
			s.Apply(e)
		}
		g := s.groups["g"]
		if g.historyBytes > 2000 || len(g.history) == 0 || len(g.history) > 10 {
			t.Fatalf("history holds %d events, %d bytes; want at most 2000 bytes", len(g.history), g.historyBytes)
		}
		if last := g.history[len(g.history)-1].GetSeq(); last != 51 {
			t.Fatalf("newest history event %d, want 51", last)
		}
	})
}

// A large replay is split over several delivery records, in order.
func TestReplaySplitsLargeDeliveries(t *testing.T) {
	t.Parallel()
	s := NewState(testLimits(10))
	s.Apply(ev("join", "g", "ann", "s1", "e1", ""))
	body := []byte(`"` + strings.Repeat("y", 900) + `"`)
	for i := 0; i < 999; i++ {
		e := send("g", "ann", "s1", "e1", "", "m"+itoa(uint64(i)))
		e.GetSend().Body = body
		s.Apply(e)
	}
	o := s.Apply(attachSince("g", "ann", "s2", "e1", "r", 0, 1000))
	if len(o.Deliveries) < 3 {
		t.Fatalf("replay of ~1 MB in %d delivery records, want it split", len(o.Deliveries))
	}
	var seqs []uint64
	for _, d := range o.Deliveries {
		if proto.Size(d) > maxDeliveryBytes+64<<10 {
			t.Fatalf("delivery of %d bytes", proto.Size(d))
		}
		for _, r := range d.GetReplies() {
			if e := r.GetEvent(); e != nil {
				seqs = append(seqs, e.GetSeq())
			}
		}
	}
	g := s.groups["g"]
	first := g.history[0].GetSeq()
	for i, q := range seqs {
		if q != first+uint64(i) {
			t.Fatalf("replayed seq %d at %d, want %d", q, i, first+uint64(i))
		}
	}
	if seqs[len(seqs)-1] != 1000 {
		t.Fatalf("replay ends at %d, want 1000", seqs[len(seqs)-1])
	}
}

func heartbeat(edge, inc string, ts int64) *pb.GroupEvent {
	e := ev("heartbeat", "", "", "", edge, "")
	e.Incarnation, e.TsMs = inc, ts
	return e
}

// An edge whose heartbeats stop loses its attachments after the timeout; a
// restarted edge (new incarnation) loses its predecessor's at once.
func TestEdgeExpiry(t *testing.T) {
	t.Parallel()
	s := NewState(testLimits(10))
	attach := func(user, sess, edge, inc string) {
		e := ev("attach", "g", user, sess, edge, "")
		e.Incarnation = inc
		s.Apply(e)
	}
	s.Apply(ev("join", "g", "ann", "s1", "e1", ""))
	s.Apply(ev("join", "g", "ben", "s2", "e2", ""))
	attach("ann", "s1", "e1", "A")
	attach("ben", "s2", "e2", "X")
	edgesOf := func() []string {
		o := s.Apply(send("g", "ann", "", "", "", "probe"+itoa(uint64(len(s.dirty)))))
		var es []string
		for _, d := range o.Deliveries {
			if len(d.GetSessions()) > 0 {
				es = append(es, d.GetEdge()+":"+strings.Join(d.GetSessions(), ","))
			}
		}
		sort.Strings(es)
		return es
	}
	s.Apply(heartbeat("e1", "A", 10_000))
	s.Apply(heartbeat("e2", "X", 10_000))
	if got := edgesOf(); !reflect.DeepEqual(got, []string{"e1:s1", "e2:s2"}) {
		t.Fatalf("before: %v", got)
	}
	// Both go silent (a broker outage), then both come back: nobody is
	// expired for the outage.
	s.Apply(heartbeat("e1", "A", 60_000))
	s.Apply(heartbeat("e2", "X", 61_000))
	if got := edgesOf(); !reflect.DeepEqual(got, []string{"e1:s1", "e2:s2"}) {
		t.Fatalf("after an outage: %v", got)
	}
	// e1 keeps beating; e2 stops. Once e1 has beaten for 15 s without e2,
	// e2 is expired.
	s.Apply(heartbeat("e1", "A", 62_000))
	s.Apply(heartbeat("e1", "A", 70_000))
	if got := edgesOf(); !reflect.DeepEqual(got, []string{"e1:s1", "e2:s2"}) {
		t.Fatalf("within the timeout: %v", got)
	}
	out := s.Apply(heartbeat("e1", "A", 77_001))
	if got := edgesOf(); !reflect.DeepEqual(got, []string{"e1:s1"}) {
		t.Fatalf("after e2's timeout: %v", got)
	}
	// e2 may only have lost Kafka: it is told which of its sessions were
	// detached, so they resubscribe instead of waiting forever.
	if len(out.Deliveries) != 1 || out.Deliveries[0].GetEdge() != "e2" || out.Deliveries[0].GetGroup() != "g" ||
		len(out.Deliveries[0].GetReplies()) != 1 || out.Deliveries[0].GetReplies()[0].GetSession() != "s2" ||
		out.Deliveries[0].GetReplies()[0].GetDetached().GetGroup() != "g" {
		t.Fatalf("expiry notice: %v", out.Deliveries)
	}
	// e1 restarts: a new session attaches, then the new run heartbeats.
	// The old run's sessions died with it: no notice.
	attach("ann", "s9", "e1", "B")
	if out := s.Apply(heartbeat("e1", "B", 78_000)); len(out.Deliveries) != 0 {
		t.Fatalf("restart produced notices: %v", out.Deliveries)
	}
	if got := edgesOf(); !reflect.DeepEqual(got, []string{"e1:s9"}) {
		t.Fatalf("after e1 restarted: %v", got)
	}
}
