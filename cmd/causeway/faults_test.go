package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The fault-injection suite: real processes (causeway broker, sequencers,
// edges) on loopback, 50 clients in 10 groups using the resilient Go
// client, one fault per case (and all of them in one run), then the
// invariant checker over everything every client received.

type faultCluster struct {
	t      *testing.T
	dir    string
	env    []string
	baddr  string
	broker *proc
	seqs   map[string]*proc
	edges  []*edgeProc
}

type edgeProc struct {
	id, addr string
	p        *proc
}

func newFaultCluster(t *testing.T, nSeq, nEdge int, extraEnv ...string) *faultCluster {
	t.Helper()
	dir := t.TempDir()
	if keep := os.Getenv("CAUSEWAY_TEST_KEEP"); keep != "" {
		// Keep the processes' logs and data for a post-mortem.
		d, err := os.MkdirTemp(keep, "faults-")
		if err != nil {
			t.Fatal(err)
		}
		dir = d
	}
	c := &faultCluster{
		t:   t,
		dir: dir,
		env: []string{
			"CAUSEWAY_AUTH_SECRET=" + e2eSecret,
			"CAUSEWAY_TOPICS_GROUP_PARTITIONS=6",
			"CAUSEWAY_TOPICS_DELIVERY_PARTITIONS=6",
			"CAUSEWAY_SEQUENCER_SESSION_TIMEOUT=2s",
			"CAUSEWAY_SEQUENCER_TRANSACTION_TIMEOUT=4s",
			"CAUSEWAY_SEQUENCER_EDGE_TIMEOUT=3s",
			"CAUSEWAY_EDGE_HEARTBEAT_INTERVAL=500ms",
			"CAUSEWAY_EDGE_PRODUCE_TIMEOUT=3s",
			"CAUSEWAY_LOG_LEVEL=info",
		},
		baddr: freePort(t),
		seqs:  map[string]*proc{},
	}
	c.env = append(c.env, extraEnv...)
	c.startBroker()
	for i := 0; i < nSeq; i++ {
		c.startSeq(fmt.Sprintf("seq-%d", i+1))
	}
	for i := 0; i < nEdge; i++ {
		e := &edgeProc{id: fmt.Sprintf("edge-%d", i+1), addr: freePort(t)}
		c.edges = append(c.edges, e)
		c.startEdge(i)
	}
	for _, e := range c.edges {
		waitReady(t, e.addr)
	}
	return c
}

func (c *faultCluster) startBroker() {
	c.broker = start(c.t, c.dir, fmt.Sprintf("broker-%d", time.Now().UnixNano()), c.env,
		"broker", "--listen", c.baddr, "--data-dir", filepath.Join(c.dir, "broker"), "--sync")
	c.broker.waitAddr(c.t)
}

func (c *faultCluster) startSeq(id string) {
	c.seqs[id] = start(c.t, c.dir, id+fmt.Sprintf("-%d", time.Now().UnixNano()), c.env, "sequencer", "--brokers", c.baddr, "--id", id)
}

func (c *faultCluster) startEdge(i int) {
	e := c.edges[i]
	e.p = start(c.t, c.dir, e.id+fmt.Sprintf("-%d", time.Now().UnixNano()), c.env,
		"edge", "--brokers", c.baddr, "--id", e.id, "--http-addr", e.addr)
	e.p.waitAddr(c.t)
}

func (c *faultCluster) signalEdge(i int, sig syscall.Signal) {
	p := c.edges[i].p
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		c.t.Fatalf("%s did not exit after %v", c.edges[i].id, sig)
	}
}

// signal sends sig to the process's group, as kill does.
func (p *proc) signal(sig syscall.Signal) error {
	if p.cmd.Process == nil {
		return fmt.Errorf("signal %v to %s: not started", sig, p.name)
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("signal %v to %s: %w", sig, p.name, err)
	}
	return nil
}

