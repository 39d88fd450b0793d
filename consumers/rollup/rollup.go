package rollup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/causeway/causeway/pipeline"
	"github.com/causeway/causeway/schemas"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
)

// Config configures a rollup process.
type Config struct {
	Kafka  pipeline.KafkaConfig
	Layout pipeline.Layout
	// GroupID is the Kafka consumer group shared by all rollups.
	GroupID string
	// InstanceID is unique per running rollup and stable across its
	// restarts (it names the transactional ID).
	InstanceID string
	Limits     Limits
	MaxBatch   int
	// CommitInterval is how long one transaction collects polls before
	// it commits (zero: 100ms). It delays summaries and analytics rows by
	// at most that much.
	CommitInterval     time.Duration
	SessionTimeout     time.Duration
	TransactionTimeout time.Duration
	// Receipts, if set, gets the per-message receipt aggregates after
	// every committed transaction (the ClickHouse sink). It must not
	// block: the summaries to clients never wait for analytics.
	Receipts   func([]ReceiptRow)
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if err := c.Layout.Validate(); err != nil {
		return err
	}
	switch {
	case c.GroupID == "" || c.InstanceID == "":
		return errors.New("rollup.group_id and the instance ID must not be empty")
	case c.Limits.Window <= 0:
		return fmt.Errorf("rollup.window %s: must be positive", c.Limits.Window)
	case c.Limits.MaxMessages < 1 || c.Limits.CountsOnlyAbove < 1 || c.Limits.SenderOnlyAbove < c.Limits.CountsOnlyAbove || c.Limits.SlowFactor < 1:
		return fmt.Errorf("rollup limits %+v: max messages, counts-only size and slow factor must be at least 1, and the sender-only size at least the counts-only size", c.Limits)
	case c.CommitInterval < 0 || c.CommitInterval > c.Limits.Window:
		return fmt.Errorf("rollup.commit_interval %s: must be between 0 (default) and rollup.window (%s)", c.CommitInterval, c.Limits.Window)
	case c.MaxBatch < 1:
		return fmt.Errorf("rollup max batch %d: must be at least 1", c.MaxBatch)
	case c.SessionTimeout < time.Second || c.TransactionTimeout < time.Second:
		return errors.New("rollup session and transaction timeouts must be at least 1s")
	}
	return nil
}

type metrics struct {
	records, summaries, undecodable prometheus.Counter
	txns                            *prometheus.CounterVec
	groups                          prometheus.Gauge
	lag                             *prometheus.GaugeVec
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		records: prometheus.NewCounter(prometheus.CounterOpts{Name: "causeway_rollup_records_total", Help: "Sequencer changelog records applied."}),
		summaries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "causeway_rollup_summaries_total", Help: "Coalesced receipts summaries written to the group log."}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "causeway_rollup_undecodable_total", Help: "Changelog records the rollup could not decode and skipped."}),
		txns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "causeway_rollup_transactions_total", Help: "Rollup transactions, by result."}, []string{"result"}),
		groups: prometheus.NewGauge(prometheus.GaugeOpts{Name: "causeway_rollup_groups", Help: "Groups with rollup state in this process."}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "causeway_rollup_lag_records", Help: "Sequencer-changelog records behind the high watermark, per partition (at the last fetch)."}, []string{"partition"}),
	}
	if r != nil {
		r.MustRegister(m.records, m.summaries, m.undecodable, m.txns, m.groups, m.lag)
	}
	return m
}

// Rollup consumes the sequencer's changelog in its own consumer group and
// writes coalesced receipts summaries into the group log, with its state
// changelogged in the same transactions.
type Rollup struct {
	cfg   Config
	log   *slog.Logger
	m     *metrics
	opts  []kgo.Opt
	sess  *kgo.GroupTransactSession
	parts map[int32]*State         // owned by Run
	txn   *openTxn                 // owned by Run; nil between transactions
	lost  *pipeline.LostPartitions // written by the group client's callbacks
}

