package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/causeway/causeway/consumers/rollup"
	"github.com/causeway/causeway/consumers/rollup/chsink"
	"github.com/causeway/causeway/consumers/rollup/chsink/chtest"
	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
	"github.com/causeway/causeway/pipeline"
	"github.com/causeway/causeway/pipeline/devcluster"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// chTables selects the rows of every analytics table, one identity each,
// ordered: what a rebuild must reproduce.
func chTables() map[string]string {
	return map[string]string{
		"messages":      "SELECT group_id, seq, sender, sent_at_ms, members_at_send FROM messages FINAL ORDER BY group_id, seq",
		"reads":         "SELECT DISTINCT group_id, user_id, watermark, read_at_ms FROM reads ORDER BY group_id, user_id, watermark",
		"member_events": "SELECT DISTINCT group_id, seq, user_id, joined, event_at_ms FROM member_events ORDER BY group_id, seq",
		"receipts": "SELECT group_id, seq, argMax(sender, version), argMax(sent_at_ms, version), argMax(members_at_send, version), " +
			"argMax(read_count, version), argMax(first_read_at_ms, version), argMax(last_read_at_ms, version), " +
			"argMax(ttr_p50_ms, version), argMax(ttr_p90_ms, version), max(version) FROM receipts GROUP BY group_id, seq ORDER BY group_id, seq",
		"presence_events": "SELECT DISTINCT user_id, session_id, edge_id, online, at_ms FROM presence_events ORDER BY user_id, session_id, online, at_ms",
	}
}

// chRows returns every table of db (chTables), rows as strings.
func chRows(t *testing.T, addr, db string) map[string][][]string {
	t.Helper()
	return chSelect(t, addr, db, chTables())
}

// presenceSlack bounds how much later the live sink times a presence event
// than a rebuild from the group log: the sequencer's changelog record
// follows the log record that made it by its processing time.
const presenceSlack = 2000 // ms

// diffTables compares tables a (live) and b (rebuilt): exactly, except
// that with slack a presence event's time may be up to presenceSlack ms
// later in a than in b.
func diffTables(a, b map[string][][]string, slack bool) string {
	var s strings.Builder
	for name := range chTables() {
		ra, rb := a[name], b[name]
		if name != "presence_events" || !slack {
			if !reflect.DeepEqual(ra, rb) {
				fmt.Fprintf(&s, "\n%s:\n  %v\n  %v", name, ra, rb)
			}
			continue
		}
		if len(ra) != len(rb) {
			fmt.Fprintf(&s, "\n%s: %d and %d events:\n  %v\n  %v", name, len(ra), len(rb), ra, rb)
			continue
		}
		for i := range ra {
			la, _ := strconv.ParseInt(ra[i][4], 10, 64)
			lb, _ := strconv.ParseInt(rb[i][4], 10, 64)
			if !reflect.DeepEqual(ra[i][:4], rb[i][:4]) || la < lb || la-lb > presenceSlack {
				fmt.Fprintf(&s, "\n%s: event %d: %v and %v", name, i, ra[i], rb[i])
			}
		}
	}
	return s.String()
}

