package sequencer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/causeway/causeway/consumers/sequencer"
	"github.com/causeway/causeway/pipeline"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
	"google.golang.org/protobuf/proto"
)

// Rows 1, 2 and 9 of the fault matrix (../shared/FAULTS.md) against the
// sequencer's consume-process-produce loop, on a real broker over TCP
// (kfake, the embedded broker Causeway ships) with its request-level fault
// hooks. Each test writes a stream of group events like an edge does
// (idempotent producer, keyed by group, explicit partition), breaks the
// broker or the connection while the stream is sequenced, and then checks
// what every edge would read read_committed: each (group, client_msg_id)
// has exactly one seq, seqs are dense per group, each is delivered once,
// per-sender order holds, every ack carries the event's seq. The sequencer
// is never restarted by the test: it has to recover by itself.

// brokerFlavor is the protocol the broker speaks.
type brokerFlavor int

const (
	// txnV2 is the embedded broker as shipped (pipeline.NewBroker): the
	// newest API versions, so franz-go uses transaction protocol v2
	// (KIP-890 part 2: partitions join the transaction on produce, EndTxn
	// bumps the epoch).
	txnV2 brokerFlavor = iota
	// txnV1 caps the broker at Kafka 3.9's API versions, the protocol most
	// production clusters speak: franz-go sends AddPartitionsToTxn and
	// AddOffsetsToTxn, which protocol v2 no longer has.
	txnV1
)

// faultGroup is the sequencers' consumer group in these tests.
const faultGroup = "seq-faults"

// faultEdge is the edge every session of the workload is attached through.
const faultEdge = "e1"

// sentinelKey marks the records the test appends to every delivery
// partition once the sequencer is done: a read_committed reader that has
// seen a partition's sentinel has seen everything committed before it.
const sentinelKey = "\x00sentinel"

type faultRig struct {
	t      *testing.T
	c      *kfake.Cluster
	kafka  pipeline.KafkaConfig
	layout pipeline.Layout
	admCl  *kgo.Client
	adm    *kadm.Client
	reg    *prometheus.Registry
	logs   *lockedBuffer
	// session and txnTimeout configure the sequencer.
	session, txnTimeout time.Duration
}

func newFaultRig(t *testing.T, flavor brokerFlavor) *faultRig {
	t.Helper()
	r := &faultRig{t: t, reg: prometheus.NewRegistry(), logs: &lockedBuffer{},
		session: 2 * time.Second, txnTimeout: 3 * time.Second}
	switch flavor {
	case txnV2:
		b, err := pipeline.NewBroker(pipeline.BrokerConfig{Listen: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		r.c, r.kafka = b.Cluster(), pipeline.KafkaConfig{Brokers: []string{b.Addr()}}
	case txnV1:
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.MaxVersions(kversion.V3_9_0()),
			kfake.GroupMinSessionTimeout(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		r.c, r.kafka = c, pipeline.KafkaConfig{Brokers: c.ListenAddrs()}
	}
	r.layout = pipeline.DefaultLayout()
	r.layout.GroupPartitions = 4
	r.layout.DeliveryPartitions = 3
	var err error
	r.admCl, err = kgo.NewClient(append(r.kafka.Opts(), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.admCl.Close)
	r.adm = kadm.NewClient(r.admCl)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pipeline.EnsureTopics(ctx, r.adm, r.layout); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- sequencer log (tail):\n%s", r.logs.tail(60))
		}
	})
	return r
}

// startSequencer runs one sequencer. The returned stop fails the test if
// the sequencer had already stopped by itself: recovering from a fault
// must not need a restart.
func (r *faultRig) startSequencer(id string) (stop func()) {
	r.t.Helper()
	s, err := sequencer.New(sequencer.Config{
		Kafka: r.kafka, Layout: r.layout, GroupID: faultGroup, InstanceID: id,
		Limits: sequencer.DefaultLimits(), MaxBatch: 50,
		SessionTimeout: r.session, TransactionTimeout: r.txnTimeout,
		Logger: slog.New(slog.NewTextHandler(r.logs, nil)), Registerer: r.reg,
	})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			select {
			case err := <-done:
				r.t.Errorf("sequencer %s stopped by itself (err: %v); it must recover without a restart", id, err)
			default:
				cancel()
				if err := <-done; err != nil {
					r.t.Errorf("sequencer %s: %v", id, err)
				}
			}
			cancel()
		})
	}
	r.t.Cleanup(stop)
	return stop
}

// edgeProducer is a producer configured like the edge's (edge/server.go):
// idempotent, acks=all, no linger, explicit partitions.
func (r *faultRig) edgeProducer(extra ...kgo.Opt) *kgo.Client {
	r.t.Helper()
	opts := append(r.kafka.Opts(),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(10*time.Second),
		kgo.AllowIdempotentProduceCancellation(),
	)
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(cl.Close)
	return cl
}

// faultLoad is the workload: in every group a watcher joins and attaches
// (so every timeline event has a recipient), the senders join, then each
// sender sends perSender messages, interleaved across senders and groups.
type faultLoad struct {
	groups    []string
	senders   []string
	perSender int
}

func newFaultLoad(nGroups, nSenders, perSender int) faultLoad {
	l := faultLoad{perSender: perSender}
	for i := 0; i < nGroups; i++ {
		l.groups = append(l.groups, fmt.Sprintf("room-%d", i))
	}
	for i := 0; i < nSenders; i++ {
		l.senders = append(l.senders, fmt.Sprintf("user%d", i))
	}
	return l
}

// lastSeq is the seq of a group's last event: the watcher's join is 1,
// the senders' joins follow, then every send.
func (l faultLoad) lastSeq() uint64 {
	return uint64(1 + len(l.senders) + len(l.senders)*l.perSender)
}

