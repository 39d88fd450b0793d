package sequencer_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/causeway/causeway/consumers/sequencer"
	"github.com/causeway/causeway/pipeline"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
)

type harness struct {
	t      *testing.T
	broker *pipeline.Broker
	layout pipeline.Layout
	kafka  pipeline.KafkaConfig
	prod   *kgo.Client
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	b, err := pipeline.NewBroker(pipeline.BrokerConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	h := &harness{t: t, broker: b, layout: pipeline.DefaultLayout(), kafka: pipeline.KafkaConfig{Brokers: []string{b.Addr()}}}
	h.layout.GroupPartitions = 4
	h.layout.DeliveryPartitions = 2
	h.prod, err = kgo.NewClient(append(h.kafka.Opts(), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.prod.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pipeline.EnsureTopics(ctx, kadm.NewClient(h.prod), h.layout); err != nil {
		t.Fatal(err)
	}
	return h
}

// start runs a sequencer until the returned stop is called.
func (h *harness) start(id string, reg prometheus.Registerer) (stop func()) {
	h.t.Helper()
	return h.startWith(id, reg, func(*sequencer.Config) {})
}

// startWith is start with the config changed by with.
func (h *harness) startWith(id string, reg prometheus.Registerer, with func(*sequencer.Config)) (stop func()) {
	h.t.Helper()
	cfg := sequencer.Config{
		Kafka: h.kafka, Layout: h.layout, GroupID: "seq", InstanceID: id,
		Limits: sequencer.DefaultLimits(), MaxBatch: 50, SessionTimeout: 2 * time.Second, TransactionTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(testLogOut, nil)), Registerer: reg,
	}
	with(&cfg)
	s, err := sequencer.New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	h.t.Cleanup(stop)
	return stop
}

func (h *harness) produce(group string, e *pb.GroupEvent) {
	h.t.Helper()
	e.Version, e.Group, e.TsMs = 1, group, time.Now().UnixMilli()
	v, err := proto.Marshal(e)
	if err != nil {
		h.t.Fatal(err)
	}
	h.produceRaw(group, v)
}

func (h *harness) produceRaw(group string, v []byte) {
	h.t.Helper()
	r := &kgo.Record{Topic: h.layout.GroupTopic, Partition: pipeline.PartitionFor(group, h.layout.GroupPartitions), Key: []byte(group), Value: v}
	if err := h.prod.ProduceSync(context.Background(), r).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
}

func member(user, kind string) *pb.GroupEvent {
	e := &pb.GroupEvent{User: user, Session: "s-" + user, Edge: "e1"}
	switch kind {
	case "join":
		e.Kind = &pb.GroupEvent_Join{Join: &pb.Join{}}
	case "attach":
		e.Kind = &pb.GroupEvent_Attach{Attach: &pb.Attach{}}
	}
	return e
}

func sendEv(user, cmid string) *pb.GroupEvent {
	return &pb.GroupEvent{User: user, Session: "s-" + user, Edge: "e1", RequestId: cmid,
		Kind: &pb.GroupEvent_Send{Send: &pb.Send{ClientMsgId: cmid, Body: []byte(`1`)}}}
}

// firstSeq is the first delivered seq: the subscriber's own join (seq 1)
// precedes its attach, so it has no recipient.
const firstSeq = 2

// collect reads committed deliveries until every group has an event for
// every seq from firstSeq up to want[group], and returns how often each (group, seq) was
// delivered.
func (h *harness) collect(want map[string]uint64, d time.Duration) map[string]map[uint64]int {
	h.t.Helper()
	cl, err := kgo.NewClient(append(h.kafka.Opts(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeTopics(h.layout.DeliveryTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]map[uint64]int{}
	complete := func() bool {
		for g, n := range want {
			for s := uint64(firstSeq); s <= n; s++ {
				if got[g][s] == 0 {
					return false
				}
			}
		}
		return true
	}
	deadline := time.Now().Add(d)
	for !complete() {
		if time.Now().After(deadline) {
			for g, n := range want {
				h.t.Logf("group %s: %d distinct seqs of %d", g, len(got[g]), n-firstSeq+1)
			}
			h.dumpGroup()
			h.t.Fatalf("deliveries incomplete after %s", d)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			var del pb.Delivery
			if err := proto.Unmarshal(r.Value, &del); err != nil {
				h.t.Fatalf("undecodable delivery: %v", err)
			}
			if ev := del.GetEvent(); ev != nil {
				if got[ev.GetGroup()] == nil {
					got[ev.GetGroup()] = map[uint64]int{}
				}
				got[ev.GetGroup()][ev.GetSeq()]++
			}
		})
	}
	// Give late duplicates a chance to show up.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	fs := cl.PollFetches(ctx)
	cancel()
	fs.EachRecord(func(r *kgo.Record) {
		var del pb.Delivery
		_ = proto.Unmarshal(r.Value, &del)
		if ev := del.GetEvent(); ev != nil {
			got[ev.GetGroup()][ev.GetSeq()]++
		}
	})
	return got
}

func checkExactlyOnce(t *testing.T, got map[string]map[uint64]int, want map[string]uint64) {
	t.Helper()
	for g, n := range want {
		if uint64(len(got[g])) != n-firstSeq+1 {
			t.Errorf("group %s: %d distinct seqs, want exactly %d..%d", g, len(got[g]), firstSeq, n)
		}
		for s, c := range got[g] {
			if s < firstSeq || s > n {
				t.Errorf("group %s: unexpected seq %d", g, s)
			}
			if c != 1 {
				t.Errorf("group %s seq %d delivered %d times, want once", g, s, c)
			}
		}
	}
}

// An undecodable record is counted and skipped; the partition keeps going.
func TestUndecodableRecordSkipped(t *testing.T) {
	h := newHarness(t)
	reg := prometheus.NewRegistry()
	h.start("a", reg)
	h.produce("g1", member("ann", "join"))
	h.produce("g1", member("ann", "attach"))
	h.produceRaw("g1", []byte{0xff, 0xfe, 0x01, 0x02})
	h.produceRaw("g1", nil)
	h.produce("g1", sendEv("ann", "m1"))
	got := h.collect(map[string]uint64{"g1": 2}, 20*time.Second)
	checkExactlyOnce(t, got, map[string]uint64{"g1": 2})
	mfs, _ := reg.Gather()
	var undecodable float64
	for _, mf := range mfs {
		if mf.GetName() == "causeway_records_undecodable_total" {
			for _, m := range mf.GetMetric() {
				undecodable += m.GetCounter().GetValue()
			}
		}
	}
	if undecodable != 2 {
		t.Fatalf("undecodable records counted: %v, want 2", undecodable)
	}
	_ = testutil.ToFloat64
}

// Partitions move between sequencers while events flow: every event is
// numbered densely and delivered exactly once.
func TestRebalanceExactlyOnce(t *testing.T) {
	h := newHarness(t)
	groups := []string{"ga", "gb", "gc", "gd", "ge", "gf"}
	stopA := h.start("a", nil)
	for _, g := range groups {
		h.produce(g, member("ann", "join"))
		h.produce(g, member("ann", "attach"))
	}
	const per = 120
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < per; i++ {
			for _, g := range groups {
				h.produce(g, sendEv("ann", fmt.Sprintf("m%d", i)))
			}
			switch i {
			case 30:
				h.start("b", nil) // a second sequencer joins
			case 70:
				stopA() // the first leaves
			case 90:
				h.start("c", nil)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	wg.Wait()
	want := map[string]uint64{}
	for _, g := range groups {
		want[g] = per + 1 // the join is seq 1
	}
	got := h.collect(want, 60*time.Second)
	checkExactlyOnce(t, got, want)
}

var testLogOut io.Writer = io.Discard

// dumpGroup logs the consumer group's assignment and offsets, to explain a
// stall.
func (h *harness) dumpGroup() {
	adm := kadm.NewClient(h.prod)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dg, err := adm.DescribeGroups(ctx, "seq")
	h.t.Logf("describe group: err %v", err)
	for _, g := range dg {
		h.t.Logf("group state %s", g.State)
		for _, m := range g.Members {
			ca, _ := m.Assigned.AsConsumer()
			if ca != nil {
				for _, t := range ca.Topics {
					h.t.Logf("member %s (%s): %s %v", m.MemberID, m.ClientID, t.Topic, t.Partitions)
				}
			}
		}
	}
	offs, err := adm.FetchOffsets(ctx, "seq")
	h.t.Logf("committed offsets err %v", err)
	ends, _ := adm.ListEndOffsets(ctx, h.layout.GroupTopic, h.layout.DeliveryTopic, h.layout.StateTopic)
	stable, _ := adm.ListCommittedOffsets(ctx, h.layout.GroupTopic, h.layout.DeliveryTopic, h.layout.StateTopic)
	offs.Each(func(o kadm.OffsetResponse) {
		e, _ := ends.Lookup(o.Topic, o.Partition)
		h.t.Logf("committed %s/%d = %d (end %d) err %v", o.Topic, o.Partition, o.At, e.Offset, o.Err)
	})
	stable.Each(func(o kadm.ListedOffset) {
		e, _ := ends.Lookup(o.Topic, o.Partition)
		h.t.Logf("stable %s/%d = %d, end %d", o.Topic, o.Partition, o.Offset, e.Offset)
	})
}

// txnOutcomes reads causeway_sequencer_transactions_total by outcome.
func txnOutcomes(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "causeway_sequencer_transactions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "outcome" {
					out[lp.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// TestLingerJoinsTransactions: with sequencer.linger, a record arriving
// while the sequencer lingers after an earlier one goes into the same
// transaction (the fewer transactions, the less broker and sequencer CPU
// per message); without it, each gets its own. Both are delivered once.
func TestLingerJoinsTransactions(t *testing.T) {
	for _, tc := range []struct {
		linger time.Duration
		want   float64
	}{{0, 2}, {time.Second, 1}} {
		t.Run(fmt.Sprint("linger=", tc.linger), func(t *testing.T) {
			h := newHarness(t)
			reg := prometheus.NewRegistry()
			h.startWith("linger", reg, func(c *sequencer.Config) { c.Linger = tc.linger })
			for _, kind := range []string{"join", "attach"} {
				h.produce("g", member("u", kind))
			}
			// Wait until the membership, and the index records it
			// forwards to the user's stream, are committed: the count
			// stays put for longer than a linger.
			deadline := time.Now().Add(20 * time.Second)
			last, since := -1.0, time.Now()
			for {
				n := txnOutcomes(t, reg)["committed"]
				if n != last {
					last, since = n, time.Now()
				}
				if n > 0 && time.Since(since) > tc.linger+time.Second {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the membership's transactions did not settle")
				}
				time.Sleep(20 * time.Millisecond)
			}
			before := txnOutcomes(t, reg)["committed"]
			h.produce("g", sendEv("u", "a"))
			time.Sleep(400 * time.Millisecond)
			h.produce("g", sendEv("u", "b"))
			checkExactlyOnce(t, h.collect(map[string]uint64{"g": 3}, 20*time.Second), map[string]uint64{"g": 3})
			if got := txnOutcomes(t, reg)["committed"] - before; got != tc.want {
				t.Errorf("two sends 400ms apart took %v committed transactions, want %v", got, tc.want)
			}
		})
	}
}