// New creates a rollup; it connects when Run starts.
func New(cfg Config) (*Rollup, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("rollup config: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CommitInterval == 0 {
		cfg.CommitInterval = min(100*time.Millisecond, cfg.Limits.Window)
	}
	r := &Rollup{cfg: cfg, log: cfg.Logger.With("role", "rollup", "instance", cfg.InstanceID), m: newMetrics(cfg.Registerer),
		parts: make(map[int32]*State), lost: pipeline.NewLostPartitions(cfg.Layout.StateTopic)}
	r.opts = pipeline.TransactConfig{
		Kafka:              cfg.Kafka,
		GroupID:            cfg.GroupID,
		Topic:              cfg.Layout.StateTopic,
		TransactionalID:    "causeway-rollup-" + cfg.InstanceID,
		SessionTimeout:     cfg.SessionTimeout,
		TransactionTimeout: cfg.TransactionTimeout,
		// The rollup commits once per CommitInterval: a fetch per
		// sequencer transaction (hundreds a second) only costs the
		// broker and this process CPU the edges need, so the broker
		// holds fetches until a commit interval passed or 1 MiB waits.
		FetchMaxWait:  max(10*time.Millisecond, cfg.CommitInterval),
		FetchMinBytes: 1 << 20,
		HoldProduces:  true,
	}.Opts(r.lost)
	sess, err := kgo.NewGroupTransactSession(r.opts...)
	if err != nil {
		return nil, fmt.Errorf("create rollup client: %w", err)
	}
	r.sess = sess
	return r, nil
}

// Run consumes until ctx is done.
func (r *Rollup) Run(ctx context.Context) error {
	defer func() { r.sess.Close() }()
	if err := pipeline.WaitTopics(ctx, kadm.NewClient(r.sess.Client()), r.cfg.Layout, func(err error) {
		r.log.Warn("waiting for Kafka topics", "err", err)
	}); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	// Summaries are due by the clock, not only when records arrive: poll
	// at most half a window at a time. One transaction spans the polls of
	// a commit interval: the rollup is not on anyone's latency path, and
	// a transaction per fetch (hundreds per second under load) costs the
	// broker and the sequencer's own transactions far more than its
	// records do. Changelog writes coalesce by key within a transaction.
	tick := r.cfg.Limits.Window / 2
	for ctx.Err() == nil {
		wait := tick
		if r.txn != nil {
			wait = min(wait, time.Until(r.txn.began.Add(r.cfg.CommitInterval)))
		}
		var fetches kgo.Fetches
		if wait > 0 {
			pctx, cancel := context.WithTimeout(ctx, wait)
			fetches = r.sess.PollRecords(pctx, r.cfg.MaxBatch)
			cancel()
		}
		if ctx.Err() != nil {
			break
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				r.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if n := len(fp.Records); n > 0 {
				r.m.lag.WithLabelValues(strconv.Itoa(int(fp.Partition))).Set(float64(max(0, fp.HighWatermark-fp.Records[n-1].Offset-1)))
			}
		})
		if r.txn == nil && (fetches.NumRecords() > 0 || r.owes()) {
			if err := r.begin(); err != nil {
				if err := r.restart(err); err != nil {
					return err
				}
				continue
			}
		}
		if r.txn != nil {
			r.apply(ctx, fetches)
			if time.Since(r.txn.began) < r.cfg.CommitInterval {
				continue
			}
			if err := r.end(ctx); err != nil {
				if ctx.Err() != nil {
					break
				}
				if err := r.restart(err); err != nil {
					return err
				}
			}
		}
	}
	if r.txn != nil {
		// Shutting down: abort, so the next owner does not wait for the
		// broker's transaction timeout.
		r.txn.err = context.Canceled
		_ = r.end(ctx)
	}
	return nil
}

// restart replaces the transactional session after a failed transaction
// and forgets the state, which is restored again from the changelog.
func (r *Rollup) restart(cause error) error {
	r.log.Error("batch failed; restarting the transactional session and restoring state", "err", cause)
	r.txn = nil
	clear(r.parts)
	time.Sleep(100 * time.Millisecond)
	r.sess.Close()
	sess, err := kgo.NewGroupTransactSession(r.opts...)
	if err != nil {
		return fmt.Errorf("recreate rollup client: %w", err)
	}
	r.sess = sess
	return nil
}

func (r *Rollup) owes() bool {
	for _, st := range r.parts {
		if st.Pending() {
			return true
		}
	}
	return false
}

// openTxn is the transaction spanning the current commit interval.
type openTxn struct {
	began time.Time
	batch *pipeline.ProduceBatch
	err   error // the first error applying records: the transaction aborts
}