func (l faultLoad) events() int { return len(l.groups) * (int(l.lastSeq()) + 1) }

func cmid(sender string, i int) string { return fmt.Sprintf("%s-%05d", sender, i) }

func groupEvent(group, user, req string) *pb.GroupEvent {
	return &pb.GroupEvent{Version: 1, Group: group, User: user, Session: "s-" + user, Edge: faultEdge,
		Incarnation: "inc-1", RequestId: req, TsMs: time.Now().UnixMilli()}
}

func (r *faultRig) record(e *pb.GroupEvent) *kgo.Record {
	v, err := proto.Marshal(e)
	if err != nil {
		r.t.Fatal(err)
	}
	return &kgo.Record{Topic: r.layout.GroupTopic, Partition: pipeline.PartitionFor(e.GetGroup(), r.layout.GroupPartitions),
		Key: []byte(e.GetGroup()), Value: v}
}

// setupRecords are the joins and the watcher's attach.
func (r *faultRig) setupRecords(l faultLoad) []*kgo.Record {
	var out []*kgo.Record
	for _, g := range l.groups {
		w := groupEvent(g, "watcher", "join-watcher")
		w.Kind = &pb.GroupEvent_Join{Join: &pb.Join{}}
		a := groupEvent(g, "watcher", "attach-watcher")
		a.Kind = &pb.GroupEvent_Attach{Attach: &pb.Attach{}}
		out = append(out, r.record(w), r.record(a))
		for _, s := range l.senders {
			j := groupEvent(g, s, "join-"+s)
			j.Kind = &pb.GroupEvent_Join{Join: &pb.Join{}}
			out = append(out, r.record(j))
		}
	}
	return out
}

func (r *faultRig) sendRecord(group, sender string, i int) *kgo.Record {
	id := cmid(sender, i)
	e := groupEvent(group, sender, id)
	e.Kind = &pb.GroupEvent_Send{Send: &pb.Send{ClientMsgId: id, Body: []byte(fmt.Sprintf(`{"i":%d}`, i))}}
	return r.record(e)
}

// produceAll writes recs in order with prod, pausing pace after every
// burst records so the stream is still flowing while faults fire. Every
// record must be acknowledged: the faults here are ones the producer is
// expected to ride out.
func produceAll(ctx context.Context, prod *kgo.Client, recs []*kgo.Record, burst int, pace time.Duration) error {
	var (
		mu    sync.Mutex
		first error
	)
	for i, rec := range recs {
		prod.Produce(ctx, rec, func(r *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("produce %s at %d: %w", r.Key, i, err)
				}
				mu.Unlock()
			}
		})
		if burst > 0 && i%burst == burst-1 {
			time.Sleep(pace)
		}
	}
	if err := prod.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return first
}

// streamLoad writes the workload with prod: setup first (synchronously, so
// the sends never reach a group before its members), then the sends.
func (r *faultRig) streamLoad(prod *kgo.Client, l faultLoad, burst int, pace time.Duration) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := produceAll(ctx, prod, r.setupRecords(l), 0, 0); err != nil {
		r.t.Fatalf("setup records: %v", err)
	}
	var sends []*kgo.Record
	for i := 0; i < l.perSender; i++ {
		for _, g := range l.groups {
			for _, s := range l.senders {
				sends = append(sends, r.sendRecord(g, s, i))
			}
		}
	}
	if err := produceAll(ctx, prod, sends, burst, pace); err != nil {
		r.t.Fatalf("sends: %v (a retriable fault must not fail a send)", err)
	}
}

// waitSequenced waits until the sequencer's committed offsets reach the
// end of every group-log partition: everything written was sequenced and
// committed.
func (r *faultRig) waitSequenced(d time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ends, err1 := r.adm.ListEndOffsets(ctx, r.layout.GroupTopic)
		offs, err2 := r.adm.FetchOffsets(ctx, faultGroup)
		cancel()
		if err := errors.Join(err1, err2); err == nil {
			done := true
			var b strings.Builder
			ends.Each(func(e kadm.ListedOffset) {
				at := int64(0)
				if o, ok := offs.Lookup(e.Topic, e.Partition); ok {
					at = o.At
				}
				fmt.Fprintf(&b, " p%d %d/%d", e.Partition, at, e.Offset)
				if at < e.Offset && r.unconsumed(e.Partition, at, e.Offset) {
					done = false
				}
			})
			if done {
				return
			}
			last = b.String()
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the sequencer did not commit the whole group log within %s (committed/end:%s)", d, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// unconsumed reports whether group-log partition p holds, in [from, end),
// a record the sequencer still has to apply. The sequencer's own forwarded
// records are transactional, so a partition may end with a transaction
// marker (or an aborted transaction), which a read_committed consumer
// skips and never commits past: the committed offset stays below the end
// with nothing left to do.
func (r *faultRig) unconsumed(p int32, from, end int64) bool {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stable, err := r.adm.ListCommittedOffsets(ctx, r.layout.GroupTopic)
	if err != nil {
		return true
	}
	if lso, ok := stable.Lookup(r.layout.GroupTopic, p); !ok || lso.Offset < end {
		return true // a transaction is still open: its records may count
	}
	cl, err := kgo.NewClient(append(r.kafka.Opts(), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.layout.GroupTopic: {p: kgo.NewOffset().At(from)}}))...)
	if err != nil {
		r.t.Fatal(err)
	}
	defer cl.Close()
	pctx, pcancel := context.WithTimeout(ctx, time.Second)
	defer pcancel()
	found := false
	cl.PollFetches(pctx).EachRecord(func(rec *kgo.Record) { found = found || rec.Offset < end })
	return found
}

