package edge_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
	"github.com/causeway/causeway/pipeline/devcluster"
	"github.com/golang-jwt/jwt/v5"
)

// wantErr fails unless err is the documented error code (and reason).
func wantErr(t *testing.T, what string, err error, code, reason string) {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) || e.Code != code || e.Reason != reason {
		t.Fatalf("%s: %v, want %s (reason %q)", what, err, code, reason)
	}
}

// The default reach policy, shared_group, through real edges and a real
// broker: a user signals and watches only users sharing a group with
// them; the refusal is forbidden (reason reach) whether the target is
// online, offline or unknown, is counted, and leaves everyone else's
// traffic alone; a watch ends when the last shared group goes.
func TestReachSharedGroup(t *testing.T) {
	cl := startCluster(t, 2, nil)
	ctx := ctxT(t, 60*time.Second)
	addr := cl.Edges[0].Addr()
	alice := dial(t, cl.URL(0), "alice", "room-*")
	bob := dial(t, cl.URL(1), "bob", "room-*")
	carol := dial(t, cl.URL(0), "carol", "room-*", "lobby")
	joinSub(t, alice, "room-a")
	joinSub(t, bob, "room-a")
	joinSub(t, carol, "room-c")
	if err := carol.Join(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	online(t, alice, "bob", 1)
	forbiddenBefore := scrapeWhere(t, addr, "causeway_edge_errors_total", `code="forbidden"`)

	// Members of one group signal each other.
	if err := alice.Signal(ctx, "bob", "", "call-1", "offer", map[string]string{"sdp": "x"}); err != nil {
		t.Fatalf("offer within a shared group: %v", err)
	}
	if f := signals(t, bob, "call-1", 1, 10*time.Second)[0]; f.From != "alice" || f.Kind != "offer" {
		t.Fatalf("bob got %s", f.Raw)
	}
	// Carol shares nothing with bob: the same refusal for an online user,
	// a user who never connected, and her own ring does not reach bob.
	wantErr(t, "carol rings bob", carol.Signal(ctx, "bob", "", "probe-1", "offer", nil), "forbidden", "reach")
	wantErr(t, "carol rings a stranger", carol.Signal(ctx, "nobody-ever", "", "probe-2", "offer", nil), "forbidden", "reach")
	wantErr(t, "carol rings bob's session", carol.Signal(ctx, "bob", bob.Session(), "probe-3", "ice", nil), "forbidden", "reach")
	// Her presence requests are acked (the frame is well-formed), then
	// each user is refused by name, echoing the request's id.
	if err := carol.Presence(ctx, "bob", "nobody-ever"); err != nil {
		t.Fatalf("presence request: %v", err)
	}
	refused := map[string]bool{}
	for len(refused) < 2 {
		f := next(t, carol, 10*time.Second, "error", "presence")
		if f.Type == "presence" {
			t.Fatalf("carol saw presence she may not: %s", f.Raw)
		}
		if f.Code != "forbidden" || f.Reason != "reach" || f.ID == "" {
			t.Fatalf("presence refusal: %s", f.Raw)
		}
		refused[f.User] = true
	}
	if !refused["bob"] || !refused["nobody-ever"] {
		t.Fatalf("refusals named %v, want bob and nobody-ever", refused)
	}
	// Nothing of carol's probing reached bob; alice and bob go on.
	quiet(t, bob, 300*time.Millisecond, "signal")
	if _, err := alice.Send(ctx, "room-a", "m1", body("hi")); err != nil {
		t.Fatal(err)
	}
	collectMsgs(t, bob, "room-a", 1, 10*time.Second)
	if got := scrapeWhere(t, addr, "causeway_edge_errors_total", `code="forbidden"`) - forbiddenBefore; got < 5 {
		t.Fatalf("causeway_edge_errors_total{code=forbidden} grew by %v, want the 5 refusals counted", got)
	}

	// Carol joins alice's group: she may ring alice now, not bob... who
	// is in it too.
	if err := carol.Join(ctx, "room-a"); err != nil {
		t.Fatal(err)
	}
	if err := carol.Signal(ctx, "bob", "", "call-2", "offer", nil); err != nil {
		t.Fatalf("offer after joining a shared group: %v", err)
	}
	signals(t, bob, "call-2", 1, 10*time.Second)

	// Bob leaves the only group he shares with alice: her watch of him
	// ends with forbidden naming him, and her signals are refused.
	if err := bob.Leave(ctx, "room-a"); err != nil {
		t.Fatal(err)
	}
	for {
		f := next(t, alice, 10*time.Second, "error", "presence")
		if f.Type == "error" {
			if f.Code != "forbidden" || f.Reason != "reach" || f.User != "bob" {
				t.Fatalf("end of the watch: %s", f.Raw)
			}
			break
		}
	}
	wantErr(t, "alice rings bob after he left", alice.Signal(ctx, "bob", "", "call-3", "offer", nil), "forbidden", "reach")
	// Oneself is always reachable.
	if err := bob.Signal(ctx, "bob", "", "self", "offer", nil); err != nil {
		t.Fatalf("signal to oneself: %v", err)
	}
}

// edge.reach any: every user may ring and watch every user, as before the
// policy existed.
func TestReachAny(t *testing.T) {
	cl := startCluster(t, 1, func(c *devcluster.Config) { c.Edge.Reach = edge.ReachAny })
	ctx := ctxT(t, 30*time.Second)
	alice := dial(t, cl.URL(0), "alice")
	bob := dial(t, cl.URL(0), "bob")
	online(t, alice, "bob", 1)
	if err := alice.Signal(ctx, "bob", "", "c", "offer", nil); err != nil {
		t.Fatalf("offer between strangers with reach any: %v", err)
	}
	signals(t, bob, "c", 1, 10*time.Second)
	wantErr(t, "offer to a stranger who is offline", alice.Signal(ctx, "nobody", "", "c2", "offer", nil), "unavailable", "offline")
}

// sequencer.max_groups_per_user and sequencer.max_members_per_group,
// end to end: the join over a limit gets rate_limited with its reason and
// changes nothing (no member event, no seq); other users are unaffected.
func TestJoinLimitsEndToEnd(t *testing.T) {
	cl := startCluster(t, 2, func(c *devcluster.Config) {
		c.Sequencer.Limits.MaxGroupsPerUser = 2
		c.Sequencer.Limits.MaxMembersPerGroup = 3
	})
	ctx := ctxT(t, 60*time.Second)
	addr := cl.Edges[0].Addr()
	ann := dial(t, cl.URL(0), "ann", "room-*")
	if err := ann.Join(ctx, "room-1"); err != nil {
		t.Fatal(err)
	}
	if err := ann.Join(ctx, "room-2"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "third group", ann.Join(ctx, "room-3"), "rate_limited", "groups")
	// Rejoining a group she is in is still fine.
	if err := ann.Join(ctx, "room-1"); err != nil {
		t.Fatalf("rejoin: %v", err)
	}
	// Another user is not limited by ann's count.
	ben := dial(t, cl.URL(1), "ben", "room-*")
	if err := ben.Join(ctx, "room-3"); err != nil {
		t.Fatalf("ben joins room-3: %v", err)
	}
	// Leaving frees a place.
	if err := ann.Leave(ctx, "room-2"); err != nil {
		t.Fatal(err)
	}
	if err := ann.Join(ctx, "room-3"); err != nil {
		t.Fatalf("join after leaving: %v", err)
	}

	// room-3 has ann and ben; cat makes three; dan is one too many.
	sub, err := ben.Subscribe(ctx, "room-3", nil)
	if err != nil {
		t.Fatal(err)
	}
	cat := dial(t, cl.URL(0), "cat", "room-*")
	if err := cat.Join(ctx, "room-3"); err != nil {
		t.Fatal(err)
	}
	dan := dial(t, cl.URL(1), "dan", "room-*")
	wantErr(t, "fourth member", dan.Join(ctx, "room-3"), "rate_limited", "members")
	wantErr(t, "the refused user sends", func() error { _, err := dan.Send(ctx, "room-3", "d1", body("x")); return err }(), "not_member", "")
	// Ben saw cat join (seq after his subscribe) and nothing of dan; the
	// next event has the next seq.
	if f := next(t, ben, 10*time.Second, "member"); f.User != "cat" || f.Seq != sub.Seq+1 {
		t.Fatalf("member event: %s", f.Raw)
	}
	seq, err := cat.Send(ctx, "room-3", "c1", body("after"))
	if err != nil {
		t.Fatal(err)
	}
	if seq != sub.Seq+2 {
		t.Fatalf("the send after a refused join got seq %d, want %d", seq, sub.Seq+2)
	}
	if f := next(t, ben, 10*time.Second, "member", "msg"); f.Type != "msg" || f.Seq != seq {
		t.Fatalf("ben's next event: %s", f.Raw)
	}
	if got := scrapeWhere(t, addr, "causeway_edge_errors_total", `code="rate_limited"`) + scrapeWhere(t, cl.Edges[1].Addr(), "causeway_edge_errors_total", `code="rate_limited"`); got < 2 {
		t.Fatalf("rate_limited refusals counted %v times, want at least 2", got)
	}
}

// edge.max_body_bytes: a body over it is too_large (reason body) and not
// sequenced; the connection and the group go on.
func TestMaxBodyBytes(t *testing.T) {
	cl := startCluster(t, 1, func(c *devcluster.Config) { c.Edge.MaxBodyBytes = 1024 })
	ctx := ctxT(t, 30*time.Second)
	ann := dial(t, cl.URL(0), "ann", "room-*")
	ben := dial(t, cl.URL(0), "ben", "room-*")
	joinSub(t, ann, "room-b")
	joinSub(t, ben, "room-b")
	// 1024 bytes of compact JSON pass (the string and its two quotes).
	fits := strings.Repeat("a", 1022)
	s1, err := ann.Send(ctx, "room-b", "m1", fits)
	if err != nil {
		t.Fatalf("a body of exactly the limit: %v", err)
	}
	// Spaces do not count: the body is measured compact.
	spaced := []byte(`{"t":  "` + strings.Repeat("b", 1000) + `"   }`)
	if _, err := ann.Send(ctx, "room-b", "m2", jsonRaw(spaced)); err != nil {
		t.Fatalf("a padded body that is small when compact: %v", err)
	}
	_, err = ann.Send(ctx, "room-b", "m3", fits+"a")
	wantErr(t, "one byte over", err, "too_large", "body")
	s4, err := ann.Send(ctx, "room-b", "m4", "small")
	if err != nil {
		t.Fatal(err)
	}
	if s4 != s1+2 {
		t.Fatalf("seq after the refused body: %d, want %d (nothing sequenced for it)", s4, s1+2)
	}
	got := collectMsgs(t, ben, "room-b", 3, 10*time.Second)
	for _, f := range got {
		if f.ClientMsgID == "m3" {
			t.Fatalf("the refused body was delivered: %s", f.Raw)
		}
	}
	if n := scrapeWhere(t, cl.Edges[0].Addr(), "causeway_edge_limited_total", `limit="body"`); n != 1 {
		t.Fatalf("causeway_edge_limited_total{limit=body} = %v, want 1", n)
	}
}

// jsonRaw is a body sent as is.
type jsonRaw []byte

func (j jsonRaw) MarshalJSON() ([]byte, error) { return j, nil }

// auth.public_keys_file rotates without a restart: a token signed with a
// key added to the file is accepted by the running edge.
func TestPublicKeysFileReloadEndToEnd(t *testing.T) {
	kp := secKeys()
	_, other, err := generateEd()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "keys.pem")
	writeKeys := func(keys map[string]any) {
		t.Helper()
		var b []byte
		for kid, pub := range keys {
			b = append(b, pemPublicKey(t, pub, kid)...)
		}
		if err := os.WriteFile(file+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
	}
	writeKeys(map[string]any{"r1": &kp.rsa.PublicKey})
	cl := startCluster(t, 1, func(c *devcluster.Config) { c.Edge.PublicKeyFile = file })
	url := cl.URL(0)
	tokOld := tokenSpec{method: jwt.SigningMethodRS256, key: kp.rsa, kid: "r1"}.sign(t)
	tokNew := tokenSpec{method: jwt.SigningMethodEdDSA, key: other, kid: "e2"}.sign(t)
	if _, f := helloWith(t, url, tokOld); f.Type != "welcome" {
		t.Fatalf("token of the key in the file: %+v", f)
	}
	w, f := helloWith(t, url, tokNew)
	if f.Code != "unauthorized" {
		t.Fatalf("token of a key not in the file yet: %+v", f)
	}
	expectClose(t, w, 4401)
	writeKeys(map[string]any{"r1": &kp.rsa.PublicKey, "e2": other.Public()})
	// The unknown kid makes the edge read the file again, at most once a
	// second.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, f := helloWith(t, url, tokNew)
		if f.Type == "welcome" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the added key was not picked up: %+v", f)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, f := helloWith(t, url, tokOld); f.Type != "welcome" {
		t.Fatalf("the old key after the rotation: %+v", f)
	}
}

