package replay

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/causeway/causeway/pipeline"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// readAll reads spans to the end (or until ctx is done) and returns the
// values read, in order.
func readAll(ctx context.Context, t *testing.T, kc pipeline.KafkaConfig, topic string, spans map[int32]span) ([]string, *reader, error) {
	t.Helper()
	rd, err := newReader(kc, topic, spans, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rd.Close)
	var got []string
	var advanced int64
	for !rd.Done() {
		recs, n, err := rd.Next(ctx)
		advanced += n
		for _, r := range recs {
			got = append(got, string(r.Value))
		}
		if err != nil {
			return got, rd, err
		}
	}
	var want int64
	for _, s := range spans {
		want += max(0, s.End-s.From)
	}
	if advanced != want {
		t.Errorf("progress counted %d offsets, want %d", advanced, want)
	}
	return got, rd, nil
}

// TestReaderTransactions reads a partition that interleaves plain
// records, a committed and an aborted transaction, and one still open, the
// way a read_committed consumer sees it, for ranges that start inside a
// transaction and end on an aborted record or before an open one.
func TestReaderTransactions(t *testing.T) {
	t.Parallel()
	b, err := pipeline.NewBroker(pipeline.BrokerConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	kc := pipeline.KafkaConfig{Brokers: []string{b.Addr()}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const topic = "t"
	plain, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := kadm.NewClient(plain).CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	txn := func(id string) *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic(topic), kgo.TransactionalID(id))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	off := map[string]int64{}
	produce := func(cl *kgo.Client, vals ...string) {
		t.Helper()
		for _, v := range vals {
			r, err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).First()
			if err != nil {
				t.Fatal(err)
			}
			off[v] = r.Offset
		}
	}
	end := func(cl *kgo.Client, commit kgo.TransactionEndTry) {
		t.Helper()
		if err := cl.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	p1, p2 := txn("p1"), txn("p2")
	produce(plain, "a")
	if err := p1.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produce(p1, "b", "c")
	produce(plain, "d") // behind the open transaction
	end(p1, kgo.TryCommit)
	if err := p1.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produce(p1, "e")
	end(p1, kgo.TryAbort)
	produce(plain, "f")
	if err := p2.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produce(p2, "g") // left open

	for _, tc := range []struct {
		name string
		s    span
		want []string
	}{
		{"to the open transaction", span{0, off["g"]}, []string{"a", "b", "c", "d", "f"}},
		{"ending on an aborted record", span{0, off["e"] + 1}, []string{"a", "b", "c", "d"}},
		{"from inside a transaction", span{off["c"], off["f"] + 1}, []string{"c", "d", "f"}},
		{"empty", span{3, 3}, nil},
	} {
		got, rd, err := readAll(ctx, t, kc, topic, map[int32]span{0: tc.s})
		if err != nil || !equal(got, tc.want) {
			t.Errorf("%s %v: %q, %v; want %q", tc.name, tc.s, got, err, tc.want)
		}
		if r := rd.Resume(0); r != tc.s.End {
			t.Errorf("%s: resume at %d after the end, want %d", tc.name, r, tc.s.End)
		}
	}

	// Into the open transaction: the read waits for it, and can resume
	// from the first record it still holds.
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
	got, rd, err := readAll(wctx, t, kc, topic, map[int32]span{0: {0, off["g"] + 1}})
	wcancel()
	if !errors.Is(err, context.DeadlineExceeded) || !equal(got, []string{"a", "b", "c", "d", "f"}) {
		t.Fatalf("read into an open transaction: %q, %v; want a-f then a timeout", got, err)
	}
	resume := rd.Resume(0)
	if resume != off["g"] {
		t.Fatalf("resume at %d, want %d (the open record)", resume, off["g"])
	}
	end(p2, kgo.TryCommit)
	got, _, err = readAll(ctx, t, kc, topic, map[int32]span{0: {resume, off["g"] + 1}})
	if err != nil || !equal(got, []string{"g"}) {
		t.Fatalf("resumed read: %q, %v; want g", got, err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