// writeSentinels appends a non-transactional sentinel to every delivery
// partition.
func (r *faultRig) writeSentinels() {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for p := int32(0); p < r.layout.DeliveryPartitions; p++ {
		rec := &kgo.Record{Topic: r.layout.DeliveryTopic, Partition: p, Key: []byte(sentinelKey), Value: []byte("end")}
		if err := r.admCl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			r.t.Fatalf("sentinel: %v", err)
		}
	}
}

// deliveryLog is what an edge reading the delivery topic would see.
type deliveryLog struct {
	// events: group -> seq -> the event (from/client_msg_id, or the
	// member change) of every delivery record carrying that seq.
	events map[string]map[uint64][]string
	// acks: group -> request ID -> the seqs of its acks.
	acks map[string]map[string][]uint64
	// eventRecords counts delivery records carrying an event.
	eventRecords int
	// backwards lists events read after a later seq of their group: an
	// edge passes events on in log order, so a client would see the seqs
	// go back.
	backwards []string
}

func eventID(ev *pb.Event) string {
	if m := ev.GetMsg(); m != nil {
		return m.GetFrom() + "/" + m.GetClientMsgId()
	}
	if m := ev.GetMember(); m != nil {
		return "member:" + m.GetUser() + ":" + m.GetChange().String()
	}
	return "?"
}

// readDeliveries reads every delivery partition from its start to its
// sentinel at the given isolation level.
func (r *faultRig) readDeliveries(iso kgo.IsolationLevel) deliveryLog {
	r.t.Helper()
	parts := map[int32]kgo.Offset{}
	for p := int32(0); p < r.layout.DeliveryPartitions; p++ {
		parts[p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(append(r.kafka.Opts(), kgo.FetchIsolationLevel(iso),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.layout.DeliveryTopic: parts}))...)
	if err != nil {
		r.t.Fatal(err)
	}
	defer cl.Close()
	out := deliveryLog{events: map[string]map[uint64][]string{}, acks: map[string]map[string][]uint64{}}
	seen := map[int32]bool{}
	lastSeq := map[string]uint64{}
	deadline := time.Now().Add(60 * time.Second)
	for len(seen) < int(r.layout.DeliveryPartitions) {
		if time.Now().After(deadline) {
			r.t.Fatalf("read %d of %d delivery partitions to their sentinel within 60s: a transaction is still open or the log is unreadable", len(seen), r.layout.DeliveryPartitions)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				r.t.Fatalf("fetch %s/%d: %v", t, p, err)
			}
		})
		fs.EachRecord(func(rec *kgo.Record) {
			if string(rec.Key) == sentinelKey {
				seen[rec.Partition] = true
				return
			}
			var d pb.Delivery
			if err := proto.Unmarshal(rec.Value, &d); err != nil {
				r.t.Fatalf("undecodable delivery at %d/%d: %v", rec.Partition, rec.Offset, err)
			}
			if ev := d.GetEvent(); ev != nil {
				out.eventRecords++
				g := ev.GetGroup()
				if out.events[g] == nil {
					out.events[g] = map[uint64][]string{}
				}
				out.events[g][ev.GetSeq()] = append(out.events[g][ev.GetSeq()], eventID(ev))
				if ev.GetSeq() < lastSeq[g] {
					out.backwards = append(out.backwards, fmt.Sprintf("group %s seq %d after %d (%d/%d)", g, ev.GetSeq(), lastSeq[g], rec.Partition, rec.Offset))
				}
				lastSeq[g] = max(lastSeq[g], ev.GetSeq())
			}
			for _, rep := range d.GetReplies() {
				if a := rep.GetAck(); a != nil {
					g := a.GetGroup()
					if out.acks[g] == nil {
						out.acks[g] = map[string][]uint64{}
					}
					key := strings.TrimPrefix(rep.GetSession(), "s-") + "/" + rep.GetRequestId()
					out.acks[g][key] = append(out.acks[g][key], a.GetSeq())
				}
			}
		})
	}
	return out
}

// errLimit stops a check after this many violations: the first ones say
// what broke.
const errLimit = 25

// checkSequenced asserts the sequencing invariants over what a
// read_committed edge reads: seqs 2..last of every group each delivered
// exactly once and in order, each message at exactly one seq, each
// sender's messages in the order sent, every ack carrying its message's
// seq.
func checkSequenced(t *testing.T, l faultLoad, d deliveryLog) {
	t.Helper()
	bad := 0
	fail := func(format string, args ...any) {
		bad++
		if bad <= errLimit {
			t.Errorf(format, args...)
		}
	}
	for _, b := range d.backwards {
		fail("delivery order: %s", b)
	}
	last := l.lastSeq()
	for _, g := range l.groups {
		evs := d.events[g]
		seqOf := map[string]uint64{}
		for seq, ids := range evs {
			if seq < 2 || seq > last {
				// Seq 1 is the watcher's own join, sequenced before
				// anyone was attached: it has no recipient.
				fail("group %s: seq %d delivered (%v), want only 2..%d", g, seq, ids, last)
			}
			if len(ids) != 1 {
				fail("group %s: seq %d delivered %d times (%v), want once", g, seq, len(ids), ids)
			}
			for _, id := range ids {
				if prev, ok := seqOf[id]; ok && prev != seq {
					fail("group %s: %s sequenced twice, as %d and %d", g, id, prev, seq)
				}
				seqOf[id] = seq
			}
		}
		for s := uint64(2); s <= last; s++ {
			if len(evs[s]) == 0 {
				fail("group %s: seq %d missing (gap) of 2..%d", g, s, last)
			}
		}
		for _, s := range l.senders {
			var prev uint64
			for i := 0; i < l.perSender; i++ {
				id := s + "/" + cmid(s, i)
				seq, ok := seqOf[id]
				if !ok {
					fail("group %s: %s never delivered", g, id)
					continue
				}
				if seq <= prev {
					fail("group %s: %s has seq %d after its predecessor's %d: sender order broken", g, id, seq, prev)
				}
				prev = seq
				acks := d.acks[g][id]
				if len(acks) == 0 {
					fail("group %s: %s never acked", g, id)
				}
				for _, a := range acks {
					if a != seq {
						fail("group %s: %s acked with seq %d, delivered as %d", g, id, a, seq)
					}
				}
			}
		}
	}
	if bad > errLimit {
		t.Errorf("... %d violations in all", bad)
	}
}

