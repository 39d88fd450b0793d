package rollup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/causeway/causeway/pipeline"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
)

// Writer is the analytics store (ClickHouse: consumers/rollup/chsink).
// Writing the same batch twice must not change any result: the sink
// delivers at least once.
type Writer interface {
	Write(ctx context.Context, b Batch) error
}

// SinkConfig configures the analytics sink.
type SinkConfig struct {
	Kafka  pipeline.KafkaConfig
	Layout pipeline.Layout
	// GroupID is the sink's own consumer group: its offsets move only
	// after a batch is written, so a store that is down makes it wait and
	// catch up from Kafka, without holding up the receipts summaries.
	GroupID string
	Writer  Writer
	// Prepare, if set, runs (and is retried) before the first write: e.g.
	// creating the tables in `causeway dev`.
	Prepare func(ctx context.Context) error
	// MaxRows bounds one batch (and so the sink's memory while the store
	// is down); FlushEvery bounds how long rows wait.
	MaxRows    int
	FlushEvery time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Sink turns the sequencer's changelog into analytics rows: messages,
// member events, read watermarks and presence sessions, each a pure
// function of one record, plus the rollup's per-message receipt
// aggregates (latest per message).
type Sink struct {
	cfg     SinkConfig
	log     *slog.Logger
	healthy atomic.Bool

	mu       sync.Mutex
	receipts map[string]ReceiptRow // latest per group/seq, until written

	rows, failures prometheus.Counter
	up             prometheus.Gauge
	lag            prometheus.Gauge
}

// NewSink validates cfg.
func NewSink(cfg SinkConfig) (*Sink, error) {
	switch {
	case cfg.Writer == nil:
		return nil, errors.New("sink: no writer")
	case cfg.GroupID == "":
		return nil, errors.New("sink: empty consumer group")
	case cfg.MaxRows < 1 || cfg.FlushEvery <= 0:
		return nil, fmt.Errorf("sink: max rows %d and flush interval %s must be positive", cfg.MaxRows, cfg.FlushEvery)
	}
	if err := cfg.Layout.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Sink{cfg: cfg, log: cfg.Logger.With("role", "rollup-sink"), receipts: make(map[string]ReceiptRow),
		rows: prometheus.NewCounter(prometheus.CounterOpts{Name: "causeway_rollup_sink_rows_total", Help: "Rows written to the analytics store."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "causeway_rollup_sink_errors_total", Help: "Failed writes to the analytics store (retried)."}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "causeway_rollup_sink_up", Help: "1 while the last write to the analytics store succeeded."}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "causeway_rollup_sink_lag_seconds", Help: "Age of the oldest record in the batch being written."}),
	}
	s.healthy.Store(true)
	s.up.Set(1)
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(s.rows, s.failures, s.up, s.lag)
	}
	return s, nil
}

// Healthy reports whether the store takes writes (for /readyz).
func (s *Sink) Healthy() bool { return s.healthy.Load() }

// AddReceipts queues receipt aggregates; the latest per message wins, so
// memory is bounded by the messages the rollup tracks. It never blocks.
func (s *Sink) AddReceipts(rows []ReceiptRow) {
	s.mu.Lock()
	for _, r := range rows {
		s.receipts[fmt.Sprintf("%s\x00%d", r.Group, r.Seq)] = r
	}
	s.mu.Unlock()
}

func (s *Sink) takeReceipts() []ReceiptRow {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ReceiptRow, 0, len(s.receipts))
	for _, r := range s.receipts {
		out = append(out, r)
	}
	clear(s.receipts)
	return out
}

// putBack returns unwritten receipt rows unless newer ones arrived.
func (s *Sink) putBack(rows []ReceiptRow) {
	s.mu.Lock()
	for _, r := range rows {
		k := fmt.Sprintf("%s\x00%d", r.Group, r.Seq)
		if cur, ok := s.receipts[k]; !ok || cur.Version < r.Version {
			s.receipts[k] = r
		}
	}
	s.mu.Unlock()
}

