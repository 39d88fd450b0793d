// Command rollupbench measures the read-receipts pipeline behind the edges:
// how many read receipts per second the rollup turns into counts and
// summaries (through Kafka: an embedded broker, the real rollup loop and
// its transactions), and how many rows per second the ClickHouse sink
// inserts.
//
//	go run ./benchmarks/cmd/rollupbench -out results.json
//
// The rollup part writes synthetic sequencer-changelog records (the
// rollup's input: members, messages, watermarks) straight into the state
// topic and times the rollup until it has applied them all. The ClickHouse
// part needs a ClickHouse (scripts/clickhouse.sh start; -clickhouse) and
// writes into a throwaway database it drops afterwards.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/causeway/causeway/benchmarks/internal/machine"
	"github.com/causeway/causeway/consumers/rollup"
	"github.com/causeway/causeway/consumers/rollup/chsink"
	"github.com/causeway/causeway/pipeline"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
)

var (
	groups   = flag.Int("groups", 200, "groups")
	members  = flag.Int("members", 100, "members per group")
	messages = flag.Int("messages", 50, "messages per group")
	steps    = flag.Int("steps", 5, "watermark moves per member (each reads messages/steps more)")
	chAddr   = flag.String("clickhouse", "127.0.0.1:19000", "ClickHouse native address (empty: skip the sink part)")
	rows     = flag.Int("rows", 1_000_000, "rows to insert into ClickHouse")
	batch    = flag.Int("batch", 5000, "rows per ClickHouse insert")
	out      = flag.String("out", "", "write the JSON report here")
	quick    = flag.Bool("quick", false, "a few seconds, to prove it works (CI)")
)

type report struct {
	Machine map[string]string `json:"machine"`
	Rollup  struct {
		Records          int     `json:"changelog_records"`
		Receipts         int     `json:"read_receipts"`
		Seconds          float64 `json:"seconds"`
		ReceiptsPerSec   float64 `json:"read_receipts_per_sec"`
		RecordsPerSec    float64 `json:"records_per_sec"`
		Summaries        float64 `json:"summaries"`
		ReceiptFramesCap int     `json:"naive_receipt_frames"`
	} `json:"rollup"`
	ClickHouse struct {
		Skipped    string  `json:"skipped,omitempty"`
		Rows       int     `json:"rows"`
		Batch      int     `json:"batch"`
		Seconds    float64 `json:"seconds"`
		RowsPerSec float64 `json:"rows_per_sec"`
	} `json:"clickhouse"`
}

func main() {
	flag.Parse()
	if *quick {
		*groups, *members, *messages, *rows = 5, 20, 10, 20_000
	}
	var r report
	r.Machine = map[string]string{"cpu": machine.CPUModel(), "cores": fmt.Sprint(runtime.NumCPU()), "mem": machine.MemTotal()}
	if err := benchRollup(&r); err != nil {
		log.Fatalf("rollup: %v", err)
	}
	fmt.Printf("rollup: %d read receipts (%d changelog records) in %.2fs: %.0f receipts/s, %.0f records/s, %v summaries\n",
		r.Rollup.Receipts, r.Rollup.Records, r.Rollup.Seconds, r.Rollup.ReceiptsPerSec, r.Rollup.RecordsPerSec, r.Rollup.Summaries)
	if *chAddr == "" {
		r.ClickHouse.Skipped = "no -clickhouse"
	} else if err := benchClickHouse(&r); err != nil {
		log.Fatalf("clickhouse: %v", err)
	} else {
		fmt.Printf("clickhouse: %d rows in batches of %d in %.2fs: %.0f rows/s\n", r.ClickHouse.Rows, r.ClickHouse.Batch, r.ClickHouse.Seconds, r.ClickHouse.RowsPerSec)
	}
	if *out != "" {
		if err := machine.WriteJSON(*out, r); err != nil {
			log.Fatal(err)
		}
	}
}