// describeTxn asks the broker about one transactional ID.
func (c *faultCluster) describeTxn(adm *kadm.Client, txnID string) (kadm.DescribedTransaction, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	d, err := adm.DescribeTransactions(ctx, txnID)
	if err != nil {
		return kadm.DescribedTransaction{}, fmt.Errorf("describe transaction %s: %w", txnID, err)
	}
	tx, ok := d[txnID]
	if !ok {
		return kadm.DescribedTransaction{}, fmt.Errorf("describe transaction %s: not in the answer", txnID)
	}
	if tx.Err != nil {
		return tx, fmt.Errorf("describe transaction %s: %w", txnID, tx.Err)
	}
	return tx, nil
}

// stopInTransaction SIGSTOPs p at a moment its transaction txnID is open
// on the broker (records produced, not yet ended), or, with open false, at
// a moment it is not: between transactions. It returns the transaction as
// the broker saw it then.
func (c *faultCluster) stopInTransaction(p *proc, adm *kadm.Client, txnID string, open bool) kadm.DescribedTransaction {
	c.t.Helper()
	for try := 0; try < 300; try++ {
		if err := p.signal(syscall.SIGSTOP); err != nil {
			c.t.Fatal(err)
		}
		if tx, err := c.describeTxn(adm, txnID); err == nil && (tx.State == "Ongoing") == open {
			return tx
		}
		if err := p.signal(syscall.SIGCONT); err != nil {
			c.t.Fatal(err)
		}
		time.Sleep(time.Duration(5+rand.IntN(40)) * time.Millisecond)
	}
	c.t.Fatalf("%s was never caught with its transaction open=%v", p.name, open)
	return kadm.DescribedTransaction{}
}

func (c *faultCluster) urls() []string {
	var u []string
	for _, e := range c.edges {
		u = append(u, "ws://"+e.addr+"/v1/ws")
	}
	return u
}

// actor is one client in one group.
type actor struct {
	log      actorLog
	s        *client.Session
	mu       sync.Mutex
	lastSeen string // key of the last message received from someone else
	slow     atomic.Bool
	resume   chan struct{}
}

type workload struct {
	actors  []*actor
	perUser int
	pace    time.Duration
}

// newWorkload connects nGroups*perGroup actors; actor tiny (or -1) gets
// one-frame buffers, so a stall of its reader reaches the edge at once.
func (c *faultCluster) newWorkload(ctx context.Context, nGroups, perGroup, perUser, tiny int) *workload {
	c.t.Helper()
	w := &workload{perUser: perUser, pace: 40 * time.Millisecond}
	var wg sync.WaitGroup
	errs := make(chan error, nGroups*perGroup)
	for g := 0; g < nGroups; g++ {
		for m := 0; m < perGroup; m++ {
			a := &actor{log: actorLog{user: fmt.Sprintf("u%d-%d", g, m), group: fmt.Sprintf("room-%d", g)}, resume: make(chan struct{})}
			buf := 256
			if len(w.actors) == tiny {
				buf = 1
			}
			w.actors = append(w.actors, a)
			wg.Add(1)
			go func() {
				defer wg.Done()
				user := a.log.user
				s, err := client.Connect(ctx, client.SessionConfig{
					URLs: c.urls(),
					Token: func(context.Context) (string, error) {
						return edge.Mint([]byte(e2eSecret), user, []string{"room-*"}, time.Hour, time.Now())
					},
					MaxBackoff:  250 * time.Millisecond,
					EventBuffer: buf,
				})
				if err != nil {
					errs <- err
					return
				}
				a.s = s
				if err := s.Join(ctx, a.log.group); err != nil {
					errs <- fmt.Errorf("%s join: %w", user, err)
					return
				}
				if _, err := s.Subscribe(ctx, a.log.group); err != nil {
					errs <- fmt.Errorf("%s subscribe: %w", user, err)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		c.t.Fatal(err)
	}
	for _, a := range w.actors {
		go a.receive()
	}
	return w
}

// receive records the timeline of the actor's group as the application
// sees it.
func (a *actor) receive() {
	for f := range a.s.Events() {
		if a.slow.Load() {
			<-a.resume
		}
		a.mu.Lock()
		switch {
		case f.Type == "subscribed" && !f.Recovered && f.Group == a.log.group:
			a.log.lost = true
		case (f.Type == "msg" || f.Type == "member") && f.Group == a.log.group:
			a.log.recv = append(a.log.recv, recvRec{seq: f.Seq, from: f.From, id: f.ClientMsgID})
			if f.Type == "msg" && f.From != a.log.user {
				a.lastSeen = msgKey(f.From, f.ClientMsgID)
			}
		}
		a.mu.Unlock()
	}
}

// run sends perUser messages from every actor; every fifth is a reply to
// the last message the actor received.
func (w *workload) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, a := range w.actors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(rand.IntN(int(w.pace))))
			for k := 0; k < w.perUser; k++ {
				rec := sendRec{id: fmt.Sprintf("m%d", k)}
				if k%5 == 4 {
					a.mu.Lock()
					rec.after = a.lastSeen
					a.mu.Unlock()
				}
				sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				seq, err := a.s.Send(sctx, a.log.group, rec.id, map[string]any{"k": k, "re": rec.after})
				cancel()
				var ce *client.Error
				switch {
				case err == nil:
					rec.outcome, rec.seq = acked, seq
				case errors.As(err, &ce):
					rec.outcome = failed
				default:
					rec.outcome = unknown
				}
				a.mu.Lock()
				a.log.sends = append(a.log.sends, rec)
				a.mu.Unlock()
				time.Sleep(w.pace)
			}
		}()
	}
	wg.Wait()
}