// checkGroupLog asserts that the group log holds every record the
// workload wrote exactly once, each sender's in the order written (the
// idempotent producer's promise, rows 1 and 2).
func (r *faultRig) checkGroupLog(l faultLoad) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := r.adm.ListEndOffsets(ctx, r.layout.GroupTopic)
	if err != nil {
		r.t.Fatal(err)
	}
	parts := map[int32]kgo.Offset{}
	left := map[int32]int64{}
	ends.Each(func(e kadm.ListedOffset) {
		if e.Offset > 0 {
			parts[e.Partition] = kgo.NewOffset().AtStart()
			left[e.Partition] = e.Offset
		}
	})
	cl, err := kgo.NewClient(append(r.kafka.Opts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.layout.GroupTopic: parts}))...)
	if err != nil {
		r.t.Fatal(err)
	}
	defer cl.Close()
	count := map[string]int{}
	last := map[string]int{} // group/sender -> index of the last message read
	bad := 0
	for len(left) > 0 && ctx.Err() == nil {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		pcancel()
		if fs.NumRecords() == 0 && ctx.Err() == nil {
			// The log is complete (everything was sequenced) and a
			// partition may end with a transaction marker of the
			// sequencer's forwarded records, which no record reaches:
			// a quiet poll is the end.
			clear(left)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			if rec.Offset >= left[rec.Partition]-1 {
				delete(left, rec.Partition)
			}
			var e pb.GroupEvent
			if err := proto.Unmarshal(rec.Value, &e); err != nil {
				r.t.Fatalf("undecodable group event at %d/%d: %v", rec.Partition, rec.Offset, err)
			}
			if e.GetMembershipIndex() != nil {
				return // the sequencer's own, transactional: checkIndexRecords
			}
			key := e.GetGroup() + "/" + e.GetUser() + "/" + e.GetRequestId()
			count[key]++
			if s := e.GetSend(); s != nil {
				k := e.GetGroup() + "/" + e.GetUser()
				prev, ok := last[k]
				if !ok {
					prev = -1
				}
				var i int
				if _, err := fmt.Sscanf(strings.TrimPrefix(s.GetClientMsgId(), e.GetUser()+"-"), "%d", &i); err != nil {
					r.t.Fatalf("group log %d/%d: unexpected client_msg_id %q", rec.Partition, rec.Offset, s.GetClientMsgId())
				}
				if i != prev+1 && bad < errLimit {
					bad++
					r.t.Errorf("group log %d/%d: %s's message %d follows its message %d: a duplicate or reorder in the log", rec.Partition, rec.Offset, k, i, prev)
				}
				last[k] = max(prev, i)
			}
		})
	}
	if len(left) > 0 {
		r.t.Fatalf("group log not read to its end: %v", ctx.Err())
	}
	for k, n := range count {
		if n != 1 && bad < errLimit {
			bad++
			r.t.Errorf("group log: %s written %d times, want once", k, n)
		}
	}
	if got, want := len(count), l.events(); got != want {
		r.t.Errorf("group log: %d distinct records, want %d", got, want)
	}
}

// checkIndexRecords asserts that the records the sequencer writes back
// into the group log (the membership index of each joining user's
// stream) are there exactly once for a read_committed reader, whatever
// the faults aborted: one per join of the workload, each naming the seq
// of its member event.
func (r *faultRig) checkIndexRecords(l faultLoad) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := r.adm.ListEndOffsets(ctx, r.layout.GroupTopic)
	if err != nil {
		r.t.Fatal(err)
	}
	parts := map[int32]kgo.Offset{}
	ends.Each(func(e kadm.ListedOffset) {
		if e.Offset > 0 {
			parts[e.Partition] = kgo.NewOffset().AtStart()
		}
	})
	cl, err := kgo.NewClient(append(r.kafka.Opts(), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.layout.GroupTopic: parts}))...)
	if err != nil {
		r.t.Fatal(err)
	}
	defer cl.Close()
	got := map[string][]uint64{} // stream/group -> seqs
	// Everything was sequenced and committed: the log no longer changes,
	// and a quiet poll means it was read to its end (partitions may end
	// with transaction markers, which no record reaches).
	for ctx.Err() == nil {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		pcancel()
		if fs.NumRecords() == 0 {
			break
		}
		fs.EachRecord(func(rec *kgo.Record) {
			var e pb.GroupEvent
			if proto.Unmarshal(rec.Value, &e) == nil {
				if mi := e.GetMembershipIndex(); mi != nil {
					k := e.GetGroup() + "/" + mi.GetGroup()
					got[k] = append(got[k], mi.GetSeq())
				}
			}
		})
	}
	if ctx.Err() != nil {
		r.t.Fatalf("group log not read to its end (read_committed): %v", ctx.Err())
	}
	want := 0
	for _, g := range l.groups {
		for i, u := range append([]string{"watcher"}, l.senders...) {
			want++
			k := "u:" + u + "/" + g
			if seqs := got[k]; len(seqs) != 1 || seqs[0] != uint64(i+1) {
				r.t.Errorf("index records for %s: seqs %v, want exactly one, seq %d", k, seqs, i+1)
			}
		}
	}
	if len(got) != want {
		r.t.Errorf("index records for %d (user, group) pairs, want %d", len(got), want)
	}
}

