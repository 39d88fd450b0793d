package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/causeway/causeway/consumers/rollup"
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

// startRollup runs a rollup with the dev cluster's configuration on
// brokers until stop is called (or the test ends).
func startRollup(t *testing.T, brokers string) (stop func()) {
	t.Helper()
	rc := devcluster.DefaultConfig(1, []byte(e2eSecret)).Rollup
	rc.Kafka = pipeline.KafkaConfig{Brokers: []string{brokers}, ClientID: "replay-test-rollup"}
	rc.Registerer = prometheus.NewRegistry()
	rc.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ru, err := rollup.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ru.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("rollup: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// receiptCounts reads c's events until the receipts summaries of group
// have given every seq of want its count, and returns the summaries in
// the order they came (each as seq -> count).
func receiptCounts(t *testing.T, c *client.Client, group string, want map[uint64]uint64) []map[uint64]uint64 {
	t.Helper()
	var seen []map[uint64]uint64
	latest := map[uint64]uint64{}
	deadline := time.After(20 * time.Second)
	for {
		done := true
		for seq, n := range want {
			done = done && latest[seq] == n
		}
		if done {
			return seen
		}
		select {
		case f := <-c.Events():
			if f.Type != "receipts" || f.Group != group {
				continue
			}
			var r struct{ Reads []struct{ Seq, Count uint64 } }
			if err := json.Unmarshal(f.Raw, &r); err != nil {
				t.Fatalf("receipts frame %s: %v", f.Raw, err)
			}
			sum := map[uint64]uint64{}
			for _, x := range r.Reads {
				sum[x.Seq], latest[x.Seq] = x.Count, x.Count
			}
			seen = append(seen, sum)
		case <-deadline:
			t.Fatalf("receipts of %s: got %v (summaries %v), want counts %v", group, latest, seen, want)
		}
	}
}

// drainEvents drops the events c has received so far.
func drainEvents(c *client.Client) {
	for {
		select {
		case <-c.Events():
		default:
			return
		}
	}
}

// rollupMessageKey is a message's key in the rollup changelog.
func rollupMessageKey(group string, seq uint64) string {
	return fmt.Sprintf("%s\x00x\x00%020d", group, seq)
}

// putRollupState writes m under key into partition p of the rollup state
// topic, as another writer would.
func putRollupState(t *testing.T, brokers string, p int32, key string, m proto.Message) {
	t.Helper()
	v, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	rec := &kgo.Record{Topic: pipeline.DefaultLayout().RollupStateTopic, Partition: p, Key: []byte(key), Value: v}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err == nil {
		err = cl.ProduceSync(context.Background(), rec).FirstErr()
		cl.Close()
	}
	if err != nil {
		t.Fatalf("write %q into the rollup state topic: %v", key, err)
	}
}

// recreateRollupStateTopic deletes the rollup state topic and creates it
// again, empty: recreateStateTopic on a layout with the two changelogs'
// names swapped (both are compacted and have the group partitions).
func recreateRollupStateTopic(t *testing.T, brokers string) {
	t.Helper()
	l := pipeline.DefaultLayout()
	l.StateTopic, l.RollupStateTopic = l.RollupStateTopic, l.StateTopic
	recreateStateTopic(t, brokers, l)
}

// rollupTraffic starts a dev cluster with a rollup of its own, drives
// driveTraffic through it, waits until the rollup applied every read
// (room-1: joins 1-3, alice's a1 4 and a2 5, bob's b1 6; bob read to 6,
// carol to 4: the summaries reaching alice prove it applied and
// committed them) and stops the rollup.
func rollupTraffic(t *testing.T) (*devcluster.Cluster, replayTraffic) {
	t.Helper()
	// The cluster's own rollup is off: this one is stopped and started.
	cl := devcluster.StartTest(t, 2, []byte(e2eSecret), func(c *devcluster.Config) { c.Rollup.GroupID = "" })
	stop := startRollup(t, cl.Broker.Addr())
	tr := driveTraffic(t, cl)
	receiptCounts(t, tr.clients[0], "room-1", map[uint64]uint64{4: 2, 5: 1})
	stop()
	return cl, tr
}

// deleteRollupOffsets deletes the rollup group's committed offsets, as
// kafka-consumer-groups.sh --delete-offsets does.
func deleteRollupOffsets(t *testing.T, brokers string) {
	t.Helper()
	kc, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	l := pipeline.DefaultLayout()
	all := kadm.TopicsSet{}
	for p := range l.GroupPartitions {
		all.Add(l.StateTopic, p)
	}
	del, err := kadm.NewClient(kc).DeleteOffsets(context.Background(), "causeway-rollup", all)
	if err == nil {
		err = del.Error()
	}
	if err != nil {
		t.Fatalf("delete the rollup group's offsets: %v", err)
	}
}

// TestReplayRollupState rebuilds the rollup's state of a cluster with
// reads from its group log: it matches the live rollup state topic (a
// difference in what the comparison ignores passes, a different count
// fails with the difference printed); the rollup state topic deleted and
// written back by --write, a rollup started on it counts the next read on
// top of the old counts; the same again with the rollup group's offsets
// deleted too, through --commit-offsets.
func TestReplayRollupState(t *testing.T) {
	t.Parallel()
	cl, tr := rollupTraffic(t)
	brokers := cl.Broker.Addr()
	alice, carol := tr.clients[0], tr.clients[2]
	l := pipeline.DefaultLayout()
	room1 := pipeline.PartitionFor("room-1", l.GroupPartitions)

	out, err := runOut(t, "replay", "--brokers", brokers, "--into", "rollup-state", "--verify", "--progress=false")
	if err != nil {
		t.Fatalf("replay --into rollup-state --verify of the live topic: %v\n%s", err, out)
	}
	for _, want := range []string{
		fmt.Sprintf("partition %d: group log offsets 0-", room1), "to the committed offset of causeway-sequencer",
		"causeway-rollup resumes at offset", "causeway.rollup-state has", "identical",
		"replay --into rollup-state: 8 partitions", "verified: causeway.rollup-state matches the rebuilt state",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("replay --verify output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "difference") {
		t.Errorf("differences in the live rollup state:\n%s", out)
	}

	// What the comparison ignores: the pending mark, read times and
	// time-to-read samples (wall clock and coalesced reads).
	msg4 := readRollupMessage(t, brokers, room1, rollupMessageKey("room-1", 4))
	if msg4.GetReadCount() != 2 {
		t.Fatalf("the live rollup counted message 4 read by %d, want 2", msg4.GetReadCount())
	}
	ignored := proto.Clone(msg4).(*pb.RollupMessage)
	ignored.Pending, ignored.FirstReadTsMs, ignored.LastReadTsMs, ignored.TtrMs = !ignored.Pending, 1, 2, []int64{3}
	putRollupState(t, brokers, room1, rollupMessageKey("room-1", 4), ignored)
	if out, err := runOut(t, "replay", "--brokers", brokers, "--into", "rollup-state", "--verify", "--partition", strconv.Itoa(int(room1))); err != nil {
		t.Fatalf("replay --verify with only ignored fields changed: %v\n%s", err, out)
	}
	// A count that is wrong is a difference.
	wrong := proto.Clone(msg4).(*pb.RollupMessage)
	wrong.ReadCount = 7
	putRollupState(t, brokers, room1, rollupMessageKey("room-1", 4), wrong)
	out, err = runOut(t, "replay", "--brokers", brokers, "--into", "rollup-state", "--verify")
	if !errors.Is(err, replay.ErrMismatch) {
		t.Fatalf("replay --verify of a corrupted rollup state: %v, want ErrMismatch\n%s", err, out)
	}
	for _, want := range []string{
		fmt.Sprintf(`partition %d: "room-1" message "00000000000000000004": different (key "room-1\x00x\x0000000000000000000004")`, room1),
		`    state topic: RollupMessage {"version":1,"seq":"4","sender":"alice",`,
		`"readCount":7`,
		`"readCount":2`,
		"1 difference (0 missing, 1 different, 0 extra)",
		"verify FAILED: 1 difference in 1 partition",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("replay --verify output lacks %q:\n%s", want, out)
		}
	}

	// Lose the rollup state topic; its group's offsets stay.
	recreateRollupStateTopic(t, brokers)
	out, err = runOut(t, "replay", "--brokers", brokers, "--into", "rollup-state", "--verify")
	if !errors.Is(err, replay.ErrMismatch) || !strings.Contains(out, `"room-1" member "bob": missing from the state topic`) || strings.Contains(out, "only in the state topic") {
		t.Fatalf("replay --verify of an empty rollup state topic: %v, want only missing keys\n%s", err, out)
	}
	cp := filepath.Join(t.TempDir(), "rollup.json")
	out, err = runOut(t, "replay", "--brokers", brokers, "--into", "rollup-state", "--write", "--checkpoint", cp)
	if err != nil || !strings.Contains(out, "records written to causeway.rollup-state") {
		t.Fatalf("replay --into rollup-state --write: %v\n%s", err, out)
	}
	if out, err = runOut(t, "replay", "--brokers", brokers, "--into", "rollup-state", "--verify", "--max-diffs", "0"); err != nil {
		t.Fatalf("replay --verify after --write: %v\n%s", err, out)
	}
	out, err = runOut(t, "replay", "--brokers", brokers, "--into", "rollup-state", "--write", "--checkpoint", cp)
	if err != nil || !strings.Contains(out, "resuming from checkpoint "+cp+": 8 of 8 partitions done") {
		t.Fatalf("replay --write again with its checkpoint: %v\n%s", err, out)
	}
	out, err = runOut(t, "replay", "--brokers", brokers, "--into", "rollup-state", "--write")
	if !errors.Is(err, replay.ErrNotEmpty) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("replay --write into a written rollup state topic: %v, want ErrNotEmpty\n%s", err, out)
	}
	out, err = runOut(t, "replay", "--brokers", brokers, "--into", "rollup-state", "--write", "--force", "--verify")
	if err != nil || strings.Contains(out, "wrote") {
		t.Fatalf("replay --write --force --verify of an equal topic wrote something or failed: %v\n%s", err, out)
	}

	// A rollup on the rebuilt state counts carol's next read on top: 5
	// goes from 1 to 2, and nothing else is owed (a rollup that started
	// from nothing would count carol's whole watermark again, 4 and 5 at
	// 1, and one that owed everything would send 4 again).
	stopRollup := startRollup(t, brokers)
	drainEvents(alice)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := carol.Read(ctx, "room-1", 5); err != nil {
		t.Fatal(err)
	}
	if got := receiptCounts(t, alice, "room-1", map[uint64]uint64{5: 2}); !reflect.DeepEqual(got[0], map[uint64]uint64{5: 2}) {
		t.Errorf("first summary after the rebuild: %v, want only 5 read by 2", got)
	}
	// A rebuild never writes while rollups run.
	if out, err := runOut(t, "replay", "--brokers", brokers, "--into", "rollup-state", "--write", "--force"); !errors.Is(err, replay.ErrRollupsRunning) {
		t.Fatalf("replay --write with a running rollup: %v, want ErrRollupsRunning\n%s", err, out)
	}
	stopRollup()

	// Lose the topic and the group's offsets: --write refuses without
	// --commit-offsets, which commits the sequencer state topic's end.
	deleteRollupOffsets(t, brokers)
	recreateRollupStateTopic(t, brokers)
	out, err = runOut(t, "replay", "--brokers", brokers, "--into", "rollup-state", "--write")
	if !errors.Is(err, replay.ErrNoCommittedOffset) || !strings.Contains(err.Error(), "--commit-offsets") {
		t.Fatalf("replay --write without the rollup group's offsets: %v, want ErrNoCommittedOffset\n%s", err, out)
	}
	out, err = runOut(t, "replay", "--brokers", brokers, "--into", "rollup-state", "--write", "--commit-offsets", "--verify")
	if err != nil || !strings.Contains(out, "for causeway-rollup; causeway.rollup-state has") {
		t.Fatalf("replay --write --commit-offsets: %v\n%s", err, out)
	}
	kc, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	adm := kadm.NewClient(kc)
	ends, err := adm.ListCommittedOffsets(ctx, l.StateTopic)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := adm.FetchOffsets(ctx, "causeway-rollup")
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(l.StateTopic, room1)
	at, ok := committed.Lookup(l.StateTopic, room1)
	if !ok || at.At != end.Offset || !strings.Contains(out, fmt.Sprintf("committed offset %d of causeway.sequencer-state for causeway-rollup", end.Offset)) {
		t.Errorf("the rollup group's offset in partition %d: %+v (found %t), want the sequencer state topic's end %d\n%s", room1, at, ok, end.Offset, out)
	}
	startRollup(t, brokers)
	drainEvents(alice)
	if err := carol.Read(ctx, "room-1", 6); err != nil {
		t.Fatal(err)
	}
	if got := receiptCounts(t, alice, "room-1", map[uint64]uint64{6: 1}); !reflect.DeepEqual(got[0], map[uint64]uint64{6: 1}) {
		t.Errorf("first summary after the rebuild with committed offsets: %v, want only 6 read by 1", got)
	}
}

// TestReplayRollupStateLag: the rollup is stopped while the sequencers
// go on, so its committed offset is behind records that the rebuild
// has. --verify compares with the state the rollup reaches once it
// applied them; --write refuses, as dave read and left among them and
// applying them again on the rebuild would count his read twice, until
// the group's offsets are deleted and --commit-offsets commits the end.
func TestReplayRollupStateLag(t *testing.T) {
	t.Parallel()
	cl, tr := rollupTraffic(t)
	brokers := cl.Broker.Addr()
	alice, bob, carol := tr.clients[0], tr.clients[1], tr.clients[2]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dave := dialAs(t, cl.URL(1), "dave")
	if err := dave.Join(ctx, "room-1"); err != nil { // seq 7
		t.Fatal(err)
	}
	seq, err := alice.Send(ctx, "room-1", "a3", "while the rollup is away")
	if err != nil || seq != 8 {
		t.Fatalf("send: seq %d, %v; want 8", seq, err)
	}
	for _, c := range []*client.Client{dave, carol} {
		if err := c.Read(ctx, "room-1", seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := dave.Leave(ctx, "room-1"); err != nil {
		t.Fatal(err)
	}

	out, err := runOut(t, "replay", "--brokers", brokers, "--into", "rollup-state", "--verify")
	if err != nil || !strings.Contains(out, "to apply up to offset") || !strings.Contains(out, "compared as applied); causeway.rollup-state has") {
		t.Fatalf("replay --verify of a rollup behind: %v\n%s", err, out)
	}
	recreateRollupStateTopic(t, brokers)
	out, err = runOut(t, "replay", "--brokers", brokers, "--into", "rollup-state", "--write")
	if !errors.Is(err, replay.ErrRollupBehind) || !strings.Contains(err.Error(), `would change 1 key of the rebuild (e.g. "room-1" message "00000000000000000008")`) ||
		!strings.Contains(err.Error(), "--delete-offsets") {
		t.Fatalf("replay --write behind dave's read and leave: %v, want ErrRollupBehind\n%s", err, out)
	}
	deleteRollupOffsets(t, brokers)
	if out, err := runOut(t, "replay", "--brokers", brokers, "--into", "rollup-state", "--write", "--force", "--commit-offsets", "--verify"); err != nil {
		t.Fatalf("replay --write --commit-offsets: %v\n%s", err, out)
	}
	// While the rollup was away carol read 5, 6 and 8, dave 8: no summary
	// carried those counts, so they are owed, each read counted once;
	// bob's read of 8 makes 3 (4 if dave's read were counted again).
	startRollup(t, brokers)
	drainEvents(alice)
	if err := bob.Read(ctx, "room-1", seq); err != nil {
		t.Fatal(err)
	}
	want := map[uint64]uint64{5: 2, 6: 1, 8: 3}
	if got := receiptCounts(t, alice, "room-1", want); !reflect.DeepEqual(got[0], want) {
		t.Errorf("first summary after the rebuild: %v, want %v", got, want)
	}
}

// readRollupMessage returns the rollup state topic's value of a message
// key, read as the rollup restores it.
func readRollupMessage(t *testing.T, brokers string, p int32, key string) *pb.RollupMessage {
	t.Helper()
	var got []byte
	_, err := pipeline.ReadChangelog(context.Background(), pipeline.KafkaConfig{Brokers: []string{brokers}, ClientID: "replay-test"},
		pipeline.DefaultLayout().RollupStateTopic, p, func(k, v []byte) {
			if string(k) == key {
				got = v
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	if got == nil {
		t.Fatalf("the rollup state topic has no %q", key)
	}
	m := new(pb.RollupMessage)
	if err := proto.Unmarshal(got, m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestReplayRollupStateRefuses: --into rollup-state refuses a layout the
// cluster does not have and a truncated group log (rebuilding what is
// left with --allow-truncated-log), and its flags are checked.
func TestReplayRollupStateRefuses(t *testing.T) {
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

	fewer := filepath.Join(t.TempDir(), "fewer.yaml")
	if err := os.WriteFile(fewer, []byte("topics:\n  group_partitions: 4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runOut(t, "replay", "--brokers", b.Addr(), "--config", fewer, "--into", "rollup-state", "--verify")
	if !errors.Is(err, pipeline.ErrLayoutMismatch) || !strings.Contains(err.Error(), "replay refuses to run") {
		t.Fatalf("rollup-state on another layout: %v, want ErrLayoutMismatch\n%s", err, out)
	}

	// room-1: three joins and alice's message, which bob read.
	p := pipeline.PartitionFor("room-1", 8)
	ev := func(user string, e *pb.GroupEvent) *kgo.Record {
		e.Version, e.Group, e.User, e.TsMs = schemas.Version, "room-1", user, time.Now().UnixMilli()
		v, _ := proto.Marshal(e)
		return &kgo.Record{Topic: "causeway.groups", Partition: p, Key: []byte("room-1"), Value: v}
	}
	recs := []*kgo.Record{
		ev("alice", &pb.GroupEvent{Kind: &pb.GroupEvent_Join{Join: &pb.Join{}}}),
		ev("bob", &pb.GroupEvent{Kind: &pb.GroupEvent_Join{Join: &pb.Join{}}}),
		ev("alice", &pb.GroupEvent{Kind: &pb.GroupEvent_Send{Send: &pb.Send{ClientMsgId: "m1", Body: []byte(`"hi"`)}}}),
		ev("bob", &pb.GroupEvent{Kind: &pb.GroupEvent_Read{Read: &pb.Read{Seq: 3}}}),
	}
	if err := kc.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// No sequencer ever ran: rebuilt to the log's end. Members alice and
	// bob, message 3 read once.
	out, err = runOut(t, "replay", "--brokers", b.Addr(), "--into", "rollup-state", "--partition", strconv.Itoa(int(p)))
	if err != nil || !strings.Contains(out, "4 records, 3 keys rebuilt") || !strings.Contains(out, "the log's stable end") ||
		!strings.Contains(out, "causeway-rollup has no committed offset in causeway.sequencer-state") {
		t.Fatalf("rollup-state rebuild of 4 records: %v\n%s", err, out)
	}
	// --write without the groups' offsets: the rollups' first, then,
	// with --commit-offsets, the sequencers'.
	out, err = runOut(t, "replay", "--brokers", b.Addr(), "--into", "rollup-state", "--write")
	if !errors.Is(err, replay.ErrNoCommittedOffset) || !strings.Contains(err.Error(), "rollup group causeway-rollup") {
		t.Fatalf("--write without the rollup group's offsets: %v, want ErrNoCommittedOffset\n%s", err, out)
	}
	out, err = runOut(t, "replay", "--brokers", b.Addr(), "--into", "rollup-state", "--write", "--commit-offsets")
	if !errors.Is(err, replay.ErrNoCommittedOffset) || !strings.Contains(err.Error(), "sequencer group causeway-sequencer") {
		t.Fatalf("--write --commit-offsets without the sequencer group's offsets: %v, want ErrNoCommittedOffset\n%s", err, out)
	}

	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: "causeway.groups", Partition: p, At: 1})
	if resp, err := adm.DeleteRecords(ctx, del); err != nil || resp.Error() != nil {
		t.Fatalf("delete records: %v %v", err, resp.Error())
	}
	out, err = runOut(t, "replay", "--brokers", b.Addr(), "--into", "rollup-state", "--verify")
	if !errors.Is(err, replay.ErrTruncatedLog) || !strings.Contains(err.Error(), fmt.Sprintf("partition %d starts at offset 1", p)) {
		t.Fatalf("rollup-state of a truncated log: %v, want ErrTruncatedLog\n%s", err, out)
	}
	// What is left: bob's join, the message (sent by a non-member, so
	// refused) and a read of a seq that does not exist: bob only.
	out, err = runOut(t, "replay", "--brokers", b.Addr(), "--into", "rollup-state", "--allow-truncated-log", "--partition", strconv.Itoa(int(p)))
	if err != nil || !strings.Contains(out, "warning: causeway.groups: partition") || !strings.Contains(out, "3 records") {
		t.Fatalf("rollup-state --allow-truncated-log: %v\n%s", err, out)
	}

	for args, want := range map[string]string{
		"replay --into rollup-state --from 5":                "--from applies to --into clickhouse, not --into rollup-state",
		"replay --into rollup-state --source state":          "--source applies to --into clickhouse, not --into rollup-state",
		"replay --into clickhouse --verify":                  "--verify applies to --into state, not --into clickhouse (also to --into rollup-state)",
		"replay --into groups --partition 1":                 "--partition applies to --into state or clickhouse, not --into groups (also to --into rollup-state)",
		"replay --into rollup-state --force":                 "--force only applies with --write",
		"replay --into rollup-state --commit-offsets":        "--commit-offsets only applies with --write",
		"replay --into rollup-state --verify --max-diffs -1": "--max-diffs -1",
		"replay --into rollup-state --partition 8":           "partition 8: the layout has partitions 0 to 7",
		"replay --into nothing":                              `want state, clickhouse or groups (or rollup-state)`,
	} {
		_, err := runOut(t, strings.Fields(args)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("causeway %s: %v, want an error with %q", args, err, want)
		}
	}
}
