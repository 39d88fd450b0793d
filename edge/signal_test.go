package edge_test

import (
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/causeway/causeway/edge/client"
	"github.com/causeway/causeway/pipeline/devcluster"
)

// signals reads signal frames of call until n arrived (other frames are
// skipped), or fails after d.
func signals(t *testing.T, c *client.Client, call string, n int, d time.Duration) []client.Frame {
	t.Helper()
	var out []client.Frame
	deadline := time.After(d)
	for len(out) < n {
		select {
		case f, ok := <-c.Events():
			if !ok {
				t.Fatalf("%s: connection ended after %d/%d signals: %v", c.User(), len(out), n, c.Err())
			}
			if f.Type == "signal" && f.Call == call {
				out = append(out, f)
			}
		case <-deadline:
			t.Fatalf("%s (%s): got %d of %d signals of %s within %s", c.User(), c.Session(), len(out), n, call, d)
		}
	}
	return out
}

// quiet fails if c receives a frame of one of types within d.
func quiet(t *testing.T, c *client.Client, d time.Duration, types ...string) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case f, ok := <-c.Events():
			if !ok {
				return
			}
			for _, ty := range types {
				if f.Type == ty {
					t.Fatalf("%s: unexpected %s frame: %s", c.User(), f.Type, f.Raw)
				}
			}
		case <-deadline:
			return
		}
	}
}

// online waits until the personal stream of c's user has its session
// attached: a signal before that would find the user offline.
func online(t *testing.T, watcher *client.Client, user string, sessions uint32) {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	if err := watcher.Presence(ctx, user); err != nil {
		t.Fatalf("presence %s: %v", user, err)
	}
	for {
		f := next(t, watcher, 10*time.Second, "presence")
		if f.User == user && f.Status == "online" && f.Sessions >= sessions {
			return
		}
	}
}

// Signals across 3 edges: one sender's 1,000 ICE candidates reach all 3
// sessions of the callee (one per edge) in order, with call_seq 1, 2, 3...;
// to_session reaches only that session; a signal to nobody is an error.
func TestSignalOrderFanoutAndTargeting(t *testing.T) {
	// Frame rate limits off: alice's 1,002 signals go as fast as their
	// acks come back, and on a quick machine that is over the default
	// per-connection rate; this test is about order, the limits have
	// their own (security_test.go).
	cl := startCluster(t, 3, func(c *devcluster.Config) { c.Edge.ConnFramesPerSec, c.Edge.UserFramesPerSec = 0, 0 })
	ctx := ctxT(t, 60*time.Second)
	alice := dial(t, cl.URL(0), "alice", "call-*")
	bobs := []*client.Client{dial(t, cl.URL(0), "bob", "call-*"), dial(t, cl.URL(1), "bob"), dial(t, cl.URL(2), "bob")}
	// Carol shares the group with alice, then goes offline.
	carol := dial(t, cl.URL(1), "carol", "call-*")
	acquaint(t, "call-room", alice, bobs[0], carol)
	_ = carol.Close()
	online(t, alice, "bob", 3)

	const ice = 1000
	if err := alice.Signal(ctx, "bob", "", "call-1", "offer", map[string]string{"sdp": "v=0"}); err != nil {
		t.Fatalf("offer: %v", err)
	}
	// Pipelined like a browser trickling candidates: order is the edge's
	// and the log's, not the acks'.
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range ice {
			if err := alice.Signal(ctx, "bob", "", "call-1", "ice", map[string]int{"i": i}); err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
		}
		if err := alice.Signal(ctx, "bob", "", "call-1", "bye", nil); err != nil {
			errs <- err
		}
	}()
	for _, b := range bobs {
		got := signals(t, b, "call-1", ice+2, 30*time.Second)
		for i, f := range got {
			if f.CallSeq != uint64(i+1) || f.From != "alice" || f.FromSession != alice.Session() {
				t.Fatalf("%s: signal %d has call_seq %d from %s/%s", b.Edge(), i, f.CallSeq, f.From, f.FromSession)
			}
			want := "ice"
			switch i {
			case 0:
				want = "offer"
			case ice + 1:
				want = "bye"
			}
			if f.Kind != want {
				t.Fatalf("%s: signal %d is %s, want %s", b.Edge(), i, f.Kind, want)
			}
			if f.Kind == "ice" {
				var p struct{ I int }
				if err := json.Unmarshal(f.Payload, &p); err != nil || p.I != i-1 {
					t.Fatalf("%s: candidate %d carries %s", b.Edge(), i-1, f.Payload)
				}
			}
		}
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("sender: %v", err)
	default:
	}

	// to_session: only bob's session on edge 3.
	if err := alice.Signal(ctx, "bob", bobs[2].Session(), "call-2", "offer", nil); err != nil {
		t.Fatalf("targeted offer: %v", err)
	}
	if f := signals(t, bobs[2], "call-2", 1, 10*time.Second)[0]; f.Kind != "offer" || f.CallSeq != 1 {
		t.Fatalf("targeted: %s", f.Raw)
	}
	quiet(t, bobs[0], 500*time.Millisecond, "signal")
	quiet(t, bobs[1], 10*time.Millisecond, "signal")

	// Nobody there.
	err := alice.Signal(ctx, "carol", "", "call-3", "offer", nil)
	var e *client.Error
	if !errors.As(err, &e) || e.Code != "unavailable" || e.Reason != "offline" {
		t.Fatalf("offer to an offline user: %v, want unavailable/offline", err)
	}
	// A gone session of a user who is online is offline too.
	err = alice.Signal(ctx, "bob", "s-gone", "call-3", "offer", nil)
	if !errors.As(err, &e) || e.Reason != "offline" {
		t.Fatalf("offer to a gone session: %v, want offline", err)
	}
}