// settle waits until every actor has received every acked message of its
// group, or the deadline passes.
func (w *workload) settle(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		want := map[string]int{}
		for _, a := range w.actors {
			a.mu.Lock()
			for _, s := range a.log.sends {
				if s.outcome == acked {
					want[a.log.group]++
				}
			}
			a.mu.Unlock()
		}
		done := true
		for _, a := range w.actors {
			a.mu.Lock()
			n := 0
			for _, e := range a.log.recv {
				if e.id != "" {
					n++
				}
			}
			a.mu.Unlock()
			if n < want[a.log.group] {
				done = false
			}
		}
		if done {
			time.Sleep(300 * time.Millisecond) // late duplicates would show now
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *workload) close() {
	for _, a := range w.actors {
		if a.s != nil {
			_ = a.s.Close()
		}
	}
}

func (w *workload) logs() []*actorLog {
	var out []*actorLog
	for _, a := range w.actors {
		a.mu.Lock()
		l := a.log
		l.recv = append([]recvRec(nil), a.log.recv...)
		l.sends = append([]sendRec(nil), a.log.sends...)
		a.mu.Unlock()
		out = append(out, &l)
	}
	return out
}

func (w *workload) stats() (reconnects, resubscribes uint64) {
	for _, a := range w.actors {
		st := a.s.Stats()
		reconnects += st.Reconnects
		resubscribes += st.Resubscribes
	}
	return
}

// faultCase runs the workload with fault injected once traffic flows and
// checks the invariants.
func faultCase(t *testing.T, nSeq int, env []string, fault func(c *faultCluster, w *workload), faults *int) ([]*actorLog, *workload) {
	return faultCaseTiny(t, nSeq, env, -1, fault, faults)
}

func faultCaseTiny(t *testing.T, nSeq int, env []string, tiny int, fault func(c *faultCluster, w *workload), faults *int) ([]*actorLog, *workload) {
	t.Helper()
	c := newFaultCluster(t, nSeq, 3, env...)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	w := c.newWorkload(ctx, 10, 5, 60, tiny)
	defer w.close()
	done := make(chan struct{})
	go func() { w.run(ctx); close(done) }()
	time.Sleep(700 * time.Millisecond)
	fault(c, w)
	<-done
	if ctx.Err() != nil {
		t.Fatalf("the workload did not finish within 90s after the fault")
	}
	w.settle(60 * time.Second)
	logs := w.logs()
	r := check(logs)
	rc, rs := w.stats()
	t.Logf("%s: %s; faults injected %d; client reconnects %d, resubscribes %d", t.Name(), r, *faults, rc, rs)
	if r.violations != 0 || r.acked == 0 {
		t.Fatalf("invariants broken: %s", r)
	}
	return logs, w
}

func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault suite starts processes")
	}
	n := 0
	killEdge := func(c *faultCluster, _ *workload) {
		c.signalEdge(0, syscall.SIGKILL)
		n++
		time.Sleep(time.Second)
		c.startEdge(0) // same ID, new incarnation
	}
	t.Run("edge SIGKILL", func(t *testing.T) {
		n = 0
		logs, _ := faultCase(t, 2, nil, killEdge, &n)
		// The checker must catch a corrupted copy of this real stream.
		for _, l := range logs {
			if len(l.recv) > 20 {
				l.recv = append(l.recv[:10], l.recv[11:]...)
				break
			}
		}
		if r := check(logs); r.violations == 0 {
			t.Fatal("the checker missed a dropped delivery in a real stream")
		}
	})
	t.Run("edge SIGTERM drain", func(t *testing.T) {
		n = 0
		faultCase(t, 2, nil, func(c *faultCluster, _ *workload) {
			c.signalEdge(1, syscall.SIGTERM)
			n++
			c.startEdge(1)
		}, &n)
	})
	t.Run("rolling restart of every edge", func(t *testing.T) {
		n = 0
		faultCase(t, 2, nil, func(c *faultCluster, _ *workload) {
			for i := range c.edges {
				c.signalEdge(i, syscall.SIGTERM)
				n++
				c.startEdge(i)
				waitReady(c.t, c.edges[i].addr)
			}
		}, &n)
	})
	t.Run("sequencer SIGKILL", func(t *testing.T) {
		n = 0
		faultCase(t, 2, nil, func(c *faultCluster, _ *workload) {
			c.seqs["seq-1"].kill()
			n++
		}, &n)
	})
	t.Run("sequencer added", func(t *testing.T) {
		n = 0
		faultCase(t, 1, nil, func(c *faultCluster, _ *workload) {
			c.startSeq("seq-9")
			n++
		}, &n)
	})
	t.Run("broker restart", func(t *testing.T) {
		n = 0
		faultCase(t, 2, nil, func(c *faultCluster, _ *workload) {
			c.broker.kill()
			n++
			time.Sleep(500 * time.Millisecond)
			c.startBroker()
		}, &n)
	})
	t.Run("slow consumer", func(t *testing.T) {
		n = 0
		var slow *actor
		// The stalled client's edge queue may stay full for 1s; history
		// and queues are big enough for it to catch up after.
		env := []string{"CAUSEWAY_EDGE_QUEUE_FRAMES=64", "CAUSEWAY_EDGE_SLOW_CONSUMER_AFTER=1s",
			"CAUSEWAY_EDGE_QUEUE_BYTES=16777216", "CAUSEWAY_SEQUENCER_HISTORY_BYTES=33554432"}
		const slowIdx = 7
		_, w := faultCaseTiny(t, 2, env, slowIdx, func(c *faultCluster, w *workload) {
			slow = w.actors[slowIdx]
			slow.slow.Store(true)
			n++
			// Flood the group with large messages so the kernel's socket
			// buffers fill and the edge sees the stall.
			flooder := w.actors[slowIdx-1]
			big := strings.Repeat("f", 16<<10)
			for i := 0; i < 500; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := flooder.s.Send(ctx, flooder.log.group, fmt.Sprintf("flood-%d", i), big)
				cancel()
				if err != nil {
					c.t.Errorf("flood %d: %v", i, err)
					break
				}
			}
			time.Sleep(2 * time.Second)
			slow.slow.Store(false)
			close(slow.resume)
		}, &n)
		if st := slow.s.Stats(); st.Reconnects == 0 {
			t.Fatalf("the stalled client was never disconnected (stats %+v)", st)
		}
		for _, a := range w.actors {
			if a != slow && a.s.Stats().Reconnects != 0 {
				t.Fatalf("%s was disconnected too: %+v", a.log.user, a.s.Stats())
			}
		}
	})
	t.Run("client reconnects 100 times", func(t *testing.T) {
		n = 0
		var a *actor
		faultCase(t, 2, nil, func(c *faultCluster, w *workload) {
			a = w.actors[3]
			var prev *client.Client
			deadline := time.Now().Add(60 * time.Second)
			for n < 100 && time.Now().Before(deadline) {
				if cur := a.s.Client(); cur != nil && cur != prev {
					prev = cur
					_ = cur.Close()
					n++
				}
				time.Sleep(2 * time.Millisecond)
			}
		}, &n)
		if st := a.s.Stats(); st.Reconnects < 100 {
			t.Fatalf("the client reconnected only %d times", st.Reconnects)
		}
	})
	t.Run("zombie sequencer", func(t *testing.T) {
		n = 0
		faultCase(t, 2, nil, func(c *faultCluster, _ *workload) {
			z := c.seqs["seq-1"]
			const txnID = "causeway-sequencer-seq-1"
			cl, err := kgo.NewClient(kgo.SeedBrokers(c.baddr))
			if err != nil {
				c.t.Fatal(err)
			}
			defer cl.Close()
			adm := kadm.NewClient(cl)
			// Frozen three times past the session timeout (2s), so
			// seq-2 takes its partitions over and moves them on.
			// Between transactions: it wakes with the state of
			// partitions it no longer owns in memory, and must not
			// reuse it if it gets them back. In a transaction (records
			// produced, not ended), within the transaction timeout
			// (4s): the transaction is still open when it wakes, and
			// only the group generation (KIP-447) keeps it from
			// committing. In a transaction past both timeouts: the
			// broker aborts the transaction and bumps the epoch, so
			// its late writes are fenced.
			for _, f := range []struct {
				open  bool
				pause time.Duration
			}{{false, 3 * time.Second}, {true, 3 * time.Second}, {true, 6 * time.Second}} {
				before := c.stopInTransaction(z, adm, txnID, f.open)
				n++
				c.t.Logf("froze %s with its transaction %s (epoch %d) for %s", z.name, before.State, before.ProducerEpoch, f.pause)
				time.Sleep(f.pause)
				if f.open && f.pause > 4*time.Second {
					tx, err := c.describeTxn(adm, txnID)
					if err != nil {
						c.t.Fatal(err)
					}
					if tx.State == "Ongoing" && tx.ProducerEpoch == before.ProducerEpoch {
						c.t.Fatalf("the zombie's transaction is still open after %s (epoch %d): nothing fences its late writes", f.pause, tx.ProducerEpoch)
					}
				}
				if err := z.signal(syscall.SIGCONT); err != nil {
					c.t.Fatal(err)
				}
				time.Sleep(time.Second)
			}
			select {
			case <-z.done:
				c.t.Fatal("the zombie sequencer exited instead of rejoining the group")
			default:
			}
			// What the broker refused it, for the record: fencing may
			// also end as a plain abort, so this is not asserted.
			if b, err := os.ReadFile(z.log); err == nil {
				c.t.Logf("zombie: %d failed batches, %d answers PRODUCER_FENCED", strings.Count(string(b), "batch failed"), strings.Count(string(b), "PRODUCER_FENCED"))
			}
		}, &n)
	})
	t.Run("combined", func(t *testing.T) {
		n = 0
		faultCase(t, 2, nil, func(c *faultCluster, w *workload) {
			c.signalEdge(0, syscall.SIGKILL)
			n++
			c.startSeq("seq-3")
			n++
			time.Sleep(time.Second)
			c.seqs["seq-1"].kill()
			n++
			c.startEdge(0)
			c.signalEdge(2, syscall.SIGTERM)
			n++
			c.startEdge(2)
			c.broker.kill()
			n++
			time.Sleep(500 * time.Millisecond)
			c.startBroker()
		}, &n)
	})
}
