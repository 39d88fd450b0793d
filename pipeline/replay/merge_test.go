package replay

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/causeway/causeway/pipeline"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestMergerOrder merges three partitions whose records interleave in
// time (partition 2 holds many records, all later than the others', so
// its queue fills and it is paused and resumed), with an aborted
// transaction in partition 1: the merge is in timestamp order, ties go to
// the lower partition, and nothing is lost or repeated.
func TestMergerOrder(t *testing.T) {
	t.Parallel()
	b, err := pipeline.NewBroker(pipeline.BrokerConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const topic = "m"
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	base := time.UnixMilli(1_700_000_000_000)
	rec := func(p int32, ms int64) *kgo.Record {
		return &kgo.Record{Partition: p, Timestamp: base.Add(time.Duration(ms) * time.Millisecond), Value: fmt.Appendf(nil, "%d@%d", p, ms)}
	}
	var recs []*kgo.Record
	for i := range int64(10) {
		recs = append(recs, rec(0, 3*i), rec(1, 3*i+1))
	}
	recs = append(recs, rec(0, 30), rec(1, 30)) // a tie
	for i := range int64(20) {
		recs = append(recs, rec(2, 100+i))
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	txn, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic(topic), kgo.TransactionalID("m"))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txn.ProduceSync(ctx, rec(1, 50)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := txn.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, rec(1, 60)).FirstErr(); err != nil {
		t.Fatal(err)
	}

	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	spans := map[int32]span{}
	ends.Each(func(o kadm.ListedOffset) { spans[o.Partition] = span{0, o.Offset} })
	rd, err := newReader(pipeline.KafkaConfig{Brokers: []string{b.Addr()}}, topic, spans, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	m := newMerger(rd, nopProgress{})
	m.limit = 2
	var got []string
	for {
		r, err := m.next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r == nil {
			break
		}
		got = append(got, string(r.Value))
	}
	var want []string
	for i := range 10 {
		want = append(want, fmt.Sprintf("0@%d", 3*i), fmt.Sprintf("1@%d", 3*i+1))
	}
	want = append(want, "0@30", "1@30", "1@60")
	for i := range 20 {
		want = append(want, fmt.Sprintf("2@%d", 100+i))
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("merged:\n%q\nwant:\n%q", got, want)
	}
}

// TestHeartbeatRoutes: every destination partition gets heartbeats from
// exactly one source partition, and from one its groups come from.
func TestHeartbeatRoutes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n, m int32
		want map[int32][]int32
	}{
		{8, 16, map[int32][]int32{0: {0, 8}, 1: {1, 9}, 2: {2, 10}, 3: {3, 11}, 4: {4, 12}, 5: {5, 13}, 6: {6, 14}, 7: {7, 15}}},
		{8, 12, map[int32][]int32{0: {0, 4, 8}, 1: {1, 5, 9}, 2: {2, 6, 10}, 3: {3, 7, 11}}},
		{8, 8, map[int32][]int32{0: {0}, 1: {1}, 2: {2}, 3: {3}, 4: {4}, 5: {5}, 6: {6}, 7: {7}}},
		{3, 5, map[int32][]int32{0: {0, 1, 2, 3, 4}}},
		{12, 8, map[int32][]int32{0: {0, 4}, 1: {1, 5}, 2: {2, 6}, 3: {3, 7}}},
	} {
		got := heartbeatRoutes(tc.n, tc.m)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%d -> %d partitions: %v, want %v", tc.n, tc.m, got, tc.want)
		}
		// The rule behind it: a group's partitions p (of n) and q (of
		// m) agree modulo gcd(n, m), and heartbeats of q come from a p
		// that feeds it.
		for g := range 2000 {
			key := fmt.Sprintf("room-%d", g)
			p, q := pipeline.PartitionFor(key, tc.n), pipeline.PartitionFor(key, tc.m)
			if p%gcd(tc.n, tc.m) != q%gcd(tc.n, tc.m) {
				t.Fatalf("%s: partition %d of %d and %d of %d differ modulo %d", key, p, tc.n, q, tc.m, gcd(tc.n, tc.m))
			}
		}
	}
}