// An offer rings every device of the callee; when one answers, the others
// get answered_elsewhere; a cancel from the caller reaches every device.
func TestSignalAnsweredElsewhereAndCancel(t *testing.T) {
	cl := startCluster(t, 2, nil)
	ctx := ctxT(t, 30*time.Second)
	alice := dial(t, cl.URL(0), "alice", "call-*")
	phone := dial(t, cl.URL(0), "bob", "call-*")
	laptop := dial(t, cl.URL(1), "bob")
	acquaint(t, "call-room", alice, phone)
	online(t, alice, "bob", 2)

	if err := alice.Signal(ctx, "bob", "", "c1", "offer", nil); err != nil {
		t.Fatal(err)
	}
	signals(t, phone, "c1", 1, 10*time.Second)
	signals(t, laptop, "c1", 1, 10*time.Second)
	if err := phone.Signal(ctx, "alice", alice.Session(), "c1", "answer", map[string]string{"sdp": "a"}); err != nil {
		t.Fatalf("answer: %v", err)
	}
	if f := signals(t, alice, "c1", 1, 10*time.Second)[0]; f.Kind != "answer" || f.FromSession != phone.Session() {
		t.Fatalf("caller got %s", f.Raw)
	}
	if f := signals(t, laptop, "c1", 1, 10*time.Second)[0]; f.Kind != "answered_elsewhere" || f.FromSession != phone.Session() {
		t.Fatalf("other device got %s, want answered_elsewhere", f.Raw)
	}
	quiet(t, phone, 300*time.Millisecond, "signal") // the answering device is not told

	// A second call, cancelled before anyone answers.
	if err := alice.Signal(ctx, "bob", "", "c2", "offer", nil); err != nil {
		t.Fatal(err)
	}
	if err := alice.Signal(ctx, "bob", "", "c2", "cancel", nil); err != nil {
		t.Fatal(err)
	}
	for _, b := range []*client.Client{phone, laptop} {
		got := signals(t, b, "c2", 2, 10*time.Second)
		if got[0].Kind != "offer" || got[1].Kind != "cancel" || got[1].CallSeq != 2 {
			t.Fatalf("%s: %s then %s", b.Edge(), got[0].Raw, got[1].Raw)
		}
	}
}