// Run consumes and writes until ctx is done.
func (s *Sink) Run(ctx context.Context) error {
	cl, err := kgo.NewClient(append(s.cfg.Kafka.Opts(),
		kgo.ConsumerGroup(s.cfg.GroupID),
		kgo.ConsumeTopics(s.cfg.Layout.StateTopic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)...)
	if err != nil {
		return fmt.Errorf("sink client: %w", err)
	}
	defer cl.Close()
	if p := s.cfg.Prepare; p != nil {
		for attempt := 0; ; attempt++ {
			err := p(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			s.down(err)
			if !sleepCtx(ctx, backoff(attempt)) {
				return nil
			}
		}
		s.back(0)
	}
	for ctx.Err() == nil {
		var b Batch
		var oldest time.Time
		deadline := time.Now().Add(s.cfg.FlushEvery)
		for b.Len() < s.cfg.MaxRows && time.Now().Before(deadline) && ctx.Err() == nil {
			pctx, cancel := context.WithDeadline(ctx, deadline)
			fs := cl.PollRecords(pctx, s.cfg.MaxRows-b.Len())
			cancel()
			fs.EachRecord(func(r *kgo.Record) {
				if oldest.IsZero() || r.Timestamp.Before(oldest) {
					oldest = r.Timestamp
				}
				rowsOf(&b, r)
			})
		}
		receipts := s.takeReceipts()
		b.Receipts = append(b.Receipts, receipts...)
		if b.Len() == 0 {
			continue
		}
		if !oldest.IsZero() {
			s.lag.Set(time.Since(oldest).Seconds())
		}
		// Retry until written: the batch and Kafka hold everything, and
		// nothing waits on the sink but the sink.
		for attempt := 0; ; attempt++ {
			werr := s.cfg.Writer.Write(ctx, b)
			if werr == nil {
				break
			}
			if ctx.Err() != nil {
				s.putBack(receipts)
				return nil
			}
			s.down(werr)
			if !sleepCtx(ctx, backoff(attempt)) {
				s.putBack(receipts)
				return nil
			}
		}
		s.back(b.Len())
		s.rows.Add(float64(b.Len()))
		if err := cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
			// Rows already written are written again later: harmless.
			s.log.Warn("commit sink offsets", "err", err)
		}
	}
	return nil
}

// rowsOf adds the rows one sequencer changelog record stands for.
func rowsOf(b *Batch, r *kgo.Record) {
	parts := strings.SplitN(string(r.Key), keySep, 3)
	if len(parts) != 3 {
		return
	}
	gid, kind, sub := parts[0], parts[1], parts[2]
	at := r.Timestamp.UTC()
	if user, ok := strings.CutPrefix(gid, streamPrefix); ok {
		if kind != "a" {
			return
		}
		p := PresenceRow{User: user, Session: sub, Version: uint64(r.Timestamp.UnixMilli())}
		if r.Value == nil {
			p.OfflineAt = at
		} else {
			var a pb.Attachment
			if proto.Unmarshal(r.Value, &a) != nil {
				return
			}
			p.Edge, p.OnlineAt = a.GetEdge(), at
		}
		b.Presence = append(b.Presence, p)
		return
	}
	if r.Value == nil {
		return
	}
	switch kind {
	case seqKindHist:
		var ev pb.Event
		if proto.Unmarshal(r.Value, &ev) != nil {
			return
		}
		switch k := ev.GetKind().(type) {
		case *pb.Event_Msg:
			b.Messages = append(b.Messages, MessageRow{Group: gid, Seq: ev.GetSeq(), Sender: k.Msg.GetFrom(), SentAt: ms(ev.GetTsMs()), MembersAtSend: ev.GetMembers()})
		case *pb.Event_Member:
			b.Members = append(b.Members, MemberRow{Group: gid, Seq: ev.GetSeq(), User: k.Member.GetUser(), Joined: k.Member.GetChange() == pb.Member_JOINED, At: ms(ev.GetTsMs())})
		}
	case seqKindMember:
		var m pb.Membership
		if proto.Unmarshal(r.Value, &m) != nil || m.GetReadSeq() == 0 {
			return
		}
		b.Reads = append(b.Reads, ReadRow{Group: gid, User: sub, Watermark: m.GetReadSeq(), ReadAt: ms(m.GetReadTsMs())})
	}
}

func (s *Sink) down(err error) {
	s.failures.Inc()
	s.up.Set(0)
	if s.healthy.Swap(false) {
		s.log.Warn("analytics store unavailable; receipts summaries go on, rows wait in Kafka", "err", err)
	}
}

func (s *Sink) back(rows int) {
	s.up.Set(1)
	if !s.healthy.Swap(true) {
		s.log.Info("analytics store back", "rows", rows)
	}
}

func backoff(attempt int) time.Duration {
	return min(30*time.Second, time.Duration(attempt+1)*500*time.Millisecond)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