func (r *Rollup) begin() error {
	pipeline.Forget(r.lost, r.parts)
	if err := r.sess.Begin(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	r.txn = &openTxn{began: time.Now(), batch: pipeline.NewProduceBatch(r.sess)}
	return nil
}

// apply folds a poll's records into the partitions' state.
func (r *Rollup) apply(ctx context.Context, fetches kgo.Fetches) {
	t := r.txn
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if t.err != nil || len(fp.Records) == 0 {
			return
		}
		st, err := r.state(ctx, fp.Partition)
		if err != nil {
			t.err = err
			return
		}
		for _, rec := range fp.Records {
			r.m.records.Inc()
			if !st.Apply(string(rec.Key), rec.Value, rec.Timestamp.UnixMilli()) {
				r.m.undecodable.Inc()
				r.log.Warn("skipping undecodable changelog record", "partition", rec.Partition, "offset", rec.Offset)
			}
		}
	})
}

// end writes the summaries due and the changelog, and commits the
// transaction with the offsets of everything polled since begin.
func (r *Rollup) end(ctx context.Context) error {
	t := r.txn
	r.txn = nil
	produce := func(rec *kgo.Record) { t.batch.Produce(ctx, rec) }
	now := time.Now().UnixMilli()
	var rows []ReceiptRow
	for p, st := range r.parts {
		if t.err != nil {
			break
		}
		for _, sum := range st.Flush(now) {
			v, err := proto.Marshal(&pb.GroupEvent{Version: schemas.Version, Group: sum.Group, TsMs: now,
				Kind: &pb.GroupEvent_Receipts{Receipts: sum.Receipt}})
			if err != nil {
				t.err = fmt.Errorf("marshal summary: %w", err)
				break
			}
			r.m.summaries.Inc()
			produce(&kgo.Record{Topic: r.cfg.Layout.GroupTopic, Partition: p, Key: []byte(sum.Group), Value: v})
		}
		for _, w := range st.TakeWrites() {
			produce(&kgo.Record{Topic: r.cfg.Layout.RollupStateTopic, Partition: p, Key: []byte(w.Key), Value: w.Value})
		}
		rows = append(rows, st.TakeReceiptRows()...)
	}
	produceErr := t.batch.Flush(ctx, r.sess.Client())
	try := kgo.TryCommit
	if t.err != nil || produceErr != nil {
		try = kgo.TryAbort
	}
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.TransactionTimeout)
	defer cancel()
	committed, err := r.sess.End(endCtx, try)
	switch {
	case err != nil:
		r.m.txns.WithLabelValues("error").Inc()
		return fmt.Errorf("end transaction: %w", err)
	case t.err != nil:
		r.m.txns.WithLabelValues("aborted").Inc()
		return t.err
	case produceErr != nil:
		r.m.txns.WithLabelValues("aborted").Inc()
		return fmt.Errorf("produce: %w", produceErr)
	case !committed:
		r.m.txns.WithLabelValues("aborted").Inc()
		clear(r.parts) // rewound to the committed offsets: so is the state
		return nil
	}
	r.m.txns.WithLabelValues("committed").Inc()
	total := 0
	for _, ps := range r.parts {
		total += ps.Groups()
	}
	r.m.groups.Set(float64(total))
	if r.cfg.Receipts != nil && len(rows) > 0 {
		r.cfg.Receipts(rows)
	}
	return nil
}

// state returns the partition's state, restoring it from the rollup's
// changelog if this process does not hold it yet.
func (r *Rollup) state(ctx context.Context, p int32) (*State, error) {
	if st := r.parts[p]; st != nil {
		return st, nil
	}
	st := NewState(r.cfg.Limits)
	start := time.Now()
	n, err := pipeline.ReadChangelog(ctx, r.cfg.Kafka, r.cfg.Layout.RollupStateTopic, p, func(key, value []byte) {
		if !st.Restore(string(key), value) {
			r.m.undecodable.Inc()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("restore partition %d: %w", p, err)
	}
	st.FinishRestore()
	// Everything restored may have changed while the sink was away.
	st.markAllRows()
	r.parts[p] = st
	total := 0
	for _, ps := range r.parts {
		total += ps.Groups()
	}
	r.m.groups.Set(float64(total))
	r.log.Info("restored partition state", "partition", p, "records", n, "groups", st.Groups(), "took", time.Since(start))
	return st, nil
}