// A callee that reconnects mid-call (hello with resume) gets the signals it
// missed, within the TTL, including those addressed to its old session;
// after the client drops call_seqs it already has, nothing is duplicated
// and nothing is missing. A device that connects after the TTL gets none.
func TestSignalResumeAndTTL(t *testing.T) {
	cl := startCluster(t, 2, func(c *devcluster.Config) { c.Edge.SignalTTL = 3 * time.Second })
	ctx := ctxT(t, 30*time.Second)
	alice := dial(t, cl.URL(0), "alice", "call-*")
	bob := dial(t, cl.URL(1), "bob", "call-*")
	acquaint(t, "call-room", alice, bob)
	online(t, alice, "bob", 1)
	old := bob.Session()

	seen := map[uint64]bool{}
	send := func(i int) {
		if err := alice.Signal(ctx, "bob", old, "c", "ice", map[string]int{"i": i}); err != nil {
			t.Fatalf("ice %d: %v", i, err)
		}
	}
	for i := range 5 {
		send(i)
	}
	for _, f := range signals(t, bob, "c", 5, 10*time.Second) {
		seen[f.CallSeq] = true
	}
	_ = bob.Close()
	// Sent to the old session while bob is away.
	for i := 5; i < 10; i++ {
		send(i)
	}
	opts := &client.Options{Resume: old}
	bob2, err := client.Dial(ctx, cl.URL(0), token(t, "bob"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer bob2.Close()
	// Everything still buffered is replayed (10 signals); the client drops
	// the 5 it had.
	for _, f := range signals(t, bob2, "c", 10, 10*time.Second) {
		seen[f.CallSeq] = true
	}
	// Later signals to the old session ID reach the new session.
	send(10)
	if f := signals(t, bob2, "c", 1, 10*time.Second)[0]; f.CallSeq != 11 {
		t.Fatalf("redirected signal has call_seq %d, want 11", f.CallSeq)
	}
	for i := uint64(1); i <= 10; i++ {
		if !seen[i] {
			t.Fatalf("call_seq %d never reached bob", i)
		}
	}

	// An offer rings a device that comes online within the TTL, but not
	// one that comes online after it.
	if err := alice.Signal(ctx, "bob", "", "ring", "offer", nil); err != nil {
		t.Fatal(err)
	}
	early := dial(t, cl.URL(1), "bob")
	if f := signals(t, early, "ring", 1, 10*time.Second)[0]; f.Kind != "offer" {
		t.Fatalf("early device got %s", f.Raw)
	}
	time.Sleep(3500 * time.Millisecond)
	late := dial(t, cl.URL(1), "bob")
	quiet(t, late, time.Second, "signal")
}

// Presence: a watcher sees a user go online and offline; 20 connects and
// disconnects in a second cost it a few updates, ending in the true state;
// a user who did not ask gets no presence at all.
func TestPresenceCoalescedAndPrivate(t *testing.T) {
	cl := startCluster(t, 2, nil)
	ctx := ctxT(t, 30*time.Second)
	alice := dial(t, cl.URL(0), "alice", "call-*")
	bystander := dial(t, cl.URL(1), "eve")
	// Bob shares a group with alice but is offline when she asks: a probe
	// in the group sees him go offline first.
	probe := dial(t, cl.URL(1), "probe", "call-*")
	first := dial(t, cl.URL(1), "bob", "call-*")
	acquaint(t, "call-room", alice, first, probe)
	_ = first.Close()
	if err := probe.Presence(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	for f := next(t, probe, 10*time.Second, "presence"); f.Status != "offline"; f = next(t, probe, 10*time.Second, "presence") {
	}
	if err := alice.Presence(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if f := next(t, alice, 10*time.Second, "presence"); f.User != "bob" || f.Status != "offline" {
		t.Fatalf("initial presence: %s", f.Raw)
	}
	bob := dial(t, cl.URL(1), "bob")
	if f := next(t, alice, 10*time.Second, "presence"); f.Status != "online" || f.Sessions != 1 || f.TS == 0 {
		t.Fatalf("bob online: %s", f.Raw)
	}
	start := time.Now()
	for range 20 {
		c := dial(t, cl.URL(0), "bob")
		_ = c.Close()
	}
	flapping := time.Since(start)
	_ = bob.Close()
	// Count updates until the final state (offline) is reported and
	// things stay quiet.
	updates := 0
	var last client.Frame
	deadline := time.After(15 * time.Second)
	for last.Status != "offline" {
		select {
		case f := <-alice.Events():
			if f.Type == "presence" {
				updates++
				last = f
			}
		case <-deadline:
			t.Fatalf("bob never reported offline after %d updates", updates)
		}
	}
	// One per second of flapping at most, plus the final one and slack.
	if max := int(flapping/time.Second) + 4; updates > max {
		t.Fatalf("%d presence updates for 20 flaps in %s, want at most %d", updates, flapping, max)
	}
	t.Logf("20 flaps in %s -> %d presence updates", flapping, updates)
	quiet(t, bystander, 200*time.Millisecond, "presence")
}

// Group presence: a session that subscribed with presence sees the
// members of the group come online and go offline; typing is coalesced
// and expires.
func TestGroupPresenceAndTyping(t *testing.T) {
	cl := startCluster(t, 2, func(c *devcluster.Config) { c.Sequencer.Limits.TypingExpiry = time.Second })
	ctx := ctxT(t, 30*time.Second)
	alice := dial(t, cl.URL(0), "alice", "room-*")
	if err := alice.Join(ctx, "room-p"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SubscribePresence(ctx, "room-p", nil); err != nil {
		t.Fatal(err)
	}
	// The snapshot: alice herself, online.
	if f := next(t, alice, 10*time.Second, "presence"); f.Group != "room-p" || f.User != "alice" || f.Status != "online" {
		t.Fatalf("snapshot: %s", f.Raw)
	}
	bob := dial(t, cl.URL(1), "bob", "room-*")
	joinSub(t, bob, "room-p")
	for {
		f := next(t, alice, 10*time.Second, "presence")
		if f.User == "bob" && f.Status == "online" {
			break
		}
	}
	// Typing: ten frames in quick succession give one or two pushes.
	for range 10 {
		if err := bob.Typing(ctx, "room-p"); err != nil {
			t.Fatal(err)
		}
	}
	f := next(t, alice, 5*time.Second, "typing")
	if f.Group != "room-p" || len(f.Users) != 1 || f.Users[0] != "bob" {
		t.Fatalf("typing: %s", f.Raw)
	}
	pushes := 1
	for {
		f := next(t, alice, 5*time.Second, "typing")
		pushes++
		if len(f.Users) == 0 {
			break // expired without another frame
		}
	}
	if pushes > 3 {
		t.Fatalf("%d typing pushes for one burst, want at most 3", pushes)
	}
	// Non-members cannot type.
	eve := dial(t, cl.URL(0), "eve", "room-*")
	if err := eve.Typing(ctx, "room-p"); !isCode(err, "not_member") {
		t.Fatalf("typing by a non-member: %v", err)
	}
	// Bob leaves the group's stream: offline in the group.
	if err := bob.Unsubscribe(ctx, "room-p"); err != nil {
		t.Fatal(err)
	}
	for {
		f := next(t, alice, 10*time.Second, "presence")
		if f.User == "bob" && f.Status == "offline" {
			break
		}
	}
}

// Signals from many callers in parallel each keep their own order and
// their own call_seq.
func TestSignalManyCallers(t *testing.T) {
	cl := startCluster(t, 2, nil)
	ctx := ctxT(t, 30*time.Second)
	bob := dial(t, cl.URL(1), "bob", "call-*")
	callers := make([]*client.Client, 5)
	for i := range callers {
		callers[i] = dial(t, cl.URL(i%2), "caller-"+strconv.Itoa(i), "call-*")
	}
	acquaint(t, "call-room", append(callers, bob)...)
	online(t, callers[0], "bob", 1)
	var wg sync.WaitGroup
	for i, c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if err := c.Signal(ctx, "bob", "", "call-"+strconv.Itoa(i), "ice", nil); err != nil {
					t.Errorf("caller %d: %v", i, err)
					return
				}
			}
		}()
	}
	got := map[string]uint64{}
	deadline := time.After(20 * time.Second)
	for n := 0; n < 250; {
		select {
		case f := <-bob.Events():
			if f.Type != "signal" {
				continue
			}
			if f.CallSeq != got[f.Call]+1 {
				t.Fatalf("%s: call_seq %d after %d", f.Call, f.CallSeq, got[f.Call])
			}
			got[f.Call] = f.CallSeq
			n++
		case <-deadline:
			t.Fatalf("got %v", got)
		}
	}
	wg.Wait()
}

func isCode(err error, code string) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Code == code
}