// TestReplayClickHouseFromGroupLog rebuilds, from the group log (the
// default source), the analytics a live rollup sink wrote for the same
// traffic: every table equals the live one (presence events up to the
// sequencer's processing time later in the live ones), and so does every
// query but the presence ones. A second run changes nothing; a range
// split at a time in the middle of the traffic (--to T, then --from T)
// gives the same tables. Then the state topic is lost (deleted, as
// compaction would remove old records): the rebuild from the group log
// still gives exactly the same rows, while the state topic has nothing
// left to rebuild from.
func TestReplayClickHouseFromGroupLog(t *testing.T) {
	t.Parallel()
	addr, err := chtest.Start()
	if err != nil {
		t.Fatalf("TestReplayClickHouseFromGroupLog needs a real ClickHouse and could not start one: %v", err)
	}
	live, rebuilt, split, afterLoss, fromState := chtest.Database(t, addr), chtest.Database(t, addr), chtest.Database(t, addr),
		chtest.Database(t, addr), chtest.Database(t, addr)
	liveCfg := chsink.Config{Addr: addr, Database: live}
	w, err := chsink.New(liveCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	dir := t.TempDir()
	cl := devcluster.StartTest(t, 2, []byte(e2eSecret), func(c *devcluster.Config) {
		c.Broker.DataDir = dir
		c.Analytics = &rollup.SinkConfig{GroupID: "causeway-rollup-sink", Writer: w, MaxRows: 1000, FlushEvery: 200 * time.Millisecond,
			Prepare: func(ctx context.Context) error { _, err := chsink.Migrate(ctx, liveCfg); return err }}
	})
	tr := driveTraffic(t, cl)
	time.Sleep(50 * time.Millisecond)
	mid := time.Now().UTC().Format(time.RFC3339Nano)
	time.Sleep(50 * time.Millisecond)
	moreTraffic(t, tr)
	liveQ := settled(t, addr, live)
	liveT := chRows(t, addr, live)
	brokers := cl.Broker.Addr()

	run := func(db string, extra ...string) string {
		t.Helper()
		args := append([]string{"replay", "--brokers", brokers, "--into", "clickhouse", "--clickhouse", addr, "--database", db}, extra...)
		out, err := runOut(t, args...)
		if err != nil {
			t.Fatalf("causeway %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	out := run(rebuilt)
	if !regexp.MustCompile(`partition 0: rows of causeway.groups offsets 0-[1-9]`).MatchString(out) ||
		!strings.Contains(out, "records of causeway.groups read") || strings.Contains(out, "(0 messages") || strings.Contains(out, ", 0 receipt aggregates") {
		t.Errorf("replay from the group log's output:\n%s", out)
	}
	rebuiltT := chRows(t, addr, rebuilt)
	if d := diffTables(liveT, rebuiltT, true); d != "" {
		t.Errorf("tables rebuilt from the group log differ from the live ones (live first):%s", d)
	}
	for _, name := range []string{"messages", "reads", "member_events", "receipts", "presence_events"} {
		if len(rebuiltT[name]) == 0 {
			t.Errorf("table %s is empty after the rebuild", name)
		}
	}
	rebuiltQ := chQueries(t, addr, rebuilt)
	for _, q := range chsink.Queries {
		if !strings.HasPrefix(q.Name, "presence_") && !reflect.DeepEqual(liveQ[q.Name], rebuiltQ[q.Name]) {
			t.Errorf("query %s: live %v, rebuilt from the group log %v", q.Name, liveQ[q.Name], rebuiltQ[q.Name])
		}
	}

	// Twice: the same tables.
	run(rebuilt)
	if d := diffQueries(rebuiltQ, chQueries(t, addr, rebuilt)); d != "" {
		t.Errorf("the second rebuild changed query results:%s", d)
	}
	if d := diffTables(rebuiltT, chRows(t, addr, rebuilt), false); d != "" {
		t.Errorf("the second rebuild changed the tables:%s", d)
	}

	// In two ranges: before and after a time in the middle.
	first := run(split, "--to", mid)
	second := run(split, "--from", mid)
	if strings.Contains(first, ", 0 rows written") || strings.Contains(second, ", 0 rows written") {
		t.Errorf("a half of the traffic wrote nothing:\n%s\n%s", first, second)
	}
	if d := diffTables(rebuiltT, chRows(t, addr, split), false); d != "" {
		t.Errorf("a rebuild in two ranges differs from a whole one:%s", d)
	}

	// Lose the state topic, with everything stopped; the log stays. (The
	// clients' disconnections go into the log too: the rebuild ends
	// before them, where the others ended.)
	stop := time.Now().UTC().Format(time.RFC3339Nano)
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
	defer b.Close()
	brokers = b.Addr()
	recreateStateTopic(t, brokers, pipeline.DefaultLayout())
	out = run(fromState, "--source", "state")
	if !strings.Contains(out, "0 records of causeway.sequencer-state read") {
		t.Errorf("the state topic still has records:\n%s", out)
	}
	out = run(afterLoss, "--to", stop)
	if d := diffTables(rebuiltT, chRows(t, addr, afterLoss), false); d != "" {
		t.Errorf("the rebuild after the state topic was lost differs (before first):%s\n%s", d, out)
	}
	if d := diffQueries(rebuiltQ, chQueries(t, addr, afterLoss)); d != "" {
		t.Errorf("the rebuild after the state topic was lost gives other query results:%s", d)
	}
}

// moreTraffic: after driveTraffic, more messages and reads (alice, bob,
// carol are its first three clients).
func moreTraffic(t *testing.T, tr replayTraffic) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice, bob, carol := tr.clients[0], tr.clients[1], tr.clients[2]
	seq, err := alice.Send(ctx, "room-1", "later-1", "after the middle")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Send(ctx, "room-2", "later-2", "after the middle"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{bob, carol} {
		if err := c.Read(ctx, "room-1", seq); err != nil {
			t.Fatal(err)
		}
	}
}

// recreateStateTopic deletes l's state topic and creates it again, empty.
func recreateStateTopic(t *testing.T, brokers string, l pipeline.Layout) {
	t.Helper()
	kc, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	adm := kadm.NewClient(kc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := adm.DeleteTopic(ctx, l.StateTopic); err != nil {
		t.Fatal(err)
	}
	for {
		err := pipeline.EnsureTopics(ctx, adm, l)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("recreate the state topic: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// history subscribes c to group since 0 and returns the timeline events
// it replays, up to seq upto, one line each.
func history(t *testing.T, c *client.Client, group string, upto uint64) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	since := uint64(0)
	sub, err := c.Subscribe(ctx, group, &since)
	if err != nil || !sub.Recovered || sub.Seq < upto {
		t.Fatalf("subscribe to %s since 0: %+v, %v; want recovered, up to seq %d", group, sub, err, upto)
	}
	var out []string
	for uint64(len(out)) < upto {
		select {
		case f, ok := <-c.Events():
			if !ok {
				t.Fatalf("connection closed after %d events of %s: %v", len(out), group, c.Err())
			}
			if f.Group != group || f.Type != "msg" && f.Type != "member" || f.Seq == 0 || f.Seq > upto {
				continue
			}
			out = append(out, fmt.Sprintf("%d %s from=%s id=%s user=%s event=%s body=%s", f.Seq, f.Type, f.From, f.ClientMsgID, f.User, f.Event, f.Body))
		case <-ctx.Done():
			t.Fatalf("%s's history: %d events of %d came: %q", group, len(out), upto, out)
		}
	}
	return out
}

func dialAs(t *testing.T, url, user string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := edge.Mint([]byte(e2eSecret), user, []string{"room-*"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctx, url, tok, nil)
	if err != nil {
		t.Fatalf("dial %s as %s: %v", url, user, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestReplayGrowPartitions grows a cluster from 8 to 12 group partitions
// by the runbook (docs/operations.md, Growing partitions): a new topic
// generation, the group log copied while the old one runs, more traffic,
// the old one stopped, the tail copied, the state rebuilt with the
// sequencer group's offsets committed at its end. A sequencer and an edge
// of the new generation then give a client resubscribing with since the
// same history with the same seqs, and new messages the next seqs; the
// sequencer did not apply the copied log again.
func TestReplayGrowPartitions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cl := devcluster.StartTest(t, 2, []byte(e2eSecret), func(c *devcluster.Config) { c.Broker.DataDir = dir })
	tr := driveTraffic(t, cl)
	brokers := cl.Broker.Addr()

	conf := t.TempDir()
	write := func(name, yaml string) string {
		p := filepath.Join(conf, name)
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	old := write("causeway.yaml", "topics:\n  groups: causeway.groups\n  group_partitions: 8\n")
	v2 := write("causeway-v2.yaml", `topics:
  groups: causeway.groups.v2
  state: causeway.sequencer-state.v2
  rollup_state: causeway.rollup-state.v2
  deliveries: causeway.deliveries.v2
  group_partitions: 12
sequencer:
  group_id: causeway-sequencer-v2
`)
	layout := pipeline.DefaultLayout()
	layout.GroupTopic, layout.StateTopic, layout.RollupStateTopic, layout.DeliveryTopic = "causeway.groups.v2", "causeway.sequencer-state.v2", "causeway.rollup-state.v2", "causeway.deliveries.v2"
	layout.GroupPartitions = 12
	must := func(args ...string) string {
		t.Helper()
		out, err := runOut(t, args...)
		if err != nil {
			t.Fatalf("causeway %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	// 2. The new generation's topics; 3. the copy while the old one runs.
	must("topics", "create", "--config", v2, "--brokers", brokers, "--replication-factor", "-1")
	cp := filepath.Join(t.TempDir(), "groups.json")
	copyArgs := func() []string {
		return []string{"replay", "--config", v2, "--brokers", brokers, "--into", "groups", "--source-config", old, "--source-brokers", brokers, "--checkpoint", cp}
	}
	out := must(copyArgs()...)
	if !strings.Contains(out, "written to causeway.groups.v2 (12 partitions)") {
		t.Errorf("first copy's output:\n%s", out)
	}

	// More traffic on the old generation: the tail.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice, bob := tr.clients[0], tr.clients[1]
	tail1, err := alice.Send(ctx, "room-1", "tail-1", "before the move")
	if err != nil || tail1 != tr.room1Seq+1 {
		t.Fatalf("tail-1: seq %d, %v; want %d", tail1, err, tr.room1Seq+1)
	}
	last, err := bob.Send(ctx, "room-1", "tail-2", "before the move")
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Read(ctx, "room-1", last); err != nil {
		t.Fatal(err)
	}
	before := history(t, dialAs(t, cl.URL(0), "carol"), "room-1", last)

	// 4. Drain: stop the old generation (the broker keeps its data), copy
	// the tail, rebuild the state, commit the sequencer offsets.
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
	out = must(copyArgs()...)
	t.Logf("tail copy:\n%s", out)
	if !strings.Contains(out, "resuming from checkpoint") || strings.Contains(out, " 0 written to") {
		t.Errorf("tail copy's output:\n%s", out)
	}
	out = must(copyArgs()...)
	if !strings.Contains(out, "read, 0 written to causeway.groups.v2") {
		t.Errorf("a third copy wrote something:\n%s", out)
	}
	out = must("replay", "--config", v2, "--brokers", brokers, "--into", "state", "--write", "--commit-offsets",
		"--checkpoint", filepath.Join(t.TempDir(), "state.json"))
	t.Logf("state rebuild:\n%s", out)
	if !strings.Contains(out, "committed offset") || !strings.Contains(out, "records written to causeway.sequencer-state.v2") {
		t.Errorf("state rebuild's output:\n%s", out)
	}
	must("replay", "--config", v2, "--brokers", brokers, "--into", "state", "--verify")

	// The committed offsets are the ends of the copied log.
	kc, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	adm := kadm.NewClient(kc)
	ends, err := adm.ListEndOffsets(ctx, layout.GroupTopic)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := adm.FetchOffsetsForTopics(ctx, "causeway-sequencer-v2", layout.GroupTopic)
	if err != nil {
		t.Fatal(err)
	}
	var copied int64
	ends.Each(func(o kadm.ListedOffset) {
		copied += o.Offset
		if c, ok := committed.Lookup(layout.GroupTopic, o.Partition); !ok || c.At != o.Offset {
			t.Errorf("partition %d: committed offset %+v, want the end %d", o.Partition, c, o.Offset)
		}
	})

	// Start the new generation.
	reg := prometheus.NewRegistry()
	e := startSequencerAndEdgeOn(t, brokers, layout, "causeway-sequencer-v2", reg)
	url := "ws://" + e.Addr() + "/v1/ws"
	after := history(t, dialAs(t, url, "carol"), "room-1", last)
	t.Logf("room-1's history:\n%s", strings.Join(after, "\n"))
	if !reflect.DeepEqual(before, after) {
		t.Errorf("room-1's history before the move:\n%s\nafter:\n%s", strings.Join(before, "\n"), strings.Join(after, "\n"))
	}
	a := dialAs(t, url, "alice")
	since := last - 1
	sub, err := a.Subscribe(ctx, "room-1", &since)
	if err != nil || sub.Seq != last || !sub.Recovered {
		t.Fatalf("subscribe since %d on the new generation: %+v, %v; want seq %d, recovered", since, sub, err, last)
	}
	if got, err := a.Send(ctx, "room-1", "after-move", "hi"); err != nil || got != last+1 {
		t.Fatalf("send on the new generation: seq %d, %v; want %d", got, err, last+1)
	}
	if again, err := a.Send(ctx, "room-1", "tail-1", "again"); err != nil || again != tail1 {
		t.Fatalf("retried tail-1 on the new generation: seq %d, %v; want the original %d", again, err, tail1)
	}
	if err := a.Join(ctx, "room-9"); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Send(ctx, "room-9", "first", "hi"); err != nil || got != 2 {
		t.Fatalf("a new group on the new generation: seq %d, %v; want 2 (after the join)", got, err)
	}

	// The sequencer applied only what came after the copy: far fewer
	// records than the copied log holds.
	now, err := adm.ListEndOffsets(ctx, layout.GroupTopic)
	if err != nil {
		t.Fatal(err)
	}
	var newer int64
	now.Each(func(o kadm.ListedOffset) {
		end, _ := ends.Lookup(layout.GroupTopic, o.Partition)
		newer += o.Offset - end.Offset
	})
	applied := counterValue(t, reg, "causeway_sequencer_records_total")
	if applied > float64(newer) || copied < 50 {
		t.Errorf("the new sequencer applied %v records; %d were written after the copy of %d", applied, newer, copied)
	}
}

// counterValue reads a counter from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var v float64
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
			return v
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
