package inspect_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
	"github.com/causeway/causeway/pipeline"
	"github.com/causeway/causeway/pipeline/devcluster"
	"github.com/causeway/causeway/pipeline/inspect"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
)

var secret = []byte("inspect-test-secret-0123456789abcdef")

// collect is a Sink that keeps records (safe for a reader in another
// goroutine) and counts flushes.
type collect struct {
	mu      sync.Mutex
	recs    []inspect.Record
	flushes int
}

func (c *collect) Write(r inspect.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, r)
	return nil
}

func (c *collect) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushes++
	return nil
}

func (c *collect) snapshot() []inspect.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]inspect.Record(nil), c.recs...)
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func run(t *testing.T, o inspect.Options) []inspect.Record {
	t.Helper()
	var c collect
	if err := inspect.Run(timeout(t, 30*time.Second), o, &c); err != nil {
		t.Fatalf("inspect %s (partition %d, from %s, to %s, group %q): %v", o.Topic, o.Partition, o.From, o.To, o.Group, err)
	}
	return c.recs
}

func dial(t *testing.T, url, user string) *client.Client {
	t.Helper()
	tok, err := edge.Mint(secret, user, []string{"room-*"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(timeout(t, 10*time.Second), url, tok, nil)
	if err != nil {
		t.Fatalf("dial %s as %s: %v", url, user, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func joinSub(t *testing.T, c *client.Client, g string) {
	t.Helper()
	ctx := timeout(t, 10*time.Second)
	if err := c.Join(ctx, g); err != nil {
		t.Fatalf("%s join %s: %v", c.User(), g, err)
	}
	if _, err := c.Subscribe(ctx, g, nil); err != nil {
		t.Fatalf("%s subscribe %s: %v", c.User(), g, err)
	}
}

// waitSeq reads c's events until it saw group g's msg with seq.
func waitSeq(t *testing.T, c *client.Client, g string, seq uint64) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case f := <-c.Events():
			if f.Type == "msg" && f.Group == g && f.Seq >= seq {
				return
			}
		case <-deadline:
			t.Fatalf("%s did not see %s seq %d", c.User(), g, seq)
		}
	}
}

// TestInspectDevCluster reads what a running cluster wrote: two users on
// two edges talk in room-1 (and room-2 elsewhere), and one undecodable
// record sits in room-1's partition.
func TestInspectDevCluster(t *testing.T) {
	t.Parallel()
	cl := devcluster.StartTest(t, 2, secret, nil)
	layout := pipeline.DefaultLayout()
	kc := pipeline.KafkaConfig{Brokers: []string{cl.Broker.Addr()}, ClientID: "inspect-test"}

	alice, bob := dial(t, cl.URL(0), "alice"), dial(t, cl.URL(1), "bob")
	joinSub(t, alice, "room-1")
	joinSub(t, bob, "room-1")
	var last uint64
	for i := range 3 {
		seq, err := alice.Send(timeout(t, 10*time.Second), "room-1", fmt.Sprintf("a%d", i), map[string]any{"n": i})
		if err != nil {
			t.Fatalf("alice send: %v", err)
		}
		last = seq
	}
	seq, err := bob.Send(timeout(t, 10*time.Second), "room-1", "b0", "hello from bob")
	if err != nil {
		t.Fatalf("bob send: %v", err)
	}
	if seq != last+1 {
		t.Fatalf("bob's seq %d after alice's %d", seq, last)
	}
	last = seq
	waitSeq(t, alice, "room-1", last)
	joinSub(t, bob, "room-2")
	if _, err := bob.Send(timeout(t, 10*time.Second), "room-2", "b1", "elsewhere"); err != nil {
		t.Fatal(err)
	}

	// A record no schema decodes, in room-1's partition, as a buggy or
	// foreign producer would leave it.
	p := pipeline.PartitionFor("room-1", layout.GroupPartitions)
	prod, err := kgo.NewClient(kgo.SeedBrokers(cl.Broker.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	garbage := []byte("not protobuf \xff\xff")
	if err := prod.ProduceSync(timeout(t, 10*time.Second), &kgo.Record{Topic: layout.GroupTopic, Partition: p, Key: []byte("room-1"), Value: garbage}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitSeq(t, bob, "room-2", 1) // everything before is sequenced too: room-2 was sent last

	base := inspect.Options{Kafka: kc, Layout: layout, Partition: -1}

	t.Run("group log of one group", func(t *testing.T) {
		o := base
		o.Topic, o.Group = "groups", "room-1"
		recs := run(t, o)
		kinds := map[string]int{}
		var bodies []string
		prev := int64(-1)
		var undecodable int
		for _, r := range recs {
			if r.Partition != p || string(r.Key) != "room-1" || r.Topic != layout.GroupTopic {
				t.Errorf("record %d/%d key %q: outside room-1's partition %d", r.Partition, r.Offset, r.Key, p)
			}
			if r.Offset <= prev {
				t.Errorf("offset %d after %d", r.Offset, prev)
			}
			prev = r.Offset
			if r.Err != nil {
				undecodable++
				if !bytes.Equal(r.Raw, garbage) || r.Schema != "causeway.v1.GroupEvent" {
					t.Errorf("undecodable record: raw %q schema %q", r.Raw, r.Schema)
				}
				continue
			}
			ev := r.Value.(*pb.GroupEvent)
			if r.Version == nil || *r.Version != 1 || ev.GetGroup() != "room-1" {
				t.Errorf("offset %d: version %v group %q", r.Offset, r.Version, ev.GetGroup())
			}
			if r.Timestamp.IsZero() || time.Since(r.Timestamp) > time.Minute {
				t.Errorf("offset %d: timestamp %v", r.Offset, r.Timestamp)
			}
			kind := string(ev.ProtoReflect().WhichOneof(ev.ProtoReflect().Descriptor().Oneofs().ByName("kind")).Name())
			kinds[kind]++
			if s := ev.GetSend(); s != nil {
				bodies = append(bodies, ev.GetUser()+":"+string(s.GetBody()))
			}
		}
		if undecodable != 1 {
			t.Errorf("%d undecodable records, want 1", undecodable)
		}
		if kinds["join"] != 2 || kinds["attach"] != 2 || kinds["send"] != 4 || kinds["heartbeat"] != 0 {
			t.Errorf("kinds %v: want 2 joins, 2 attaches, 4 sends and no heartbeat (empty key)", kinds)
		}
		want := []string{`alice:{"n":0}`, `alice:{"n":1}`, `alice:{"n":2}`, `bob:"hello from bob"`}
		if strings.Join(bodies, " ") != strings.Join(want, " ") {
			t.Errorf("send bodies %q, want %q", bodies, want)
		}

		// The JSON lines: protojson with the .proto's names, the body in
		// base64, the undecodable value in hex.
		var buf bytes.Buffer
		js := inspect.NewJSONSink(&buf)
		for _, r := range recs {
			if err := js.Write(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := js.Flush(); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != len(recs) {
			t.Fatalf("%d JSON lines for %d records", len(lines), len(recs))
		}
		var sawBody, sawHex bool
		for _, ln := range lines {
			var l struct {
				Partition int32
				Offset    int64
				Timestamp string
				Key       string
				Schema    string
				Version   *uint32
				Value     map[string]any
				Error     string
				ValueHex  string `json:"value_hex"`
			}
			if err := json.Unmarshal([]byte(ln), &l); err != nil {
				t.Fatalf("line %s: %v", ln, err)
			}
			if _, err := time.Parse(time.RFC3339, l.Timestamp); err != nil || l.Key != "room-1" || l.Partition != p {
				t.Errorf("line %s: timestamp, key or partition wrong", ln)
			}
			if l.Error != "" {
				sawHex = l.ValueHex == fmt.Sprintf("%x", garbage) && l.Value == nil
				continue
			}
			if l.Version == nil || *l.Version != 1 || l.Schema != "causeway.v1.GroupEvent" {
				t.Errorf("line %s: schema or version wrong", ln)
			}
			if s, ok := l.Value["send"].(map[string]any); ok && s["client_msg_id"] == "b0" {
				sawBody = s["body"] == base64.StdEncoding.EncodeToString([]byte(`"hello from bob"`)) && l.Value["user"] == "bob"
			}
		}
		if !sawBody || !sawHex {
			t.Errorf("JSON lines lack bob's send (%v) or the undecodable hex (%v):\n%s", sawBody, sawHex, buf.String())
		}

		// An offset range of the same partition is exactly that range.
		o.From, o.To = inspect.OffsetBound(recs[1].Offset), inspect.OffsetBound(recs[3].Offset)
		sub := run(t, o)
		if len(sub) == 0 || sub[0].Offset != recs[1].Offset || sub[len(sub)-1].Offset >= recs[3].Offset {
			t.Errorf("from %d to %d gave %d records %v", recs[1].Offset, recs[3].Offset, len(sub), offsets(sub))
		}
		// A time range: from the last send's timestamp on.
		o.From, o.To = inspect.TimeBound(recs[len(recs)-2].Timestamp), inspect.Bound{}
		for _, r := range run(t, o) {
			if r.Timestamp.Before(recs[len(recs)-2].Timestamp) {
				t.Errorf("from time %v gave a record of %v", o.From, r.Timestamp)
			}
		}
		o.From, o.Partition = inspect.Bound{}, (p+1)%layout.GroupPartitions
		var c collect
		if err := inspect.Run(timeout(t, 10*time.Second), o, &c); !errors.Is(err, inspect.ErrGroupPartition) {
			t.Errorf("group with another partition: %v, want ErrGroupPartition", err)
		}
	})

	t.Run("sequencer state", func(t *testing.T) {
		o := base
		o.Topic, o.Group = layout.StateTopic, "room-1"
		recs := run(t, o)
		var lastSeq uint64
		kinds := map[string]bool{}
		for _, r := range recs {
			if r.Err != nil || r.StateKey == nil || r.StateKey.Group != "room-1" {
				t.Errorf("state record %d key %q: %v", r.Offset, r.Key, r.Err)
				continue
			}
			kinds[r.StateKey.Kind] = true
			if m, ok := r.Value.(*pb.GroupMeta); ok {
				lastSeq = m.GetSeq()
			}
			if r.StateKey.Kind == "history" && (r.Version != nil || r.Schema != "causeway.v1.Event") {
				t.Errorf("history record: schema %s version %v", r.Schema, r.Version)
			}
			if r.Open {
				t.Errorf("state record %d shown as open: the sequencer commits every transaction", r.Offset)
			}
		}
		if lastSeq != last {
			t.Errorf("last GroupMeta seq %d, want %d", lastSeq, last)
		}
		for _, k := range []string{"meta", "member", "attachment", "dedup", "history"} {
			if !kinds[k] {
				t.Errorf("no %s record in room-1's state (kinds %v)", k, kinds)
			}
		}
	})

	t.Run("deliveries", func(t *testing.T) {
		o := base
		o.Topic, o.Group = "deliveries", "room-1"
		seen := map[string]map[uint64]bool{} // edge -> seqs
		for _, r := range run(t, o) {
			d, ok := r.Value.(*pb.Delivery)
			if !ok || d.GetGroup() != "room-1" || string(r.Key) != d.GetEdge() {
				t.Errorf("delivery %d/%d: %v %v", r.Partition, r.Offset, r.Value, r.Err)
				continue
			}
			if seen[d.GetEdge()] == nil {
				seen[d.GetEdge()] = map[uint64]bool{}
			}
			if s := d.GetEvent().GetSeq(); s != 0 {
				seen[d.GetEdge()][s] = true
			}
		}
		for _, e := range []string{"edge-1", "edge-2"} {
			for s := uint64(3); s <= last; s++ { // both subscribed from seq 2 on
				if !seen[e][s] {
					t.Errorf("no delivery of seq %d to %s (seen %v)", s, e, seen[e])
				}
			}
		}
	})

	t.Run("table", func(t *testing.T) {
		o := base
		o.Topic, o.Group = "groups", "room-1"
		var buf bytes.Buffer
		if err := inspect.Run(timeout(t, 30*time.Second), o, inspect.NewTableSink(&buf)); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
		if !strings.HasPrefix(lines[0], "PARTITION") || len(lines) < 10 {
			t.Fatalf("table:\n%s", buf.String())
		}
		col := strings.Index(lines[0], "VALUE")
		var undecodable int
		for _, l := range lines[1:] {
			if len(l) < col || l[col-2:col] != "  " || l[col] == ' ' {
				t.Errorf("row not aligned on VALUE at %d: %q", col, l)
			}
			if strings.Contains(l, "UNDECODABLE") {
				undecodable++
			}
		}
		if undecodable != 1 || !strings.Contains(buf.String(), "GroupEvent") {
			t.Errorf("table lacks the undecodable row or the schema:\n%s", buf.String())
		}
	})

	t.Run("follow", func(t *testing.T) {
		o := base
		o.Topic, o.Group, o.Follow = "groups", "room-2", true
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var c collect
		done := make(chan error, 1)
		go func() { done <- inspect.Run(ctx, o, &c) }()
		hasSend := func(id string) bool {
			for _, r := range c.snapshot() {
				if ev, ok := r.Value.(*pb.GroupEvent); ok && ev.GetSend().GetClientMsgId() == id {
					return true
				}
			}
			return false
		}
		waitFor(t, "the existing send", func() bool { return hasSend("b1") })
		if _, err := bob.Send(timeout(t, 10*time.Second), "room-2", "b2", "later"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the new send", func() bool { return hasSend("b2") })
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("follow ended with %v, want nil on cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("follow did not stop on cancel")
		}
		for _, r := range c.snapshot() {
			if string(r.Key) != "room-2" {
				t.Errorf("follow of room-2 gave key %q", r.Key)
			}
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func offsets(rs []inspect.Record) []int64 {
	var o []int64
	for _, r := range rs {
		o = append(o, r.Offset)
	}
	return o
}

// TestInspectTransactions: committed transactions are shown, aborted ones
// are not, and one still open when the read stops is shown marked open.
func TestInspectTransactions(t *testing.T) {
	t.Parallel()
	b, err := pipeline.NewBroker(pipeline.BrokerConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	layout := pipeline.DefaultLayout()
	layout.DeliveryPartitions = 1
	kc := pipeline.KafkaConfig{Brokers: []string{b.Addr()}}
	adm, err := kgo.NewClient(kc.Opts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if err := pipeline.EnsureTopics(timeout(t, 10*time.Second), kadm.NewClient(adm), layout); err != nil {
		t.Fatal(err)
	}
	delivery := func(seq uint64) []byte {
		v, _ := proto.Marshal(&pb.Delivery{Version: 1, Edge: "e", Group: "g", Event: &pb.Event{Group: "g", Seq: seq}})
		return v
	}
	txn := func(id string, seqs []uint64, commit *bool) {
		t.Helper()
		cl, err := kgo.NewClient(append(kc.Opts(), kgo.TransactionalID(id), kgo.DefaultProduceTopic(layout.DeliveryTopic))...)
		if err != nil {
			t.Fatal(err)
		}
		ctx := timeout(t, 10*time.Second)
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, s := range seqs {
			if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("e"), Value: delivery(s)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if commit == nil {
			t.Cleanup(cl.Close) // left open
			return
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(*commit)); err != nil {
			t.Fatal(err)
		}
		cl.Close()
	}
	yes, no := true, false
	txn("t1", []uint64{1, 2}, &yes)
	txn("t2", []uint64{100, 101}, &no)
	txn("t3", []uint64{3}, &yes)
	txn("t4", []uint64{4, 5}, nil)

	recs := run(t, inspect.Options{Kafka: kc, Layout: layout, Topic: "deliveries", Partition: -1})
	var got []string
	for _, r := range recs {
		s := fmt.Sprint(r.Value.(*pb.Delivery).GetEvent().GetSeq())
		if r.Open {
			s += "(open)"
		}
		got = append(got, s)
	}
	if want := "1 2 3 4(open) 5(open)"; strings.Join(got, " ") != want {
		t.Errorf("deliveries %q, want %q", strings.Join(got, " "), want)
	}
}

func TestParseBound(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	for in, want := range map[string]inspect.Bound{
		"":                          {},
		"0":                         inspect.OffsetBound(0),
		" 1200 ":                    inspect.OffsetBound(1200),
		"2026-01-02T15:04:05Z":      inspect.TimeBound(ts),
		"2026-01-02T16:04:05+01:00": inspect.TimeBound(ts),
	} {
		got, err := inspect.ParseBound(in)
		if err != nil || got.IsSet() != want.IsSet() || got.Offset != want.Offset || !got.Time.Equal(want.Time) {
			t.Errorf("ParseBound(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "yesterday", "2026-01-02", "12abc", "0x10"} {
		if _, err := inspect.ParseBound(in); err == nil {
			t.Errorf("ParseBound(%q): no error", in)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	ok := inspect.Options{Kafka: pipeline.KafkaConfig{Brokers: []string{"127.0.0.1:9092"}}, Layout: pipeline.DefaultLayout(), Topic: "causeway.groups", Partition: -1}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	bad := map[string]func(*inspect.Options){
		"unknown topic": func(o *inspect.Options) { o.Topic = "other" },
		"partition -2":  func(o *inspect.Options) { o.Partition = -2 },
		"from after to": func(o *inspect.Options) { o.From, o.To = inspect.OffsetBound(10), inspect.OffsetBound(5) },
		"empty range":   func(o *inspect.Options) { o.From, o.To = inspect.OffsetBound(5), inspect.OffsetBound(5) },
		"time reversed": func(o *inspect.Options) {
			o.From, o.To = inspect.TimeBound(time.Now()), inspect.TimeBound(time.Now().Add(-time.Hour))
		},
		"no brokers":     func(o *inspect.Options) { o.Kafka.Brokers = nil },
		"invalid layout": func(o *inspect.Options) { o.Layout.GroupPartitions = 0 },
	}
	for name, f := range bad {
		o := ok
		f(&o)
		if err := o.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