// txnOutcomes reads causeway_sequencer_transactions_total by outcome.
func (r *faultRig) txnOutcomes() map[string]float64 { return txnOutcomes(r.t, r.reg) }

// renewals is how often the sequencer gave up on its transactional
// session and started a new one.
func (r *faultRig) renewals() int {
	return strings.Count(r.logs.String(), "restarting the transactional session")
}

// renewalStalls is, for each session restart, how long the sequencer took
// to get back to work: from the failed batch to the next partition it
// restored (every partition is restored after a restart, before its first
// record is applied).
func (r *faultRig) renewalStalls() []time.Duration {
	var out []time.Duration
	var failedAt time.Time
	for _, line := range strings.Split(r.logs.String(), "\n") {
		ts, _, ok := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		if !ok {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(line, "restarting the transactional session"):
			failedAt = at
		case strings.Contains(line, "restored partition state") && !failedAt.IsZero():
			out = append(out, at.Sub(failedAt))
			failedAt = time.Time{}
		}
	}
	return out
}

// verify waits for the stream to be sequenced, then checks the committed
// delivery stream, and returns how many event records an uncommitted
// reader sees beyond the committed ones (aborted data).
func (r *faultRig) verify(l faultLoad) (aborted int) {
	r.t.Helper()
	r.waitSequenced(90 * time.Second)
	r.writeSentinels()
	committed := r.readDeliveries(kgo.ReadCommitted())
	checkSequenced(r.t, l, committed)
	r.checkIndexRecords(l)
	uncommitted := r.readDeliveries(kgo.ReadUncommitted())
	return uncommitted.eventRecords - committed.eventRecords
}

// everyNth selects every nth call. Fault.When runs once per entity a
// request names (each partition of a produce), so for a produce it thins
// partitions, not requests.
func everyNth(n int64) func(kmsg.Request) bool {
	var i atomic.Int64
	return func(kmsg.Request) bool { return i.Add(1)%n == 0 }
}

// Row 2: retriable broker errors on Produce, both on the edge-like
// producer's writes to the group log and on the sequencer's transactional
// writes of deliveries and changelog. NOT_LEADER_FOR_PARTITION is answered
// before the broker appends; REQUEST_TIMED_OUT after it appended (kfake
// models a broker whose replication timed out): the producer cannot tell,
// retries, and the broker must drop the retry as a duplicate sequence.
func TestFaultRetriableProduceErrors(t *testing.T) {
	start := time.Now()
	r := newFaultRig(t, txnV2)
	// A produce answered NOT_LEADER waits for franz-go's next metadata
	// refresh, up to its MetadataMinAge (5s by default) after the last:
	// each stalls the producer (for the sequencer, its transaction, so
	// every partition it owns) for seconds, hence few of them, and the
	// production timeouts, so that the stall does not turn into a
	// transaction timeout, which would be another fault (row 9).
	r.session, r.txnTimeout = 6*time.Second, 10*time.Second
	r.startSequencer("a")
	l := newFaultLoad(6, 2, 200)
	var faults []*kfake.FaultHandle
	for _, topic := range []string{r.layout.GroupTopic, r.layout.DeliveryTopic, r.layout.StateTopic} {
		faults = append(faults,
			r.c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.NotLeaderForPartition, Count: 2, When: everyNth(13)}),
			r.c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.RequestTimedOut, Count: 40, When: everyNth(7)}))
	}
	r.streamLoad(r.edgeProducer(), l, 48, 20*time.Millisecond)
	r.waitSequenced(90 * time.Second)
	for _, f := range faults {
		f.Remove()
	}
	aborted := r.verify(l)
	r.checkGroupLog(l)
	names := []string{"group log NOT_LEADER", "group log REQUEST_TIMED_OUT", "deliveries NOT_LEADER", "deliveries REQUEST_TIMED_OUT", "changelog NOT_LEADER", "changelog REQUEST_TIMED_OUT"}
	var hits []string
	for i, f := range faults {
		hits = append(hits, fmt.Sprintf("%s %d", names[i], f.Hits()))
		if f.Hits() == 0 {
			t.Errorf("fault %s never fired: the test did not exercise it", names[i])
		}
	}
	// Retriable errors are the producer's to retry: the sequencer must
	// not have needed to abort anything or start over.
	out := r.txnOutcomes()
	if out["error"] != 0 || out["aborted"] != 0 || aborted != 0 || r.renewals() != 0 {
		t.Errorf("retriable produce errors leaked into the sequencer: transactions %v, aborted event records %d, session restarts %d", out, aborted, r.renewals())
	}
	t.Logf("%d events; faults hit: %s; transactions %v; took %s", l.events(), strings.Join(hits, ", "), out, time.Since(start).Round(time.Millisecond))
}

// endTxnFault is one way an EndTxn goes wrong (row 9).
type endTxnFault struct {
	name string
	// arm installs the fault; hits reports how many EndTxn requests it
	// disturbed. The fault takes every disturbEvery-th EndTxn, up to max,
	// so the sequencer commits in between and the stream keeps moving.
	arm func(r *faultRig, max int64) (hits func() int64)
	max int64
	// aborts: the fault necessarily leaves aborted transactions in the
	// log, which read_committed readers must not see.
	aborts bool
	// renews: the EndTxn error reaches the sequencer, which must start a
	// new transactional session by itself, and promptly: the new session
	// must abort the failed transaction at once rather than wait for the
	// broker's transaction timeout (txnTimeout, long here so a wait shows).
	renews     bool
	txnTimeout time.Duration
}

