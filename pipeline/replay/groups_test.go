package replay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/causeway/causeway/pipeline"
	"github.com/causeway/causeway/pipeline/devcluster"
	"github.com/causeway/causeway/pipeline/replay"
	"github.com/causeway/causeway/schemas"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
)

// v2 is a new topic generation with partitions group partitions.
func v2(partitions int32) pipeline.Layout {
	l := pipeline.DefaultLayout()
	l.GroupTopic, l.StateTopic, l.RollupStateTopic, l.DeliveryTopic = "causeway.groups.v2", "causeway.sequencer-state.v2", "causeway.rollup-state.v2", "causeway.deliveries.v2"
	l.GroupPartitions = partitions
	return l
}

// readAll reads every committed record of topic, in offset order per
// partition. The topic is not written to any more; a read_committed
// consumer never sees the transaction markers that end it, so the read
// ends after a quiet second.
func readAll(t *testing.T, brokers, topic string) map[int32][]*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200*time.Millisecond),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := map[int32][]*kgo.Record{}
	for quiet := 0; quiet < 2; {
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollFetches(pctx)
		pcancel()
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %s: %v", topic, err)
		}
		quiet++
		fs.EachRecord(func(r *kgo.Record) {
			out[r.Partition] = append(out[r.Partition], r)
			quiet = 0
		})
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestGroupsCopy copies the group log of a cluster that ran traffic (8
// partitions) into a 12-partition generation: a transaction left open by
// a crashed copier is aborted, a run interrupted after three transactions
// resumes, and a third run copies nothing. Every keyed record is in its
// group's new partition exactly once, in its order; every heartbeat of
// the source partitions below gcd(8, 12) = 4 in the partitions they feed.
func TestGroupsCopy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cl := devcluster.StartTest(t, 2, secret, func(c *devcluster.Config) { c.Broker.DataDir = dir })
	traffic(t, cl)
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	// The same log, no longer written to.
	b, err := pipeline.NewBroker(pipeline.BrokerConfig{Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	kc := pipeline.KafkaConfig{Brokers: []string{b.Addr()}, ClientID: "replay-test"}
	src, dst := pipeline.DefaultLayout(), v2(12)
	admc, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer admc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := pipeline.EnsureTopics(ctx, kadm.NewClient(admc), dst); err != nil {
		t.Fatal(err)
	}

	// A copier that died in a transaction: its record must never show.
	dead, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.TransactionalID("causeway-replay-groups-"+dst.GroupTopic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	if err := dead.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := dead.ProduceSync(ctx, &kgo.Record{Topic: dst.GroupTopic, Partition: 3, Key: []byte("ghost"), Value: []byte("never copied")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	cp := filepath.Join(t.TempDir(), "groups.json")
	opts := func() replay.GroupsOptions {
		return replay.GroupsOptions{Common: replay.Common{Kafka: kc, Layout: dst, Checkpoint: cp}, SourceKafka: kc, SourceLayout: src, TxnRecords: 7}
	}
	ictx, icancel := context.WithCancel(ctx)
	o := opts()
	txns := 0
	o.OnTransaction = func(int) {
		if txns++; txns == 3 {
			icancel()
		}
	}
	first, err := replay.Groups(ictx, o)
	icancel()
	if !errors.Is(err, context.Canceled) || first.Written == 0 {
		t.Fatalf("interrupted copy: %v, %d written; want context.Canceled after 3 transactions", err, first.Written)
	}
	var out bytes.Buffer
	o = opts()
	prog := &countProgress{}
	o.Out, o.Progress = &out, prog
	rest, err := replay.Groups(ctx, o)
	if err != nil {
		t.Fatalf("resumed copy: %v\n%s", err, out.String())
	}
	// Offsets, with transaction markers: at least the records read.
	if prog.total < int64(rest.Read) || prog.done != prog.total {
		t.Errorf("progress counted %d of %d offsets; %d records were read", prog.done, prog.total, rest.Read)
	}
	// The checkpoint knew everything the first run copied.
	if rest.AlreadyCopied != 0 || rest.Written == 0 || !strings.Contains(out.String(), "resuming from checkpoint") {
		t.Errorf("resumed copy found %d records copied beyond its checkpoint and wrote %d\n%s", rest.AlreadyCopied, rest.Written, out.String())
	}

	source := readAll(t, b.Addr(), src.GroupTopic)
	copied := readAll(t, b.Addr(), dst.GroupTopic)
	// Expected: where each source record must be.
	type origin struct {
		p   int32
		off int64
	}
	want := map[origin][]int32{}
	groups := map[string]bool{}
	for p, recs := range source {
		for _, r := range recs {
			o := origin{p, r.Offset}
			if len(r.Key) > 0 {
				want[o] = []int32{pipeline.PartitionFor(string(r.Key), 12)}
				groups[string(r.Key)] = true
				continue
			}
			var ev pb.GroupEvent
			if proto.Unmarshal(r.Value, &ev) == nil && ev.GetHeartbeat() != nil && p < 4 {
				want[o] = []int32{p, p + 4, p + 8}
			}
		}
	}
	seen := map[origin][]int32{}
	for q, recs := range copied {
		last := map[int32]int64{} // per source partition: copies keep its order
		for _, r := range recs {
			h := strings.Split(header(r, replay.CopiedFromHeader), "/")
			if len(h) != 3 || h[0] != src.GroupTopic {
				t.Fatalf("%s/%d offset %d: header %q", dst.GroupTopic, q, r.Offset, header(r, replay.CopiedFromHeader))
			}
			p, _ := strconv.Atoi(h[1])
			off, _ := strconv.ParseInt(h[2], 10, 64)
			o := origin{int32(p), off}
			if prev, ok := last[o.p]; ok && off <= prev {
				t.Errorf("partition %d: source %d offset %d copied after offset %d", q, p, off, prev)
			}
			last[o.p] = off
			seen[o] = append(seen[o], q)
			s := source[o.p][0]
			for _, sr := range source[o.p] {
				if sr.Offset == off {
					s = sr
				}
			}
			if s.Offset != off || !bytes.Equal(s.Value, r.Value) || !bytes.Equal(s.Key, r.Key) || !s.Timestamp.Equal(r.Timestamp) {
				t.Errorf("partition %d offset %d is not a copy of source %d offset %d", q, r.Offset, p, off)
			}
		}
	}
	for o, qs := range want {
		slices.Sort(seen[o])
		if fmt.Sprint(seen[o]) != fmt.Sprint(qs) {
			t.Errorf("source partition %d offset %d: copied to %v, want %v", o.p, o.off, seen[o], qs)
		}
	}
	for o, qs := range seen {
		if _, ok := want[o]; !ok {
			t.Errorf("source partition %d offset %d copied to %v, want nowhere", o.p, o.off, qs)
		}
	}
	if len(groups) < 10 || len(want) == 0 {
		t.Fatalf("the source has %d groups and %d records to copy: traffic missing", len(groups), len(want))
	}
	written := 0
	for _, recs := range copied {
		written += len(recs)
	}
	if written != first.Written+rest.Written {
		t.Errorf("the destination has %d records, the runs wrote %d+%d", written, first.Written, rest.Written)
	}

	// Again, without the checkpoint: everything is found copied.
	o = opts()
	o.Checkpoint = ""
	again, err := replay.Groups(ctx, o)
	if err != nil || again.Written != 0 || again.AlreadyCopied != written {
		t.Errorf("third copy: %v, %d written, %d found copied; want 0 and %d", err, again.Written, again.AlreadyCopied, written)
	}
}

// TestGroupsRefuses: a copy refuses a checkpoint that does not match the
// destination, a destination with records it did not write, a truncated
// source (unless allowed), and copying a topic into itself.
func TestGroupsRefuses(t *testing.T) {
	t.Parallel()
	b, err := pipeline.NewBroker(pipeline.BrokerConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kc := pipeline.KafkaConfig{Brokers: []string{b.Addr()}, ClientID: "replay-test"}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	src, dst := pipeline.DefaultLayout(), v2(16)
	for _, l := range []pipeline.Layout{src, dst} {
		if err := pipeline.EnsureTopics(ctx, adm, l); err != nil {
			t.Fatal(err)
		}
	}
	var recs []*kgo.Record
	for i := range 20 {
		g := fmt.Sprintf("room-%d", i%4)
		v, _ := proto.Marshal(&pb.GroupEvent{Version: schemas.Version, Group: g, User: "u", TsMs: int64(i), Kind: &pb.GroupEvent_Join{Join: &pb.Join{}}})
		recs = append(recs, &kgo.Record{Topic: src.GroupTopic, Partition: pipeline.PartitionFor(g, 8), Key: []byte(g), Value: v})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	o := replay.GroupsOptions{Common: replay.Common{Kafka: kc, Layout: dst}, SourceKafka: kc, SourceLayout: src}
	withCheckpoint := o
	withCheckpoint.Checkpoint = filepath.Join(t.TempDir(), "groups.json")
	rep, err := replay.Groups(ctx, withCheckpoint)
	if err != nil || rep.Written != 20 {
		t.Fatalf("copy: %v, %d written, want 20", err, rep.Written)
	}

	// The destination recreated: its checkpoint no longer says what it
	// holds; without one, the copy starts again.
	if _, err := adm.DeleteTopic(ctx, dst.GroupTopic); err != nil {
		t.Fatal(err)
	}
	for err := pipeline.EnsureTopics(ctx, adm, dst); err != nil; err = pipeline.EnsureTopics(ctx, adm, dst) {
		if ctx.Err() != nil {
			t.Fatalf("recreate %s: %v", dst.GroupTopic, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := replay.Groups(ctx, withCheckpoint); !errors.Is(err, replay.ErrCheckpoint) || !strings.Contains(err.Error(), "was the topic recreated?") {
		t.Errorf("copy with the checkpoint of a recreated destination: %v, want ErrCheckpoint", err)
	}
	if rep, err := replay.Groups(ctx, o); err != nil || rep.Written != 20 || rep.AlreadyCopied != 0 {
		t.Fatalf("copy into the recreated destination: %v, %d written, %d found; want 20 and 0", err, rep.Written, rep.AlreadyCopied)
	}

	same := o
	same.SourceLayout = dst
	if _, err := replay.Groups(ctx, same); err == nil || !strings.Contains(err.Error(), "the source and the destination are the same topic") {
		t.Errorf("a copy into itself: %v", err)
	}

	// Truncation of the source.
	p := pipeline.PartitionFor("room-0", 8)
	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: src.GroupTopic, Partition: p, At: 1})
	if resp, err := adm.DeleteRecords(ctx, del); err != nil || resp.Error() != nil {
		t.Fatalf("delete records: %v %v", err, resp.Error())
	}
	if _, err := replay.Groups(ctx, o); !errors.Is(err, replay.ErrTruncatedLog) || !strings.Contains(err.Error(), fmt.Sprintf("partition %d starts at offset 1", p)) {
		t.Errorf("copy of a truncated log: %v, want ErrTruncatedLog", err)
	}
	o.AllowTruncatedLog = true
	if rep, err := replay.Groups(ctx, o); err != nil || rep.Written != 0 || rep.AlreadyCopied != 20 {
		t.Errorf("copy of a truncated log, allowed: %v, %d written, %d found; want 0 and 20", err, rep.Written, rep.AlreadyCopied)
	}

	// Something else wrote into the new generation.
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: dst.GroupTopic, Partition: 5, Key: []byte("room-x"), Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if _, err := replay.Groups(ctx, o); !errors.Is(err, replay.ErrForeignRecords) || !strings.Contains(err.Error(), dst.GroupTopic+"/5 offset") {
		t.Errorf("copy into a topic with foreign records: %v, want ErrForeignRecords naming the record", err)
	}
}
