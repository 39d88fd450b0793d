package rollup_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/causeway/causeway/consumers/rollup"
	"github.com/causeway/causeway/consumers/rollup/chsink"
	"github.com/causeway/causeway/consumers/rollup/chsink/chtest"
	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
	"github.com/causeway/causeway/pipeline/devcluster"
	"github.com/prometheus/client_golang/prometheus"
)

// proxy forwards TCP to target and can be cut: cut closes every connection
// and refuses new ones until restore.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.cut {
				p.mu.Unlock()
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

// ClickHouse is optional at run time (issue: rollup and analytics): with it
// cut off, receipts summaries still reach clients, the sink reports itself
// unhealthy, and once it is back every row arrives from Kafka; a second sink
// replaying the whole topic into the same tables changes no result.
func TestAnalyticsSurviveClickHouseOutageAndReplay(t *testing.T) {
	chAddr, err := chtest.Start()
	if err != nil {
		t.Fatalf("ClickHouse for the test: %v", err)
	}
	db := chtest.Database(t, chAddr)
	px := newProxy(t, chAddr)
	chc := chsink.Config{Addr: px.addr(), Database: db}
	w, err := chsink.New(chc)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sc := &rollup.SinkConfig{
		GroupID: "causeway-rollup-sink", Writer: w, MaxRows: 1000, FlushEvery: 200 * time.Millisecond, Logger: log,
		Prepare: func(ctx context.Context) error { _, err := chsink.Migrate(ctx, chc); return err },
	}
	cl := devcluster.StartTest(t, 1, secret, func(c *devcluster.Config) { c.Analytics = sc })
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
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
		if err := c.Join(ctx, "room-a"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Subscribe(ctx, "room-a", nil); err != nil {
			t.Fatal(err)
		}
		return c
	}
	ann, ben := dial("ann"), dial("ben")
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{chAddr}, Auth: clickhouse.Auth{Database: db}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	count := func(q string) uint64 {
		var n uint64
		if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
			return 0 // tables not there yet
		}
		return n
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	receiptsSeen := func(c *client.Client, seq uint64) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case f, ok := <-c.Events():
				if !ok {
					t.Fatal("connection ended")
				}
				if f.Type == "receipts" && len(f.Raw) > 0 && containsSeq(f.Raw, seq) {
					return
				}
			case <-deadline:
				t.Fatalf("no receipts summary for seq %d", seq)
			}
		}
	}
	send := func(from, to int) uint64 {
		var last uint64
		for i := from; i < to; i++ {
			seq, err := ann.Send(ctx, "room-a", fmt.Sprint("m", i), i)
			if err != nil {
				t.Fatal(err)
			}
			last = seq
		}
		if err := ben.Read(ctx, "room-a", last); err != nil {
			t.Fatal(err)
		}
		return last
	}

	last := send(0, 5)
	receiptsSeen(ann, last)
	waitFor("the first 5 messages in ClickHouse", func() bool {
		return count("SELECT count() FROM (SELECT DISTINCT seq FROM messages)") == 5 &&
			count("SELECT max(watermark) FROM reads") == last
	})

	px.setCut(true)
	last = send(5, 10)
	// Summaries do not wait for analytics.
	receiptsSeen(ann, last)
	waitFor("the sink to notice ClickHouse is gone", func() bool { return !cl.Sink.Healthy() })
	if n := count("SELECT count() FROM (SELECT DISTINCT seq FROM messages)"); n != 5 {
		t.Fatalf("%d messages in ClickHouse while it was cut off", n)
	}

	px.setCut(false)
	waitFor("the sink to catch up", func() bool {
		return cl.Sink.Healthy() &&
			count("SELECT count() FROM (SELECT DISTINCT seq FROM messages)") == 10 &&
			count("SELECT max(watermark) FROM reads") == last &&
			count(fmt.Sprintf("SELECT toUInt64(argMax(read_count, version)) FROM receipts WHERE seq = %d", last)) == 1
	})
	before := snapshot(t, ctx, conn)

	// A replay: another sink, from the start of the topic, into the same
	// tables.
	w2, err := chsink.New(chsink.Config{Addr: chAddr, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	rc := devcluster.DefaultConfig(1, secret).Rollup
	replayCfg := rollup.SinkConfig{Kafka: rc.Kafka, Layout: rc.Layout, GroupID: "replay", Writer: w2,
		MaxRows: 1000, FlushEvery: 200 * time.Millisecond, Logger: log, Registerer: prometheus.NewRegistry()}
	replayCfg.Kafka.Brokers = []string{cl.Broker.Addr()}
	rs, err := rollup.NewSink(replayCfg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rs.Run(rctx) }()
	rows := func() uint64 { return count("SELECT count() FROM messages") }
	waitFor("the replay to write its rows", func() bool { return rows() >= 20 })
	rcancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, ctx, conn)
	for name, want := range before {
		if after[name] != want {
			t.Errorf("query %s changed after the replay:\nbefore %s\nafter  %s", name, want, after[name])
		}
	}
}

// snapshot runs every documented analytics query and renders its rows.
func snapshot(t *testing.T, ctx context.Context, conn driver.Conn) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, q := range chsink.Queries {
		rows, err := conn.Query(ctx, q.SQL)
		if err != nil {
			t.Fatalf("query %s: %v", q.Name, err)
		}
		cols := rows.ColumnTypes()
		s := ""
		for rows.Next() {
			vals := make([]any, len(cols))
			for i, c := range cols {
				vals[i] = reflect.New(c.ScanType()).Interface()
			}
			if err := rows.Scan(vals...); err != nil {
				t.Fatalf("scan %s: %v", q.Name, err)
			}
			for _, v := range vals {
				s += fmt.Sprint(reflect.ValueOf(v).Elem().Interface(), " ")
			}
			s += "\n"
		}
		rows.Close()
		out[q.Name] = s
	}
	return out
}

func containsSeq(raw []byte, seq uint64) bool {
	return bytes.Contains(raw, []byte(fmt.Sprintf(`"seq":%d,`, seq)))
}
