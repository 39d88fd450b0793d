package rollup_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/causeway/causeway/consumers/rollup"
	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
	"github.com/causeway/causeway/pipeline/devcluster"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
)

var secret = []byte("rollup-test-secret-0123456789abcdef")

// Exactly once across a rebalance (FAULTS row 8): rollups join and leave
// while members read; every summary's count is a count that really
// happened (never more than the readers), and the last one per message is
// the exact number of readers. A double count would overshoot; a lost
// receipt would leave the final count short.
func TestRollupExactlyOnceAcrossRebalance(t *testing.T) {
	const groups, members, msgs = 4, 6, 8
	cl := devcluster.StartTest(t, 1, secret, func(c *devcluster.Config) { c.Rollup.GroupID = "" })
	base := devcluster.DefaultConfig(1, secret).Rollup
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	startRollup := func(id string) (stop func()) {
		rc := base
		rc.InstanceID = id
		rc.Kafka.Brokers = []string{cl.Broker.Addr()}
		rc.Kafka.ClientID = "rollup-" + id
		rc.SessionTimeout = 2 * time.Second
		rc.Logger = log
		rc.Registerer = prometheus.NewRegistry()
		r, err := rollup.New(rc)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("rollup %s: %v", id, err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	clients := map[string]*client.Client{}
	for g := range groups {
		for m := range members {
			user := fmt.Sprintf("g%d-u%d", g, m)
			tok, err := edge.Mint(secret, user, []string{"room-*"}, time.Hour, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			c, err := client.Dial(ctx, cl.URL(0), tok, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			go func() { // nobody needs the frames here
				for range c.Events() {
				}
			}()
			if err := c.Join(ctx, fmt.Sprintf("room-%d", g)); err != nil {
				t.Fatal(err)
			}
			clients[user] = c
		}
	}
	// Every message is sent by member 0 of its group.
	lastSeq := map[int]uint64{}
	for g := range groups {
		for i := range msgs {
			seq, err := clients[fmt.Sprintf("g%d-u0", g)].Send(ctx, fmt.Sprintf("room-%d", g), fmt.Sprint("m", i), i)
			if err != nil {
				t.Fatal(err)
			}
			lastSeq[g] = seq
		}
	}
	stopA := startRollup("a")
	var stopB func()
	// Members 1..5 read in steps; rollups come and go in between.
	for step := 1; step <= 4; step++ {
		var wg sync.WaitGroup
		for g := range groups {
			for m := 1; m < members; m++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					upTo := lastSeq[g] - uint64(msgs) + uint64(step*msgs/4)
					if err := clients[fmt.Sprintf("g%d-u%d", g, m)].Read(ctx, fmt.Sprintf("room-%d", g), upTo); err != nil {
						t.Errorf("read: %v", err)
					}
				}()
			}
		}
		wg.Wait()
		switch step {
		case 1:
			stopB = startRollup("b") // a rebalance
		case 2:
			time.Sleep(time.Second)
			stopA() // the partitions all move to b
		case 3:
			stopA = startRollup("c")
		}
		time.Sleep(700 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	stopB()
	stopA()

	// Read every summary the rollups committed.
	kc, err := kgo.NewClient(kgo.SeedBrokers(cl.Broker.Addr()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeTopics(base.Layout.GroupTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	final := map[string]uint32{}
	summaries := 0
	idle := 0
	for idle < 2 {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fs := kc.PollFetches(pctx)
		pcancel()
		if fs.NumRecords() == 0 {
			idle++
			continue
		}
		fs.EachRecord(func(r *kgo.Record) {
			var ev pb.GroupEvent
			if proto.Unmarshal(r.Value, &ev) != nil || ev.GetReceipts() == nil {
				return
			}
			summaries++
			for _, rc := range ev.GetReceipts().GetReads() {
				k := fmt.Sprintf("%s/%d", ev.GetGroup(), rc.GetSeq())
				if rc.GetCount() > members-1 {
					t.Errorf("%s counted %d reads, only %d members can read it: double count", k, rc.GetCount(), members-1)
				}
				final[k] = rc.GetCount() // summaries are in log order
			}
		})
	}
	if summaries == 0 {
		t.Fatal("no summaries")
	}
	for g := range groups {
		for i := range msgs {
			k := fmt.Sprintf("room-%d/%d", g, lastSeq[g]-uint64(msgs)+1+uint64(i))
			if final[k] != members-1 {
				t.Errorf("%s: final count %d, want %d", k, final[k], members-1)
			}
		}
	}
	t.Logf("%d summaries over %d messages", summaries, groups*msgs)
}

// One rollup transaction spans a commit interval, however many sequencer
// transactions (fetches) arrive in it: a transaction per fetch would load
// the broker with hundreds of rollup transactions per second under
// traffic, delaying the sequencer's own. Reads here arrive one per
// sequencer transaction; the rollup must still commit about once per
// interval, and count every read.
func TestRollupTransactionPerCommitInterval(t *testing.T) {
	const reads, interval = 150, 250 * time.Millisecond
	cl := devcluster.StartTest(t, 1, secret, func(c *devcluster.Config) { c.Rollup.GroupID = "" })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dial := func(user string) *client.Client {
		tok, err := edge.Mint(secret, user, []string{"room-*"}, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.Dial(ctx, cl.URL(0), tok, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		go func() {
			for range c.Events() {
			}
		}()
		if err := c.Join(ctx, "room-tx"); err != nil {
			t.Fatal(err)
		}
		return c
	}
	sender, reader := dial("sender"), dial("reader")
	var last uint64
	for i := range reads {
		seq, err := sender.Send(ctx, "room-tx", fmt.Sprint("m", i), i)
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}

	rc := devcluster.DefaultConfig(1, secret).Rollup
	rc.InstanceID = "tx"
	rc.Kafka.Brokers = []string{cl.Broker.Addr()}
	rc.CommitInterval = interval
	rc.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	rc.Registerer = reg
	r, err := rollup.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	running := time.Now()
	go func() { done <- r.Run(rctx) }()

	first := last - reads + 1
	start := time.Now()
	for seq := first; seq <= last; seq++ {
		if err := reader.Read(ctx, "room-tx", seq); err != nil { // acked after its sequencer transaction
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	// The last summary says every message was read once.
	deadline := time.Now().Add(20 * time.Second)
	for counter(t, reg, "causeway_rollup_records_total", "") < reads && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * interval)
	rcancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ran := time.Since(running)
	committed := counter(t, reg, "causeway_rollup_transactions_total", "committed")
	// At most one per interval it ran (plus the first and the last), and
	// far fewer than the sequencer transactions it read.
	bound := min(float64(ran/interval)+2, reads/4)
	if committed < 1 || committed > bound {
		t.Errorf("%v rollup transactions in %v for %d reads (read in %v), %v per transaction: want 1..%v",
			committed, ran.Round(time.Millisecond), reads, took.Round(time.Millisecond), interval, bound)
	}
	if n := counter(t, reg, "causeway_rollup_records_total", ""); n < reads {
		t.Errorf("the rollup applied %v changelog records, want at least the %d reads", n, reads)
	}
	t.Logf("%d reads in %v; the rollup ran %v: %v transactions", reads, took.Round(time.Millisecond), ran.Round(time.Millisecond), committed)
}

// counter is a counter's value in reg; result, if set, selects the
// series with that "result" label.
func counter(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if result == "" {
				return m.GetCounter().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