// disturbEvery spaces the EndTxn faults: every third EndTxn, so the
// sequencer commits in between, yet a short stream (at least 1216/50
// transactions) still meets them all.
const disturbEvery = 3

// endTxnError answers some EndTxn requests with err without applying
// them.
func endTxnError(err *kerr.Error) func(r *faultRig, max int64) func() int64 {
	return func(r *faultRig, max int64) func() int64 {
		h := r.c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, Err: err, Count: int(max), When: everyNth(disturbEvery)})
		return func() int64 { return int64(h.Hits()) }
	}
}

// endTxnControl runs fn on every disturbEvery-th EndTxn, up to max; the others and
// the requests fn lets through (handled false) are served normally.
func endTxnControl(r *faultRig, max int64, fn func(req *kmsg.EndTxnRequest) (kmsg.Response, error, bool)) func() int64 {
	var seen, hits atomic.Int64
	r.c.ControlKey(int16(kmsg.EndTxn), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		r.c.KeepControl()
		if seen.Add(1)%disturbEvery != 0 || hits.Load() >= max {
			return nil, nil, false
		}
		hits.Add(1)
		return fn(kreq.(*kmsg.EndTxnRequest))
	})
	return hits.Load
}

var errCut = errors.New("injected: connection cut before the EndTxn response")

// endTxnLostAfterApply delivers the EndTxn to the broker, which commits,
// and then cuts the connection, so the sequencer never reads the answer.
// The control cannot apply the request itself: it holds the request
// (SleepControl), replays an identical EndTxn from another connection
// (which the broker applies), then closes the sequencer's connection.
func endTxnLostAfterApply(r *faultRig, max int64) func() int64 {
	side, err := kgo.NewClient(r.kafka.Opts()...)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(side.Close)
	var (
		replaying atomic.Bool
		seen      atomic.Int64
		applied   atomic.Int64
	)
	r.c.ControlKey(int16(kmsg.EndTxn), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		r.c.KeepControl()
		if replaying.Load() {
			return nil, nil, false // the replay itself: let the broker apply it
		}
		if seen.Add(1)%disturbEvery != 0 || applied.Load() >= max {
			return nil, nil, false
		}
		req := kreq.(*kmsg.EndTxnRequest)
		replay := kmsg.NewPtrEndTxnRequest()
		replay.TransactionalID, replay.ProducerID, replay.ProducerEpoch, replay.Commit =
			req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit
		replaying.Store(true)
		r.c.SleepControl(func() {
			defer replaying.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := replay.RequestWith(ctx, side)
			if err == nil && resp.ErrorCode == 0 {
				applied.Add(1)
			}
		})
		return nil, errCut, true
	})
	return applied.Load
}

func endTxnFaults() []endTxnFault {
	return []endTxnFault{
		// An error the broker may have returned after deciding either
		// way: franz-go retries it as an abort, fencing whatever is
		// still open with a new epoch.
		{name: "unknown server error", arm: endTxnError(kerr.UnknownServerError), max: 3, aborts: true},
		// Retriable: the coordinator moved, or the previous transaction's
		// markers are still being written.
		{name: "not coordinator", arm: endTxnError(kerr.NotCoordinator), max: 3},
		{name: "concurrent transactions", arm: endTxnError(kerr.ConcurrentTransactions), max: 3},
		// A timeout answer is not retried by the client: End fails,
		// the sequencer restarts its session, whose InitProducerID
		// aborts the transaction left open.
		{name: "request timed out", arm: endTxnError(kerr.RequestTimedOut), max: 3, aborts: true, renews: true, txnTimeout: 8 * time.Second},
		// The connection dies with the request, which the broker
		// never applies.
		{name: "lost before the broker applied it", max: 3, arm: func(r *faultRig, max int64) func() int64 {
			return endTxnControl(r, max, func(*kmsg.EndTxnRequest) (kmsg.Response, error, bool) {
				return nil, errCut, true
			})
		}},
		// The broker commits; the answer is lost with the connection.
		{name: "response lost after the broker applied it", max: 3, arm: endTxnLostAfterApply},
		// The broker sits on the request past the sequencer's deadline
		// (its transaction timeout), then handles it: by then the
		// sequencer has given up and re-initialized its transactional
		// ID, so the late EndTxn must be fenced.
		{name: "timed out", max: 2, aborts: true, renews: true, arm: func(r *faultRig, max int64) func() int64 {
			return endTxnControl(r, max, func(*kmsg.EndTxnRequest) (kmsg.Response, error, bool) {
				wake := time.Now().Add(r.txnTimeout + 1500*time.Millisecond)
				r.c.SleepControl(func() { time.Sleep(time.Until(wake)) })
				return nil, nil, false
			})
		}},
		// Slow but within the deadline.
		{name: "delayed", max: 4, arm: func(r *faultRig, max int64) func() int64 {
			return endTxnControl(r, max, func(*kmsg.EndTxnRequest) (kmsg.Response, error, bool) {
				r.c.SleepControl(func() { time.Sleep(400 * time.Millisecond) })
				return nil, nil, false
			})
		}},
	}
}

