package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/causeway/causeway/consumers/rollup"
	"github.com/causeway/causeway/consumers/rollup/chsink"
	"github.com/causeway/causeway/consumers/rollup/chsink/chtest"
	"github.com/causeway/causeway/consumers/sequencer"
	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
	"github.com/causeway/causeway/pipeline"
	"github.com/causeway/causeway/pipeline/devcluster"
	"github.com/causeway/causeway/pipeline/replay"
	"github.com/causeway/causeway/schemas"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
)

// replayTraffic is what replayTraffic left in the cluster.
type replayTraffic struct {
	clients []*client.Client
	// room1Seq is room-1's last seq.
	room1Seq uint64
}

// driveTraffic gives the cluster a real log through its edges: alice and
// carol on edge 0, bob on edge 1; joins, subscriptions (one with
// presence), messages and a retried one, read watermarks, a leave, a
// presence watch, typing and a 1:1 call offer. Every request waits for
// the sequencer's answer, so all of it is sequenced and committed.
func driveTraffic(t *testing.T, cl *devcluster.Cluster) replayTraffic {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	secret := []byte(e2eSecret)
	var tr replayTraffic
	dial := func(user string, edgeIdx int) *client.Client {
		tok, err := edge.Mint(secret, user, []string{"room-*"}, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.Dial(ctx, cl.URL(edgeIdx), tok, nil)
		if err != nil {
			t.Fatalf("dial as %s: %v", user, err)
		}
		t.Cleanup(func() { _ = c.Close() })
		tr.clients = append(tr.clients, c)
		return c
	}
	alice, bob, carol := dial("alice", 0), dial("bob", 1), dial("carol", 0)
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	send := func(c *client.Client, group, id string) uint64 {
		t.Helper()
		seq, err := c.Send(ctx, group, id, map[string]string{"text": id})
		must("send "+id, err)
		return seq
	}
	for _, c := range []*client.Client{alice, bob, carol} {
		must("join room-1", c.Join(ctx, "room-1"))
	}
	must("join room-2", alice.Join(ctx, "room-2"))
	must("join room-2", bob.Join(ctx, "room-2"))
	must("join room-3", carol.Join(ctx, "room-3"))
	_, err := alice.SubscribePresence(ctx, "room-1", nil)
	must("subscribe", err)
	_, err = bob.Subscribe(ctx, "room-1", nil)
	must("subscribe", err)
	send(alice, "room-1", "a1")
	send(alice, "room-1", "a2")
	last := send(bob, "room-1", "b1")
	if again := send(alice, "room-1", "a1"); again != 4 { // joins 1-3, a1 is 4
		t.Fatalf("retried a1 got seq %d, want 4", again)
	}
	send(bob, "room-2", "b2")
	send(carol, "room-3", "c3")
	must("read", bob.Read(ctx, "room-1", last))
	must("read", carol.Read(ctx, "room-1", 4))
	must("leave", carol.Leave(ctx, "room-3"))
	must("presence", carol.Presence(ctx, "alice"))
	must("typing", alice.Typing(ctx, "room-1"))
	must("signal", alice.Signal(ctx, "bob", "", "call-1", "offer", map[string]string{"sdp": "v=0"}))
	tr.room1Seq = last
	return tr
}

// stateKey is a sequencer changelog key.
func stateKey(parts ...string) string { return strings.Join(parts, "\x00") }

func produceState(t *testing.T, brokers string, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, r := range recs {
		r.Topic = "causeway.sequencer-state"
		r.Partition = pipeline.PartitionFor(strings.SplitN(string(r.Key), "\x00", 2)[0], 8)
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestReplayState rebuilds the sequencer state of a running cluster from
// its group log and checks it against the live state topic; corrupts the
// topic and checks the readable differences; then, with the cluster
// stopped, deletes the state topic, writes the rebuilt state into the new
// one, verifies it, and starts a sequencer on it: room-1 goes on from its
// last seq with its history.
func TestReplayState(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cl := devcluster.StartTest(t, 2, []byte(e2eSecret), func(c *devcluster.Config) { c.Broker.DataDir = dir })
	tr := driveTraffic(t, cl)
	brokers := cl.Broker.Addr()

	// The live state, while the edges keep beating into every partition
	// and the sequencer keeps committing.
	out, err := runOut(t, "replay", "--brokers", brokers, "--into", "state", "--verify")
	if err != nil {
		t.Fatalf("replay --verify of the live state: %v\n%s", err, out)
	}
	for _, want := range []string{"partition 0: group log offsets 0-", "to the committed offset of causeway-sequencer", "identical",
		"verified: causeway.sequencer-state matches the rebuilt state"} {
		if !strings.Contains(out, want) {
			t.Errorf("replay --verify output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "differences") {
		t.Errorf("differences in the live state:\n%s", out)
	}

	// Corrupt it: a member deleted, a seq changed, a key nobody wrote.
	meta, _ := proto.Marshal(&pb.GroupMeta{Version: schemas.Version, Seq: 99})
	produceState(t, brokers,
		&kgo.Record{Key: []byte(stateKey("room-1", "m", "carol"))},
		&kgo.Record{Key: []byte(stateKey("room-2", "g")), Value: meta},
		&kgo.Record{Key: []byte(stateKey("ghost", "g")), Value: meta},
	)
	out, err = runOut(t, "replay", "--brokers", brokers, "--into", "state", "--verify")
	if !errors.Is(err, replay.ErrMismatch) {
		t.Fatalf("replay --verify of a corrupted state: %v, want ErrMismatch\n%s", err, out)
	}
	for _, want := range []string{
		`"room-1" member "carol": missing from the state topic (key "room-1\x00m\x00carol")`,
		`    rebuilt:     Membership {"version":1,"joinedSeq":"3","readSeq":"4","readTsMs":"`,
		`"room-2" meta: different (key "room-2\x00g")`,
		`    state topic: GroupMeta {"version":1,"seq":"99"}`,
		`    rebuilt:     GroupMeta {"version":1,"seq":"3","dedupClock":"1"}`,
		`"ghost" meta: only in the state topic (key "ghost\x00g")`,
		"2 differences (1 missing, 0 different, 1 extra)",
		"1 difference (0 missing, 1 different, 0 extra)",
		"verify FAILED: 3 differences in 2 partitions",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("replay --verify output lacks %q:\n%s", want, out)
		}
	}
	if err == nil || !strings.Contains(err.Error(), "3 differences") {
		t.Errorf("error %v does not count the differences", err)
	}

	// A rebuild never writes while sequencers run.
	if out, err := runOut(t, "replay", "--brokers", brokers, "--into", "state", "--write", "--force"); !errors.Is(err, replay.ErrSequencersRunning) {
		t.Fatalf("replay --write with a running sequencer: %v, want ErrSequencersRunning\n%s", err, out)
	}

	// Stop everything; the broker's data stays in dir.
	for _, c := range tr.clients {
		_ = c.Close()
	}
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := pipeline.NewBroker(pipeline.BrokerConfig{Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close) // after the sequencer and edge started below stop
	brokers = b.Addr()

	// Lose the state topic: delete it and create an empty one.
	recreateStateTopic(t, brokers, pipeline.DefaultLayout())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	out, err = runOut(t, "replay", "--brokers", brokers, "--into", "state", "--verify")
	if !errors.Is(err, replay.ErrMismatch) || !strings.Contains(out, "missing from the state topic") || strings.Contains(out, "only in the state topic") {
		t.Fatalf("replay --verify of an empty state topic: %v, want only missing keys\n%s", err, out)
	}
	cp := filepath.Join(t.TempDir(), "state.json")
	out, err = runOut(t, "replay", "--brokers", brokers, "--into", "state", "--write", "--checkpoint", cp)
	if err != nil {
		t.Fatalf("replay --write: %v\n%s", err, out)
	}
	if !strings.Contains(out, "records to causeway.sequencer-state (") || !strings.Contains(out, "records written to causeway.sequencer-state") {
		t.Errorf("replay --write output:\n%s", out)
	}
	out, err = runOut(t, "replay", "--brokers", brokers, "--into", "state", "--verify", "--max-diffs", "0")
	if err != nil {
		t.Fatalf("replay --verify after --write: %v\n%s", err, out)
	}
	// The finished run's checkpoint: a second run has nothing to do.
	out, err = runOut(t, "replay", "--brokers", brokers, "--into", "state", "--write", "--checkpoint", cp)
	if err != nil || !strings.Contains(out, "resuming from checkpoint "+cp+": 8 of 8 partitions done") {
		t.Fatalf("replay --write again with its checkpoint: %v\n%s", err, out)
	}
	// Without it, the topic is not empty any more.
	out, err = runOut(t, "replay", "--brokers", brokers, "--into", "state", "--write")
	if !errors.Is(err, replay.ErrNotEmpty) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("replay --write into a written topic: %v, want ErrNotEmpty naming --force\n%s", err, out)
	}
	out, err = runOut(t, "replay", "--brokers", brokers, "--into", "state", "--write", "--force", "--verify")
	if err != nil || strings.Contains(out, "wrote") {
		t.Fatalf("replay --write --force --verify of an equal topic wrote something or failed: %v\n%s", err, out)
	}

	// A sequencer on the rebuilt state numbers room-1 on from its last seq
	// and replays its history.
	e := startSequencerAndEdge(t, brokers)
	tok, err := edge.Mint([]byte(e2eSecret), "alice", []string{"room-*"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctx, "ws://"+e.Addr()+"/v1/ws", tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	since := tr.room1Seq - 1
	sub, err := c.Subscribe(ctx, "room-1", &since)
	if err != nil || sub.Seq != tr.room1Seq || !sub.Recovered {
		t.Fatalf("subscribe since %d on the rebuilt state: %+v, %v; want seq %d, recovered", since, sub, err, tr.room1Seq)
	}
	got, err := c.Send(ctx, "room-1", "after-rebuild", "hi")
	if err != nil || got != tr.room1Seq+1 {
		t.Fatalf("send on the rebuilt state: seq %d, %v; want %d", got, err, tr.room1Seq+1)
	}
	if again, err := c.Send(ctx, "room-1", "a1", "again"); err != nil || again != 4 {
		t.Fatalf("retried a1 on the rebuilt state: seq %d, %v; want the original 4 (dedup rebuilt)", again, err)
	}
}

// startSequencerAndEdge runs one sequencer and one edge on brokers until
// the test ends.
func startSequencerAndEdge(t *testing.T, brokers string) *edge.Server {
	t.Helper()
	dc := devcluster.DefaultConfig(1, []byte(e2eSecret))
	return startSequencerAndEdgeOn(t, brokers, dc.Sequencer.Layout, dc.Sequencer.GroupID, prometheus.NewRegistry())
}

// startSequencerAndEdgeOn runs one sequencer (consumer group groupID,
// metrics in reg) and one edge on a layout until the test ends.
func startSequencerAndEdgeOn(t *testing.T, brokers string, l pipeline.Layout, groupID string, reg *prometheus.Registry) *edge.Server {
	t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dc := devcluster.DefaultConfig(1, []byte(e2eSecret))
	sc := dc.Sequencer
	sc.Layout, sc.GroupID = l, groupID
	sc.Kafka = pipeline.KafkaConfig{Brokers: []string{brokers}, ClientID: "replay-test-sequencer"}
	sc.Registerer, sc.Logger = reg, log
	seq, err := sequencer.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	ec := dc.Edge
	ec.ID, ec.HTTPAddr, ec.Layout = "edge-after", "127.0.0.1:0", l
	ec.Kafka = pipeline.KafkaConfig{Brokers: []string{brokers}, ClientID: "replay-test-edge"}
	ec.Registry, ec.Logger = prometheus.NewRegistry(), log
	e, err := edge.New(ec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- seq.Run(ctx) }()
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("stop: %v", err)
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !e.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("edge not ready within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return e
}

// chQueries runs every analytics query of chsink.Queries on db and returns
// the results by query name, as strings.
func chQueries(t *testing.T, addr, db string) map[string][][]string {
	t.Helper()
	queries := map[string]string{}
	for _, q := range chsink.Queries {
		queries[q.Name] = q.SQL
	}
	return chSelect(t, addr, db, queries)
}

// chSelect runs each named query on db and returns the rows by name, as
// strings.
func chSelect(t *testing.T, addr, db string, queries map[string]string) map[string][][]string {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Database: db}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	out := map[string][][]string{}
	for name, sql := range queries {
		rows, err := conn.Query(context.Background(), sql)
		if err != nil {
			t.Fatalf("query %s on %s: %v", name, db, err)
		}
		types := rows.ColumnTypes()
		res := [][]string{}
		for rows.Next() {
			dest := make([]any, len(types))
			for i, ct := range types {
				dest[i] = reflect.New(ct.ScanType()).Interface()
			}
			if err := rows.Scan(dest...); err != nil {
				t.Fatalf("scan %s: %v", name, err)
			}
			row := make([]string, len(dest))
			for i, d := range dest {
				switch v := reflect.ValueOf(d).Elem().Interface().(type) {
				case time.Time:
					row[i] = v.UTC().Format(time.DateTime)
				case float64:
					row[i] = strconv.FormatFloat(v, 'f', -1, 64)
				default:
					row[i] = fmt.Sprint(v)
				}
			}
			res = append(res, row)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("query %s: %v", name, err)
		}
		rows.Close()
		out[name] = res
	}
	return out
}

func diffQueries(a, b map[string][][]string) string {
	var s strings.Builder
	for _, q := range chsink.Queries {
		if !reflect.DeepEqual(a[q.Name], b[q.Name]) {
			fmt.Fprintf(&s, "\n%s:\n  %v\n  %v", q.Name, a[q.Name], b[q.Name])
		}
	}
	return s.String()
}

// settled waits until the live analytics in db have everything: read
// counts in the receipts, presence, and no change for a while; and
// returns the results of every query.
func settled(t *testing.T, addr, db string) map[string][][]string {
	t.Helper()
	var res map[string][][]string
	deadline := time.Now().Add(60 * time.Second)
	for stable := 0; stable < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("live analytics did not settle:\n%v", res)
		}
		time.Sleep(time.Second)
		got := chQueries(t, addr, db)
		if len(got["messages_not_read_by_all"]) == 0 || len(got["presence_session_lengths"]) == 0 || !reflect.DeepEqual(got, res) {
			stable = 0
		} else {
			stable++
		}
		res = got
	}
	return res
}

// TestReplayClickHouse rebuilds, from the state topic (--source state),
// the analytics of a cluster whose rollup writes them live into one
// database: replayed twice into another, every
// query of chsink.Queries gives the same result both times, and the same
// as the live database. A checkpointed run is resumed (nothing left) and
// refused for other flags; a range after the traffic writes nothing.
func TestReplayClickHouse(t *testing.T) {
	t.Parallel()
	addr, err := chtest.Start()
	if err != nil {
		t.Fatalf("TestReplayClickHouse needs a real ClickHouse and could not start one: %v", err)
	}
	live, replayed, ranged := chtest.Database(t, addr), chtest.Database(t, addr), chtest.Database(t, addr)
	liveCfg := chsink.Config{Addr: addr, Database: live}
	w, err := chsink.New(liveCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cl := devcluster.StartTest(t, 2, []byte(e2eSecret), func(c *devcluster.Config) {
		c.Analytics = &rollup.SinkConfig{GroupID: "causeway-rollup-sink", Writer: w, MaxRows: 1000, FlushEvery: 200 * time.Millisecond,
			Prepare: func(ctx context.Context) error { _, err := chsink.Migrate(ctx, liveCfg); return err }}
	})
	driveTraffic(t, cl)
	brokers := cl.Broker.Addr()
	liveRes := settled(t, addr, live)

	run := func(db string, extra ...string) string {
		t.Helper()
		args := append([]string{"replay", "--brokers", brokers, "--into", "clickhouse", "--source", "state", "--clickhouse", addr, "--database", db}, extra...)
		out, err := runOut(t, args...)
		if err != nil {
			t.Fatalf("causeway %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	cp := filepath.Join(t.TempDir(), "ch.json")
	out := run(replayed, "--checkpoint", cp)
	if !strings.Contains(out, "applied 001_timeline.sql") || !strings.Contains(out, "replay --into clickhouse: 8 partitions") ||
		strings.Contains(out, "(0 messages") || strings.Contains(out, ", 0 receipt aggregates") {
		t.Errorf("first replay's output:\n%s", out)
	}
	first := chQueries(t, addr, replayed)
	out = run(replayed)
	second := chQueries(t, addr, replayed)
	if d := diffQueries(first, second); d != "" {
		t.Errorf("the second replay changed query results:%s\n%s", d, out)
	}
	if d := diffQueries(liveRes, first); d != "" {
		t.Errorf("replayed analytics differ from the live ones (live first):%s", d)
	}
	for _, name := range []string{"time_to_read_by_group", "read_ratio_by_group_size", "receipt_traffic_saved", "presence_session_lengths", "activity_over_time", "messages_not_read_by_all"} {
		if len(first[name]) == 0 {
			t.Errorf("query %s has no rows after the replay", name)
		}
	}

	// The checkpoint of the finished run: nothing left to read. Other
	// flags with it are refused.
	out = run(replayed, "--checkpoint", cp)
	if !strings.Contains(out, "(resumed at ") || !strings.Contains(out, "8 partitions, 0 records") {
		t.Errorf("rerun with the finished checkpoint:\n%s", out)
	}
	if out, err := runOut(t, "replay", "--brokers", brokers, "--into", "clickhouse", "--source", "state", "--clickhouse", addr, "--database", replayed,
		"--checkpoint", cp, "--from", "0"); !errors.Is(err, replay.ErrCheckpoint) || !strings.Contains(err.Error(), "belongs to another run") {
		t.Errorf("a checkpoint of other flags: %v, want ErrCheckpoint\n%s", err, out)
	}

	// A range after everything: nothing.
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	out = run(ranged, "--from", later)
	if !strings.Contains(out, "0 records of causeway.sequencer-state read, 0 rows written") {
		t.Errorf("replay of an empty range:\n%s", out)
	}
}

// TestReplayRefusesUnknownLayout: a configured layout the cluster does not
// have is refused before anything is read or written, in every mode and
// for both ends of a copy.
func TestReplayRefusesUnknownLayout(t *testing.T) {
	t.Parallel()
	b, err := pipeline.NewBroker(pipeline.BrokerConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	kc, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	if err := pipeline.EnsureTopics(context.Background(), kadm.NewClient(kc), pipeline.DefaultLayout()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := func(name, yaml string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fewer := conf("fewer.yaml", "topics:\n  group_partitions: 4\n")
	other := conf("other.yaml", "topics:\n  groups: causeway.groups.v2\n")
	dflt := conf("default.yaml", "topics:\n  groups: causeway.groups\n")
	for _, tc := range []struct {
		args []string
		is   error
		want string
	}{
		{[]string{"--config", fewer, "--into", "state", "--verify"}, pipeline.ErrLayoutMismatch, "topic causeway.groups has 8 partitions, layout says 4"},
		{[]string{"--config", fewer, "--into", "clickhouse", "--clickhouse", "127.0.0.1:1"}, pipeline.ErrLayoutMismatch, "has 8 partitions, layout says 4"},
		{[]string{"--config", other, "--into", "state"}, pipeline.ErrTopicMissing, "topic causeway.groups.v2"},
		{[]string{"--config", fewer, "--into", "clickhouse", "--source", "state", "--clickhouse", "127.0.0.1:1"}, pipeline.ErrLayoutMismatch, "has 8 partitions, layout says 4"},
		// The destination of a copy, then its source.
		{[]string{"--config", other, "--into", "groups", "--source-config", dflt, "--source-brokers", b.Addr()}, pipeline.ErrTopicMissing, "topic causeway.groups.v2"},
		{[]string{"--into", "groups", "--source-config", other, "--source-brokers", b.Addr()}, pipeline.ErrTopicMissing, "source: replay refuses to run"},
	} {
		// The layout check comes first: ClickHouse (127.0.0.1:1) is not
		// reached.
		args := append([]string{"replay", "--brokers", b.Addr()}, tc.args...)
		out, err := runOut(t, args...)
		if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "replay refuses to run") {
			t.Errorf("causeway %s: %v, want %v with %q\n%s", strings.Join(args, " "), err, tc.is, tc.want, out)
		}
	}
}

// TestReplayTruncatedLog: a group log whose beginning was deleted is
// refused unless --allow-truncated-log, by --into state and by --into
// clickhouse from the group log (which, allowed, rebuilds from what is
// left); and --write refuses partitions without a committed sequencer
// offset.
func TestReplayTruncatedLog(t *testing.T) {
	t.Parallel()
	b, err := pipeline.NewBroker(pipeline.BrokerConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	kc, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	adm := kadm.NewClient(kc)
	ctx := context.Background()
	if err := pipeline.EnsureTopics(ctx, adm, pipeline.DefaultLayout()); err != nil {
		t.Fatal(err)
	}
	p := pipeline.PartitionFor("room-1", 8)
	var recs []*kgo.Record
	for _, u := range []string{"alice", "bob", "carol"} {
		v, _ := proto.Marshal(&pb.GroupEvent{Version: schemas.Version, Group: "room-1", User: u, TsMs: time.Now().UnixMilli(), Kind: &pb.GroupEvent_Join{Join: &pb.Join{}}})
		recs = append(recs, &kgo.Record{Topic: "causeway.groups", Partition: p, Key: []byte("room-1"), Value: v})
	}
	if err := kc.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Nothing deleted yet: a rebuild to the log's end (no sequencer ever
	// committed), but no --write without committed offsets.
	out, err := runOut(t, "replay", "--brokers", b.Addr(), "--into", "state", "--partition", strconv.Itoa(int(p)))
	if err != nil || !strings.Contains(out, "3 records, 7 keys rebuilt") || !strings.Contains(out, "the log's stable end") {
		t.Fatalf("rebuild of 3 joins: %v\n%s", err, out)
	}
	if out, err := runOut(t, "replay", "--brokers", b.Addr(), "--into", "state", "--write"); !errors.Is(err, replay.ErrNoCommittedOffset) {
		t.Fatalf("--write without committed offsets: %v, want ErrNoCommittedOffset\n%s", err, out)
	}

	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: "causeway.groups", Partition: p, At: 1})
	if resp, err := adm.DeleteRecords(ctx, del); err != nil || resp.Error() != nil {
		t.Fatalf("delete records: %v %v", err, resp.Error())
	}
	out, err = runOut(t, "replay", "--brokers", b.Addr(), "--into", "state", "--verify")
	if !errors.Is(err, replay.ErrTruncatedLog) || !strings.Contains(err.Error(), fmt.Sprintf("partition %d starts at offset 1", p)) ||
		!strings.Contains(err.Error(), "--allow-truncated-log") {
		t.Fatalf("replay of a truncated log: %v, want ErrTruncatedLog\n%s", err, out)
	}
	out, err = runOut(t, "replay", "--brokers", b.Addr(), "--into", "state", "--allow-truncated-log")
	if err != nil || !strings.Contains(out, "warning: causeway.groups: partition") || !strings.Contains(out, "2 records") {
		t.Fatalf("replay --allow-truncated-log: %v\n%s", err, out)
	}
	// Rebuilding ClickHouse from the group log refuses it too, before
	// ClickHouse (127.0.0.1:1) is reached.
	out, err = runOut(t, "replay", "--brokers", b.Addr(), "--into", "clickhouse", "--clickhouse", "127.0.0.1:1")
	if !errors.Is(err, replay.ErrTruncatedLog) || !strings.Contains(err.Error(), "--allow-truncated-log") {
		t.Fatalf("replay --into clickhouse of a truncated log: %v, want ErrTruncatedLog\n%s", err, out)
	}
	addr, err := chtest.Start()
	if err != nil {
		t.Fatalf("TestReplayTruncatedLog needs a real ClickHouse and could not start one: %v", err)
	}
	out, err = runOut(t, "replay", "--brokers", b.Addr(), "--into", "clickhouse", "--clickhouse", addr, "--database", chtest.Database(t, addr), "--allow-truncated-log")
	if err != nil || !strings.Contains(out, "warning: causeway.groups: partition") || !strings.Contains(out, "2 records of causeway.groups read") ||
		!strings.Contains(out, "2 member events") {
		t.Fatalf("replay --into clickhouse --allow-truncated-log: %v\n%s", err, out)
	}
}

// TestReplayFlags checks the flag validation, before anything connects.
func TestReplayFlags(t *testing.T) {
	t.Parallel()
	for args, want := range map[string]string{
		"replay":                                                        "--into is required",
		"replay --into nothing":                                         `--into "nothing": want state, clickhouse or groups`,
		"replay --into state --from 5":                                  "--from applies to --into clickhouse, not --into state",
		"replay --into state --database x":                              "--database applies to --into clickhouse",
		"replay --into clickhouse --verify":                             "--verify applies to --into state, not --into clickhouse",
		"replay --into clickhouse --write":                              "--write applies to --into state",
		"replay --into state --force":                                   "--force only applies with --write",
		"replay --into state --verify --max-diffs -1":                   "--max-diffs -1",
		"replay --into clickhouse --from yesterday":                     `--from "yesterday": want an RFC 3339 time`,
		"replay --into clickhouse --to 3:-1":                            "partitions and offsets are 0 or more",
		"replay --into clickhouse --from 1:5,1:6":                       "partition 1 is listed twice",
		"replay --into clickhouse --from 10 --to 5":                     "from 10 is not before to 5",
		"replay --into state --checkpoint /nope/x.json":                 "its directory does not exist",
		"replay --into state --brokers nope":                            "not host:port",
		"replay --into state extra":                                     "unknown command",
		"replay --into state --partition x":                             "invalid argument",
		"replay --into state --partition 8":                             "partition 8: the layout has partitions 0 to 7",
		"replay --into state --commit-offsets":                          "--commit-offsets only applies with --write",
		"replay --into state --source state":                            "--source applies to --into clickhouse, not --into state",
		"replay --into clickhouse --source nope":                        `--source "nope": want groups`,
		"replay --into clickhouse --source state --allow-truncated-log": "--allow-truncated-log applies to --source groups",
		"replay --into clickhouse --source-config x":                    "--source-config applies to --into groups, not --into clickhouse",
		"replay --into groups":                                          "--into groups needs --source-config",
		"replay --into groups --source-config /nope.yaml":               "--source-config: read config file /nope.yaml",
		"replay --into groups --partition 1":                            "--partition applies to --into state or clickhouse, not --into groups",
		"replay --into groups --verify":                                 "--verify applies to --into state, not --into groups",
	} {
		_, err := runOut(t, strings.Fields(args)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("causeway %s: %v, want an error with %q", args, err, want)
		}
	}
}
