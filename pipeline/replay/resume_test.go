package replay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync/atomic"
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
)

var secret = []byte("replay-test-secret-0123456789abcdef0123")

// traffic sends through the cluster's edges: users u0-u5 in groups g0-g9
// (spread over the partitions), a few messages each and read watermarks.
func traffic(t *testing.T, cl *devcluster.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var cs []*client.Client
	for i := range 6 {
		tok, err := edge.Mint(secret, fmt.Sprintf("u%d", i), []string{"g*"}, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.Dial(ctx, cl.URL(i%len(cl.Edges)), tok, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		cs = append(cs, c)
	}
	for g := range 10 {
		group := fmt.Sprintf("g%d", g)
		var last uint64
		for i, c := range cs[:2+g%4] {
			if err := c.Join(ctx, group); err != nil {
				t.Fatal(err)
			}
			seq, err := c.Send(ctx, group, fmt.Sprintf("m%d", i), map[string]int{"n": i})
			if err != nil {
				t.Fatal(err)
			}
			last = seq
		}
		if err := cs[0].Read(ctx, group, last); err != nil {
			t.Fatal(err)
		}
	}
}

func options(cl *devcluster.Cluster) replay.Common {
	return replay.Common{
		Kafka:  pipeline.KafkaConfig{Brokers: []string{cl.Broker.Addr()}, ClientID: "replay-test"},
		Layout: pipeline.DefaultLayout(),
	}
}

// TestStateResume interrupts a verification after three partitions; the
// run started again with the same checkpoint skips them and finishes.
func TestStateResume(t *testing.T) {
	t.Parallel()
	cl := devcluster.StartTest(t, 2, secret, nil)
	traffic(t, cl)
	rep, _ := interruptAndResume(t, func(ctx context.Context, o replay.Common, onPartition func(replay.StatePartition)) (replay.StateReport, error) {
		return replay.State(ctx, replay.StateOptions{Common: o, Limits: sequencer.DefaultLimits(), SequencerGroup: "causeway-sequencer", Verify: true, OnPartition: onPartition})
	}, options(cl))

	// The whole verification again without a checkpoint: every key is
	// there, and the resumed run counted the same.
	full, err := replay.State(context.Background(), replay.StateOptions{Common: options(cl), Limits: sequencer.DefaultLimits(), SequencerGroup: "causeway-sequencer", Verify: true})
	if err != nil || full.Keys != rep.Keys {
		t.Errorf("full run: %d keys, %v; resumed run: %d keys", full.Keys, err, rep.Keys)
	}
}

// interruptAndResume runs a verification (verify) with a checkpoint in c,
// cancels it after three partitions and runs it again: the second run
// skips those three and finishes without differences. It returns that
// run's report and output.
func interruptAndResume(t *testing.T, verify func(context.Context, replay.Common, func(replay.StatePartition)) (replay.StateReport, error), c replay.Common) (replay.StateReport, string) {
	t.Helper()
	c.Checkpoint = filepath.Join(t.TempDir(), "checkpoint.json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := 0
	rep, err := verify(ctx, c, func(replay.StatePartition) {
		if seen++; seen == 3 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) || len(rep.Partitions) != 3 {
		t.Fatalf("interrupted run: %d partitions, %v; want 3 and context.Canceled", len(rep.Partitions), err)
	}
	var out bytes.Buffer
	c.Out = &out
	rep, err = verify(context.Background(), c, nil)
	if err != nil {
		t.Fatalf("resumed run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "resuming from checkpoint "+c.Checkpoint+": 3 of 8 partitions done") {
		t.Errorf("resumed run's output:\n%s", out.String())
	}
	resumed, keys := 0, 0
	for i, sp := range rep.Partitions {
		if sp.Partition != int32(i) || sp.Resumed != (i < 3) {
			t.Errorf("partition %d: %+v", i, sp)
		}
		if sp.Resumed {
			resumed++
		}
		keys += sp.Keys
	}
	if resumed != 3 || len(rep.Partitions) != 8 || rep.Differences != 0 || keys == 0 || keys != rep.Keys {
		t.Errorf("resumed report: %d resumed, %d partitions, %d differences, %d keys (%d)", resumed, len(rep.Partitions), rep.Differences, keys, rep.Keys)
	}
	return rep, out.String()
}

// countProgress sums what a replay reports.
type countProgress struct{ total, done int64 }

func (c *countProgress) Start(_ string, total int64) { c.total += total }
func (c *countProgress) Label(string)                {}
func (c *countProgress) Add(n int64)                 { c.done += n }
func (c *countProgress) Stop()                       {}

// cancelAfter is a Writer that cancels the run after n successful writes.
type cancelAfter struct {
	rollup.Writer
	n      int32
	writes atomic.Int32
	cancel context.CancelFunc
}

func (c *cancelAfter) Write(ctx context.Context, b rollup.Batch) error {
	err := c.Writer.Write(ctx, b)
	if err == nil && c.writes.Add(1) == c.n {
		c.cancel()
	}
	return err
}

// TestClickHouseResume interrupts a replay after two small batches and
// resumes it from its checkpoint, from either source: the database ends
// up with the same query results as an uninterrupted replay into another
// one, and the resumed run wrote only the rest (from the state topic it
// also read only the rest; from the group log it reads each partition
// from its start, to rebuild the state).
func TestClickHouseResume(t *testing.T) {
	t.Parallel()
	addr, err := chtest.Start()
	if err != nil {
		t.Fatalf("TestClickHouseResume needs a real ClickHouse and could not start one: %v", err)
	}
	cl := devcluster.StartTest(t, 2, secret, nil)
	traffic(t, cl)
	// Let the rollup count the reads.
	time.Sleep(2 * time.Second)

	sink := func(db string) *chsink.Sink {
		cfg := chsink.Config{Addr: addr, Database: db}
		if _, err := chsink.Migrate(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		s, err := chsink.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	var wholes []map[string]string
	for _, source := range []replay.Source{replay.SourceStateTopic, replay.SourceGroupLog} {
		whole, resumed := chtest.Database(t, addr), chtest.Database(t, addr)
		full, err := replay.ClickHouse(context.Background(), replay.ClickHouseOptions{Common: options(cl), Source: source, Writer: sink(whole), Target: whole, Receipts: true})
		if err != nil {
			t.Fatal(err)
		}

		cp := filepath.Join(t.TempDir(), "ch.json")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		w := sink(resumed)
		o := replay.ClickHouseOptions{Common: options(cl), Source: source, Writer: &cancelAfter{Writer: w, n: 2, cancel: cancel}, Target: resumed, Receipts: true, BatchRows: 2}
		o.Checkpoint = cp
		first, err := replay.ClickHouse(ctx, o)
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), cp) {
			t.Fatalf("%s: interrupted replay: %v, want context.Canceled naming the checkpoint", source, err)
		}
		// From the state topic a record makes at most one row, so a
		// batch is 2 rows; from the group log a partition's last batch
		// may be smaller.
		if first.Rows() < 2 || source == replay.SourceStateTopic && first.Rows() != 4 {
			t.Errorf("%s: interrupted replay wrote %d rows, want 2 batches of 2", source, first.Rows())
		}
		saved, err := os.ReadFile(cp)
		if err != nil || !bytes.Contains(saved, []byte(`"offset"`)) {
			t.Fatalf("%s: checkpoint: %v\n%s", source, err, saved)
		}
		o.Writer = w
		var out bytes.Buffer
		prog := &countProgress{}
		o.Out, o.Progress = &out, prog
		rest, err := replay.ClickHouse(context.Background(), o)
		if err != nil {
			t.Fatalf("%s: resumed replay: %v\n%s", source, err, out.String())
		}
		if prog.total == 0 || prog.done != prog.total {
			t.Errorf("%s: progress counted %d of %d records", source, prog.done, prog.total)
		}
		// Some partition resumes past its start.
		if !regexp.MustCompile(`offsets [1-9][0-9]*-[0-9]+ \(resumed at `).MatchString(out.String()) {
			t.Errorf("%s: resumed replay's output:\n%s", source, out.String())
		}
		// Rows of a message's receipts are written once per batch that
		// changed them: small batches write more rows for the same
		// results.
		if source == replay.SourceStateTopic && (rest.Records >= full.Records || rest.Rows() >= full.Rows()) || first.Rows()+rest.Rows() < full.Rows() {
			t.Errorf("%s: resumed replay read %d records (full: %d) and the two runs wrote %d+%d rows (full: %d)",
				source, rest.Records, full.Records, first.Rows(), rest.Rows(), full.Rows())
		}
		a, b := results(t, addr, whole), results(t, addr, resumed)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: an interrupted and resumed replay gives other results than a whole one:\n%v\n%v", source, a, b)
		}
		if len(a["messages_not_read_by_all"]) == 0 || len(a["read_ratio_by_group_size"]) == 0 {
			t.Errorf("%s: results lack messages or receipts: %v", source, a)
		}
		wholes = append(wholes, a)
	}
	// Both sources rebuild the same analytics (presence is timed by
	// other records: the state topic's, the group log's).
	for name, res := range wholes[0] {
		if !strings.HasPrefix(name, "presence") && res != wholes[1][name] {
			t.Errorf("%s from the state topic:\n%s\nfrom the group log:\n%s", name, res, wholes[1][name])
		}
	}
}

// results runs every chsink query on db and renders each result.
func results(t *testing.T, addr, db string) map[string]string {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Database: db}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	out := map[string]string{}
	for _, q := range chsink.Queries {
		rows, err := conn.Query(context.Background(), q.SQL)
		if err != nil {
			t.Fatalf("%s: %v", q.Name, err)
		}
		var s strings.Builder
		types := rows.ColumnTypes()
		for rows.Next() {
			dest := make([]any, len(types))
			for i, ct := range types {
				dest[i] = reflect.New(ct.ScanType()).Interface()
			}
			if err := rows.Scan(dest...); err != nil {
				t.Fatalf("%s: %v", q.Name, err)
			}
			for _, d := range dest {
				fmt.Fprintf(&s, "%v|", reflect.ValueOf(d).Elem().Interface())
			}
			s.WriteString("\n")
		}
		rows.Close()
		out[q.Name] = s.String()
	}
	return out
}