// Row 9: EndTxn lost, timing out, or failing ambiguously while a stream is
// sequenced. Nobody reads aborted data, every event is sequenced exactly
// once, and the sequencer carries on by itself.
func TestFaultEndTxn(t *testing.T) {
	for _, f := range endTxnFaults() {
		t.Run(f.name, func(t *testing.T) {
			start := time.Now()
			r := newFaultRig(t, txnV2)
			if f.txnTimeout != 0 {
				r.txnTimeout = f.txnTimeout
			}
			hits := f.arm(r, f.max)
			r.startSequencer("a")
			l := newFaultLoad(4, 2, 150)
			r.streamLoad(r.edgeProducer(), l, 16, 20*time.Millisecond)
			aborted := r.verify(l)
			out := r.txnOutcomes()
			if hits() < f.max {
				t.Errorf("the fault hit %d EndTxn requests, want %d: the test did not exercise it", hits(), f.max)
			}
			if f.aborts && aborted == 0 {
				t.Errorf("no aborted event record in the log: the fault did not abort anything, so read_committed was not tested")
			}
			stalls := r.renewalStalls()
			if f.renews && r.renewals() == 0 {
				t.Errorf("the sequencer never restarted its transactional session, yet its EndTxn failed")
			}
			if f.txnTimeout != 0 {
				for _, d := range stalls {
					if d > f.txnTimeout/2 {
						t.Errorf("a session restart stalled the sequencer %s (transaction timeout %s): the failed transaction was left to time out instead of being aborted by the new session", d.Round(time.Millisecond), f.txnTimeout)
					}
				}
			}
			t.Logf("%d events; EndTxn disturbed %d times; transactions %v; aborted event records (invisible read_committed) %d; session restarts %d (back to work after %v); took %s",
				l.events(), hits(), out, aborted, r.renewals(), stalls, time.Since(start).Round(time.Millisecond))
		})
	}
}

// Row 9's neighbour: the transaction's offset commit fails. A
// REQUEST_TIMED_OUT is answered after the broker staged the offsets (the
// ambiguous case, which fails End); COORDINATOR_LOAD_IN_PROGRESS,
// NOT_COORDINATOR and UNKNOWN_SERVER_ERROR are answered before, and
// franz-go retries them or aborts the transaction to redo it.
func TestFaultTxnOffsetCommit(t *testing.T) {
	start := time.Now()
	r := newFaultRig(t, txnV2)
	var faults []*kfake.FaultHandle
	for _, e := range []*kerr.Error{kerr.RequestTimedOut, kerr.CoordinatorLoadInProgress, kerr.NotCoordinator, kerr.UnknownServerError} {
		faults = append(faults, r.c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Err: e, Count: 2, When: everyNth(3)}))
	}
	r.startSequencer("a")
	l := newFaultLoad(4, 2, 200)
	r.streamLoad(r.edgeProducer(), l, 16, 20*time.Millisecond)
	aborted := r.verify(l)
	var hits []int
	for i, f := range faults {
		hits = append(hits, f.Hits())
		if f.Hits() == 0 {
			t.Errorf("TxnOffsetCommit fault %d never fired", i)
		}
	}
	if aborted == 0 {
		t.Errorf("no aborted event record in the log: the offset-commit faults aborted nothing")
	}
	t.Logf("%d events; TxnOffsetCommit faults hit %v (timed out, load in progress, not coordinator, unknown); transactions %v; aborted event records %d; session restarts %d; took %s",
		l.events(), hits, r.txnOutcomes(), aborted, r.renewals(), time.Since(start).Round(time.Millisecond))
}

// Transaction protocol v1 (a Kafka 3.9 broker): the requests v2 folded
// into Produce and TxnOffsetCommit fail. AddPartitionsToTxn answers
// CONCURRENT_TRANSACTIONS (retried by the client), TRANSACTION_ABORTABLE
// and UNKNOWN_SERVER_ERROR (the transaction must be aborted);
// AddOffsetsToTxn answers NOT_COORDINATOR and UNKNOWN_SERVER_ERROR; and
// one EndTxn is applied with its answer lost, which v1 brokers detect as a
// retry without an epoch bump.
func TestFaultTxnV1Requests(t *testing.T) {
	start := time.Now()
	r := newFaultRig(t, txnV1)
	faults := map[string]*kfake.FaultHandle{
		"AddPartitionsToTxn CONCURRENT_TRANSACTIONS": r.c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.AddPartitionsToTxn}, Err: kerr.ConcurrentTransactions, Count: 4, When: everyNth(3)}),
		"AddPartitionsToTxn TRANSACTION_ABORTABLE":   r.c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.AddPartitionsToTxn}, Err: kerr.TransactionAbortable, Count: 2, When: everyNth(4)}),
		"AddPartitionsToTxn UNKNOWN_SERVER_ERROR":    r.c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.AddPartitionsToTxn}, Err: kerr.UnknownServerError, Count: 2, When: everyNth(5)}),
		"AddOffsetsToTxn NOT_COORDINATOR":            r.c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.AddOffsetsToTxn}, Err: kerr.NotCoordinator, Count: 2, When: everyNth(3)}),
		"AddOffsetsToTxn UNKNOWN_SERVER_ERROR":       r.c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.AddOffsetsToTxn}, Err: kerr.UnknownServerError, Count: 2, When: everyNth(4)}),
	}
	lost := endTxnLostAfterApply(r, 2)
	r.startSequencer("a")
	l := newFaultLoad(4, 2, 200)
	r.streamLoad(r.edgeProducer(), l, 16, 20*time.Millisecond)
	aborted := r.verify(l)
	var hits []string
	for name, f := range faults {
		hits = append(hits, fmt.Sprintf("%s %d", name, f.Hits()))
		if f.Hits() == 0 {
			t.Errorf("fault %s never fired", name)
		}
	}
	sort.Strings(hits)
	if lost() == 0 {
		t.Errorf("no EndTxn was applied with its answer lost")
	}
	if aborted == 0 {
		t.Errorf("no aborted event record in the log: the faults aborted nothing")
	}
	t.Logf("%d events; faults hit: %s, EndTxn answers lost after commit %d; transactions %v; aborted event records %d; session restarts %d; took %s",
		l.events(), strings.Join(hits, ", "), lost(), r.txnOutcomes(), aborted, r.renewals(), time.Since(start).Round(time.Millisecond))
}