func benchRollup(r *report) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b, err := pipeline.NewBroker(pipeline.BrokerConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		return err
	}
	defer b.Close()
	go func() { _ = b.Run(ctx) }()
	layout := pipeline.DefaultLayout()
	kc := pipeline.KafkaConfig{Brokers: []string{b.Addr()}, ClientID: "rollupbench"}
	cl, err := kgo.NewClient(append(kc.Opts(), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := pipeline.EnsureTopics(ctx, kadm.NewClient(cl), layout); err != nil {
		return err
	}
	// The input, as the sequencer would have written it: joins, then the
	// messages, then every member's watermark in steps.
	var recs []*kgo.Record
	put := func(group, key string, m proto.Message) {
		v, _ := proto.Marshal(m)
		recs = append(recs, &kgo.Record{Topic: layout.StateTopic, Partition: pipeline.PartitionFor(group, layout.GroupPartitions), Key: []byte(key), Value: v})
	}
	receipts := 0
	for g := range *groups {
		gid := fmt.Sprintf("room-%d", g)
		for m := range *members {
			put(gid, fmt.Sprintf("%s\x00m\x00u%d", gid, m), &pb.Membership{JoinedSeq: uint64(m + 1)})
		}
		first := uint64(*members + 1)
		for i := range *messages {
			seq := first + uint64(i)
			put(gid, fmt.Sprintf("%s\x00h\x00%020d", gid, seq), &pb.Event{Group: gid, Seq: seq, TsMs: time.Now().UnixMilli(),
				Members: uint32(*members), Kind: &pb.Event_Msg{Msg: &pb.Message{From: fmt.Sprintf("u%d", i%*members)}}})
		}
		for s := 1; s <= *steps; s++ {
			upTo := first - 1 + uint64(*messages*s / *steps)
			for m := range *members {
				put(gid, fmt.Sprintf("%s\x00m\x00u%d", gid, m), &pb.Membership{JoinedSeq: uint64(m + 1), ReadSeq: upTo, ReadTsMs: time.Now().UnixMilli()})
				receipts++
			}
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("write the input: %w", err)
	}
	reg := prometheus.NewRegistry()
	rc := rollup.Config{Kafka: kc, Layout: layout, GroupID: "bench-rollup", InstanceID: "bench", Limits: rollup.DefaultLimits(),
		MaxBatch: 5000, SessionTimeout: 6 * time.Second, TransactionTimeout: 10 * time.Second, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	ru, err := rollup.New(rc)
	if err != nil {
		return err
	}
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- ru.Run(rctx) }()
	for counter(reg, "causeway_rollup_records_total") < float64(len(recs)) {
		if ctx.Err() != nil {
			rcancel()
			return ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	time.Sleep(time.Second) // the last window's summaries
	r.Rollup.Summaries = counter(reg, "causeway_rollup_summaries_total")
	rcancel()
	if err := <-done; err != nil {
		return err
	}
	r.Rollup.Records, r.Rollup.Receipts, r.Rollup.Seconds = len(recs), receipts, took.Seconds()
	r.Rollup.ReceiptsPerSec = float64(receipts) / took.Seconds()
	r.Rollup.RecordsPerSec = float64(len(recs)) / took.Seconds()
	r.Rollup.ReceiptFramesCap = *groups * *members * (*members - 1) * *messages
	return nil
}

func counter(reg *prometheus.Registry, name string) float64 {
	mfs, _ := reg.Gather()
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			total += value(m)
		}
	}
	return total
}

func value(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetGauge().GetValue()
}

func benchClickHouse(r *report) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	db := fmt.Sprintf("causeway_bench_%d", time.Now().UnixNano())
	cfg := chsink.Config{Addr: *chAddr, Database: db}
	if _, err := chsink.Migrate(ctx, cfg); err != nil {
		return fmt.Errorf("migrate (is ClickHouse running? scripts/clickhouse.sh start): %w", err)
	}
	defer func() {
		if conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{*chAddr}}); err == nil {
			_ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
			conn.Close()
		}
	}()
	s, err := chsink.New(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	// A realistic mix: per message, one message row, a receipt aggregate
	// and a handful of watermark moves.
	now := time.Now()
	written := 0
	start := time.Now()
	for seq := uint64(1); written < *rows; seq++ {
		var b rollup.Batch
		for b.Len() < *batch {
			g := fmt.Sprintf("room-%d", seq%100)
			b.Messages = append(b.Messages, rollup.MessageRow{Group: g, Seq: seq, Sender: "u1", SentAt: now, MembersAtSend: 100})
			b.Receipts = append(b.Receipts, rollup.ReceiptRow{Group: g, Seq: seq, Sender: "u1", SentAt: now, MembersAtSend: 100, ReadCount: 99, Version: 1})
			for u := range 4 {
				b.Reads = append(b.Reads, rollup.ReadRow{Group: g, User: fmt.Sprintf("u%d", u), Watermark: seq, ReadAt: now})
			}
			seq++
		}
		if err := s.Write(ctx, b); err != nil {
			return err
		}
		written += b.Len()
	}
	took := time.Since(start)
	r.ClickHouse.Rows, r.ClickHouse.Batch, r.ClickHouse.Seconds = written, *batch, took.Seconds()
	r.ClickHouse.RowsPerSec = float64(written) / took.Seconds()
	return nil
}