// Refusals at the edge are logged with the request's id next to the
// session, and without the token.
func TestRequestIDInLogs(t *testing.T) {
	var logs syncBuffer
	cl := startCluster(t, 1, func(c *devcluster.Config) {
		c.Edge.Logger = newJSONLogger(&logs)
	})
	url := cl.URL(0)
	expired, err := mintAt(time.Now().Add(-3*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	w, f := helloWith(t, url, expired)
	if f.Code != "unauthorized" {
		t.Fatalf("hello: %+v", f)
	}
	expectClose(t, w, 4401)
	ws := authed(t, url, "ann")
	write(t, ws, `{"type":"refresh","id":"refresh-77","token":"`+token(t, "someone-else")+`"}`)
	readUntil(t, ws, func(f wireFrame) bool { return f.ID == "refresh-77" })
	want := map[string]string{"hello refused": `"id":"h"`, "refresh refused": `"id":"refresh-77"`}
	deadline := time.Now().Add(5 * time.Second)
	for len(want) > 0 && time.Now().Before(deadline) {
		for _, line := range strings.Split(logs.String(), "\n") {
			for msg, id := range want {
				if strings.Contains(line, `"msg":"`+msg+`"`) && strings.Contains(line, id) && strings.Contains(line, `"session":"s`) {
					delete(want, msg)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(want) > 0 {
		t.Fatalf("log lines without the request id and session: %v\n%s", want, logs.String())
	}
	if strings.Contains(logs.String(), expired) {
		t.Fatal("the log holds the token")
	}
}

func generateEd() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}

func pemPublicKey(t *testing.T, pub any, kid string) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{"kid": kid}, Bytes: der})
}

func newJSONLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Joins and leaves pass through the user's stream, yet a client may
// pipeline requests behind them as before: a subscribe and a send written
// in the same message as the join (with or without ids) reach the group
// after it, and a leave pipelined after them comes last.
func TestPipelinedJoinKeepsOrder(t *testing.T) {
	cl := startCluster(t, 1, nil)
	watcher := dial(t, cl.URL(0), "watcher", "room-*")
	joinSub(t, watcher, "room-p")
	for i, withIDs := range []bool{true, false} {
		user := "piper-" + string(rune('a'+i))
		ws := rawDial(t, cl.URL(0))
		id := func(s string) string {
			if withIDs {
				return `"id":"` + s + `",`
			}
			return ""
		}
		msg := strings.Join([]string{
			`{"type":"hello","id":"h","token":"` + token(t, user, "room-*") + `"}`,
			`{"type":"join",` + id("j") + `"group":"room-p"}`,
			`{"type":"subscribe",` + id("s") + `"group":"room-p"}`,
			`{"type":"send",` + id("m") + `"group":"room-p","client_msg_id":"c1","body":"first"}`,
			`{"type":"leave",` + id("l") + `"group":"room-p"}`,
			`{"type":"send",` + id("late") + `"group":"room-p","client_msg_id":"c2","body":"too late"}`,
		}, "\n")
		write(t, ws, msg)
		// The watcher sees the join, the message and the leave, in that
		// order; the send after the leave is refused.
		var seen []string
		for len(seen) < 3 {
			f := next(t, watcher, 10*time.Second, "member", "msg")
			if f.Type == "member" && f.User != user || f.Type == "msg" && f.From != user {
				continue
			}
			seen = append(seen, f.Type+":"+f.Event+string(f.Body))
		}
		if want := []string{"member:joined", `msg:"first"`, "member:left"}; strings.Join(seen, " ") != strings.Join(want, " ") {
			t.Fatalf("%s (ids %v): the watcher saw %v, want %v", user, withIDs, seen, want)
		}
		var errs []wireFrame
		deadline := time.Now().Add(5 * time.Second)
		for len(errs) == 0 && time.Now().Before(deadline) {
			fs, err := readFrames(t, ws)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fs {
				if f.Type == "error" {
					errs = append(errs, f)
				}
			}
		}
		if len(errs) != 1 || errs[0].Code != "not_member" || (withIDs && errs[0].ID != "late") {
			t.Fatalf("%s (ids %v): errors %+v, want only the late send's not_member", user, withIDs, errs)
		}
	}
}