// cutDialer is the kgo.Dialer of franz-go's chaos tests, sharpened for
// row 1: each connection lives a few hundred milliseconds, and dies right
// after its next request was written, so the broker reads and applies
// the request but the client never reads the answer.
type cutDialer struct {
	min, max time.Duration
	cuts     atomic.Int64
}

func (d *cutDialer) DialContext(ctx context.Context, network, host string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, host)
	if err != nil {
		return nil, err
	}
	life := d.min + rand.N(d.max-d.min)
	return &cutConn{Conn: c, d: d, deadline: time.Now().Add(life)}, nil
}

type cutConn struct {
	net.Conn
	d        *cutDialer
	deadline time.Time
	cut      atomic.Bool
	once     sync.Once
}

func (c *cutConn) Write(p []byte) (int, error) {
	if c.cut.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Write(p)
	if err == nil && time.Now().After(c.deadline) {
		c.cutNow()
	}
	return n, err
}

func (c *cutConn) Read(p []byte) (int, error) {
	if c.cut.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	if c.cut.Load() {
		return 0, net.ErrClosed // an answer that raced the cut is lost too
	}
	return n, err
}

// Close leaves a cut socket to cutNow's timer.
func (c *cutConn) Close() error {
	if c.cut.Load() {
		return nil
	}
	return c.Conn.Close()
}

// cutNow makes the connection dead to the client at once, and closes the
// socket a moment later: closing it with the broker's answer unread would
// send a reset, and the broker's kernel could then discard the request
// before the broker read it, which is the other (harmless) case.
func (c *cutConn) cutNow() {
	c.once.Do(func() {
		c.cut.Store(true)
		c.d.cuts.Add(1)
		_ = c.Conn.SetReadDeadline(time.Now()) // wake a blocked reader
		time.AfterFunc(150*time.Millisecond, func() { _ = c.Conn.Close() })
	})
}

// Row 1: the produce connection dies after the broker wrote the batch and
// before the producer read the ack, over and over, on two edge-like
// producers writing into one group. The idempotent producer retries with
// the same sequence numbers and the broker drops the retries: no
// duplicate in the log, each producer's order kept, and the sequencer
// numbers every message once, densely.
func TestFaultProduceConnectionCut(t *testing.T) {
	start := time.Now()
	r := newFaultRig(t, txnV2)
	r.startSequencer("a")
	l := newFaultLoad(1, 2, 1500)
	g := l.groups[0]

	// Count batches the broker receives again after it already appended
	// them: the producer retried a write whose ack the cut lost. A
	// control that does not handle the request only observes it.
	type pidPart struct {
		pid  int64
		part int32
	}
	var (
		mu       sync.Mutex
		nextSeq  = map[pidPart]int32{}
		resent   int
		produces int
	)
	// Produce v13+ names topics by ID.
	groupTopicID := r.c.TopicInfo(r.layout.GroupTopic).TopicID
	r.c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.ProduceRequest)
		mu.Lock()
		defer mu.Unlock()
		for _, tp := range req.Topics {
			if tp.Topic != r.layout.GroupTopic && tp.TopicID != groupTopicID {
				continue
			}
			for _, p := range tp.Partitions {
				var b kmsg.RecordBatch
				if err := b.ReadFrom(p.Records); err != nil || b.ProducerID < 0 {
					continue
				}
				produces++
				k := pidPart{b.ProducerID, p.Partition}
				if b.FirstSequence < nextSeq[k] {
					resent++
				} else {
					nextSeq[k] = b.FirstSequence + b.NumRecords
				}
			}
		}
		return nil, nil, false
	})

	// The watcher and the senders join through a healthy producer; each
	// sender then writes through its own producer whose connections are
	// cut every 200-600ms.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := produceAll(ctx, r.edgeProducer(), r.setupRecords(l), 0, 0); err != nil {
		t.Fatal(err)
	}
	dialers := make([]*cutDialer, len(l.senders))
	var wg sync.WaitGroup
	errs := make(chan error, len(l.senders))
	for i, s := range l.senders {
		dialers[i] = &cutDialer{min: 200 * time.Millisecond, max: 600 * time.Millisecond}
		prod := r.edgeProducer(kgo.Dialer(dialers[i].DialContext))
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs := make([]*kgo.Record, l.perSender)
			for k := range recs {
				recs[k] = r.sendRecord(g, s, k)
			}
			// ~3s of sending, so every producer loses several
			// connections mid-stream.
			errs <- produceAll(ctx, prod, recs, 10, 20*time.Millisecond)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a cut connection failed a send instead of retrying it: %v", err)
		}
	}
	var cuts int64
	for _, d := range dialers {
		cuts += d.cuts.Load()
	}
	mu.Lock()
	gotResent, gotProduces := resent, produces
	mu.Unlock()
	if cuts == 0 || gotResent == 0 {
		t.Fatalf("connections cut %d, batches re-sent after the broker appended them %d: the fault did not happen", cuts, gotResent)
	}
	r.checkGroupLog(l)
	r.verify(l)
	t.Logf("%d events; connections cut %d; batches re-sent after append %d of %d produce batches; transactions %v; took %s",
		l.events(), cuts, gotResent, gotProduces, r.txnOutcomes(), time.Since(start).Round(time.Millisecond))
}

// lockedBuffer collects a sequencer's log; slog writes from several
// goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *lockedBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
