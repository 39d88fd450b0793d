package sequencer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/causeway/causeway/pipeline"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
)

// Config configures a sequencer process.
type Config struct {
	Kafka  pipeline.KafkaConfig
	Layout pipeline.Layout
	// GroupID is the Kafka consumer group shared by all sequencers.
	GroupID string
	// InstanceID must be unique per running sequencer and stable across
	// its restarts: it names the transactional ID, so a restarted
	// instance fences and aborts its predecessor's open transaction at
	// once instead of waiting for the transaction timeout.
	InstanceID string
	// Limits bound the state kept per group (dedup, history) and set the
	// edge timeout.
	Limits Limits
	// MaxBatch bounds the records applied in one transaction.
	MaxBatch int
	// Linger is how long a poll that found fewer than MaxBatch records
	// waits for more before their transaction starts (0: none).
	Linger time.Duration
	// SessionTimeout is the group session timeout: how long a dead
	// sequencer keeps its partitions.
	SessionTimeout time.Duration
	// TransactionTimeout is how long the broker waits before aborting a
	// dead sequencer's open transaction.
	TransactionTimeout time.Duration
	Logger             *slog.Logger
	Registerer         prometheus.Registerer
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if err := c.Layout.Validate(); err != nil {
		return err
	}
	if err := c.Limits.Validate(); err != nil {
		return err
	}
	switch {
	case c.GroupID == "":
		return errors.New("sequencer.group_id must not be empty")
	case c.InstanceID == "":
		return errors.New("sequencer.instance_id must not be empty")
	case c.Limits.DedupWindow < 1 || c.Limits.DedupWindow > 1_000_000:
		return fmt.Errorf("sequencer.dedup_window %d: must be between 1 and 1000000", c.Limits.DedupWindow)
	case c.Limits.HistoryCount < 0 || c.Limits.HistoryCount > 1_000_000:
		return fmt.Errorf("sequencer.history_count %d: must be between 0 and 1000000", c.Limits.HistoryCount)
	case c.Limits.HistoryBytes < 0:
		return fmt.Errorf("sequencer.history_bytes %d: must not be negative", c.Limits.HistoryBytes)
	case c.Limits.SignalTTL <= 0 || c.Limits.CallIdle <= 0 || c.Limits.TypingExpiry <= 0:
		return fmt.Errorf("sequencer signal TTL %s, call idle %s and typing expiry %s must be positive", c.Limits.SignalTTL, c.Limits.CallIdle, c.Limits.TypingExpiry)
	case c.Limits.PresenceWindow < 0 || c.Limits.TypingWindow < 0:
		return fmt.Errorf("sequencer presence window %s and typing window %s must not be negative", c.Limits.PresenceWindow, c.Limits.TypingWindow)
	case c.Limits.SignalBuffer < 1 || c.Limits.PresenceMaxGroup < 1:
		return fmt.Errorf("sequencer.signal_buffer %d and sequencer.presence_max_group %d must be at least 1", c.Limits.SignalBuffer, c.Limits.PresenceMaxGroup)
	case c.Limits.HistoryAge < 0 || c.Limits.EdgeTimeout < 0:
		return errors.New("sequencer.history_age and sequencer.edge_timeout must not be negative")
	case c.MaxBatch < 1 || c.MaxBatch > 100_000:
		return fmt.Errorf("sequencer.max_batch %d: must be between 1 and 100000", c.MaxBatch)
	case c.Linger < 0 || c.Linger > time.Second:
		return fmt.Errorf("sequencer.linger %s: must be between 0 (off) and 1s", c.Linger)
	case c.SessionTimeout < time.Second:
		return fmt.Errorf("sequencer.session_timeout %s: must be at least 1s", c.SessionTimeout)
	case c.TransactionTimeout < time.Second:
		return fmt.Errorf("sequencer.transaction_timeout %s: must be at least 1s", c.TransactionTimeout)
	}
	return nil
}

type metrics struct {
	records     prometheus.Counter
	undecodable *prometheus.CounterVec
	deliveries  prometheus.Counter
	txns        *prometheus.CounterVec
	restores    prometheus.Counter
	groups      prometheus.Gauge
	lag         *prometheus.GaugeVec
	txnSeconds  prometheus.Histogram
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "causeway_sequencer_records_total", Help: "Group-log records applied."}),
		undecodable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "causeway_records_undecodable_total", Help: "Records that could not be decoded and were skipped."}, []string{"topic"}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "causeway_sequencer_deliveries_total", Help: "Delivery records written."}),
		txns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "causeway_sequencer_transactions_total", Help: "Transactions ended, by outcome."}, []string{"outcome"}),
		restores: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "causeway_sequencer_restores_total", Help: "Partition states rebuilt from the changelog."}),
		groups: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "causeway_sequencer_groups", Help: "Groups with state in memory."}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "causeway_sequencer_lag_records", Help: "Group-log records behind the high watermark, per partition (at the last fetch)."}, []string{"partition"}),
		txnSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "causeway_sequencer_transaction_seconds", Help: "Time to apply a batch and end its transaction.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	if r != nil {
		r.MustRegister(m.records, m.undecodable, m.deliveries, m.txns, m.restores, m.groups, m.lag, m.txnSeconds)
	}
	return m
}

// Sequencer is one sequencer process's consume-process-produce loop.
type Sequencer struct {
	cfg  Config
	log  *slog.Logger
	m    *metrics
	sess *kgo.GroupTransactSession

	// lost is written by the group client's partition callbacks.
	lost *pipeline.LostPartitions

	// parts is owned by Run.
	parts map[int32]*State
	// opts recreate sess after a failed transaction.
	opts []kgo.Opt
}

// New creates a sequencer; it connects when Run starts consuming.
func New(cfg Config) (*Sequencer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sequencer config: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Sequencer{
		cfg:   cfg,
		log:   cfg.Logger.With("role", "sequencer", "instance", cfg.InstanceID),
		m:     newMetrics(cfg.Registerer),
		lost:  pipeline.NewLostPartitions(cfg.Layout.GroupTopic),
		parts: make(map[int32]*State),
	}
	opts := pipeline.TransactConfig{
		Kafka:              cfg.Kafka,
		GroupID:            cfg.GroupID,
		Topic:              cfg.Layout.GroupTopic,
		TransactionalID:    "causeway-sequencer-" + cfg.InstanceID,
		SessionTimeout:     cfg.SessionTimeout,
		TransactionTimeout: cfg.TransactionTimeout,
		FetchMaxWait:       250 * time.Millisecond,
		HoldProduces:       true,
	}.Opts(s.lost)
	s.opts = opts
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return nil, fmt.Errorf("create sequencer client: %w", err)
	}
	s.sess = sess
	return s, nil
}

// renew replaces the transactional session after a failed transaction: an
// EndTxn error leaves the producer in an unknown state that cannot be
// retried. The new session re-initializes the same transactional ID,
// which aborts whatever the old one left open, and rejoins the group.
func (s *Sequencer) renew(ctx context.Context) error {
	s.sess.Close()
	sess, err := kgo.NewGroupTransactSession(s.opts...)
	if err != nil {
		return fmt.Errorf("recreate sequencer client: %w", err)
	}
	s.sess = sess
	s.fence(ctx)
	return nil
}

// fence initializes the transactional ID now, which bumps its epoch and
// aborts whatever a predecessor with the same ID left open: the failed
// session, or this instance's previous run. franz-go would only do it at
// the first produce, which needs records, which need the group's stable
// offset fetch (KIP-447), which waits for that very transaction to end:
// the abort would then come from the broker's transaction timeout, and
// the partitions whose offsets it holds would stall that long.
func (s *Sequencer) fence(ctx context.Context) {
	ictx, cancel := context.WithTimeout(ctx, s.cfg.TransactionTimeout)
	defer cancel()
	if _, _, err := s.sess.Client().ProducerID(ictx); err != nil && ctx.Err() == nil {
		// Not fatal: the first transaction initializes it again.
		s.log.Warn("initializing the transactional ID failed; the next transaction retries", "err", err)
	}
}

// Run consumes until ctx is done. Teardown: the loop ends its current
// transaction (abort on cancel), then the session leaves the group, so the
// partitions move to the other sequencers at once.
func (s *Sequencer) Run(ctx context.Context) error {
	defer func() { s.sess.Close() }()
	adm := kadm.NewClient(s.sess.Client())
	if err := pipeline.WaitTopics(ctx, adm, s.cfg.Layout, func(err error) {
		s.log.Warn("waiting for Kafka topics", "err", err)
	}); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	s.fence(ctx)
	for ctx.Err() == nil {
		fetches := s.sess.PollRecords(ctx, s.cfg.MaxBatch)
		if ctx.Err() != nil {
			break
		}
		if n := fetches.NumRecords(); s.cfg.Linger > 0 && n > 0 && n < s.cfg.MaxBatch {
			fetches = s.linger(ctx, fetches, s.cfg.MaxBatch-n)
		}
		fetches.EachError(func(t string, p int32, err error) {
			s.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
		})
		if fetches.NumRecords() == 0 {
			continue
		}
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if n := len(fp.Records); n > 0 {
				s.m.lag.WithLabelValues(strconv.Itoa(int(fp.Partition))).Set(float64(max(0, fp.HighWatermark-fp.Records[n-1].Offset-1)))
			}
		})
		began := time.Now()
		err := s.process(ctx, fetches)
		s.m.txnSeconds.Observe(time.Since(began).Seconds())
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			s.log.Error("batch failed; restarting the transactional session and restoring state", "err", err)
			s.resetAll()
			time.Sleep(100 * time.Millisecond)
			if err := s.renew(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// linger waits Linger, then adds up to room records fetched meanwhile to
// fetches: one transaction for what a busy log delivers in that time
// instead of one per fetch. Appending keeps each partition's order:
// EachPartition visits the earlier fetch first.
func (s *Sequencer) linger(ctx context.Context, fetches kgo.Fetches, room int) kgo.Fetches {
	t := time.NewTimer(s.cfg.Linger)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fetches
	case <-t.C:
	}
	// A nil context drains what is buffered without waiting.
	return append(fetches, s.sess.PollRecords(nil, room)...) //nolint:staticcheck // nil: do not wait
}

func (s *Sequencer) resetAll() {
	clear(s.parts)
	s.m.groups.Set(0)
}

// process applies one batch in one transaction.
func (s *Sequencer) process(ctx context.Context, fetches kgo.Fetches) error {
	pipeline.Forget(s.lost, s.parts)

	if err := s.sess.Begin(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	batch := pipeline.NewProduceBatch(s.sess)
	produce := func(r *kgo.Record) { batch.Produce(ctx, r) }

	var restoreErr error
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if restoreErr != nil || len(fp.Records) == 0 {
			return
		}
		st, err := s.state(ctx, fp.Partition)
		if err != nil {
			restoreErr = err
			return
		}
		for _, rec := range fp.Records {
			s.m.records.Inc()
			var ev pb.GroupEvent
			if err := proto.Unmarshal(rec.Value, &ev); err != nil {
				s.m.undecodable.WithLabelValues(rec.Topic).Inc()
				s.log.Warn("skipping undecodable record", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err)
				continue
			}
			if ev.GetGroup() != string(rec.Key) && ev.GetHeartbeat() == nil {
				s.m.undecodable.WithLabelValues(rec.Topic).Inc()
				s.log.Warn("skipping record whose key is not its group", "partition", rec.Partition, "offset", rec.Offset, "request", ev.GetRequestId())
				continue
			}
			out := st.Apply(&ev)
			for _, d := range out.Deliveries {
				v, err := proto.Marshal(d)
				if err != nil {
					restoreErr = fmt.Errorf("marshal delivery: %w", err)
					return
				}
				s.m.deliveries.Inc()
				produce(&kgo.Record{
					Topic:     s.cfg.Layout.DeliveryTopic,
					Partition: pipeline.PartitionFor(d.GetEdge(), s.cfg.Layout.DeliveryPartitions),
					Key:       []byte(d.GetEdge()),
					Value:     v,
				})
			}
			// Requests forwarded between partitions (the membership
			// index, reach checks) go back into the group log in this
			// same transaction.
			fwd, err := out.ForwardRecords(s.cfg.Layout)
			if err != nil {
				restoreErr = err
				return
			}
			for _, r := range fwd {
				produce(r)
			}
		}
		for _, w := range st.TakeWrites() {
			produce(&kgo.Record{
				Topic:     s.cfg.Layout.StateTopic,
				Partition: fp.Partition,
				Key:       []byte(w.Key),
				Value:     w.Value,
			})
		}
	})
	produceErr := batch.Flush(ctx, s.sess.Client())

	try := kgo.TryCommit
	if restoreErr != nil || produceErr != nil {
		try = kgo.TryAbort
	}
	// End with a context that outlives a shutdown, so a cancelled run
	// still aborts its transaction instead of leaving it open until the
	// broker's transaction timeout.
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.TransactionTimeout)
	defer cancel()
	committed, err := s.sess.End(endCtx, try)
	switch {
	case err != nil:
		s.m.txns.WithLabelValues("error").Inc()
		return fmt.Errorf("end transaction: %w", err)
	case restoreErr != nil:
		s.m.txns.WithLabelValues("aborted").Inc()
		return restoreErr
	case produceErr != nil:
		s.m.txns.WithLabelValues("aborted").Inc()
		return fmt.Errorf("produce: %w", produceErr)
	case !committed:
		// A rebalance aborted the transaction; the session rewound to
		// the committed offsets, so the state must rewind too.
		s.m.txns.WithLabelValues("aborted").Inc()
		s.resetAll()
		return nil
	}
	s.m.txns.WithLabelValues("committed").Inc()
	total := 0
	for _, ps := range s.parts {
		total += ps.Groups()
	}
	s.m.groups.Set(float64(total))
	return nil
}

// state returns the partition's state, restoring it from the changelog if
// this process does not hold it yet.
func (s *Sequencer) state(ctx context.Context, p int32) (*State, error) {
	if st := s.parts[p]; st != nil {
		return st, nil
	}
	st := NewState(s.cfg.Limits)
	start := time.Now()
	n, err := pipeline.ReadChangelog(ctx, s.cfg.Kafka, s.cfg.Layout.StateTopic, p, func(key, value []byte) {
		if !st.Restore(string(key), value) {
			s.m.undecodable.WithLabelValues(s.cfg.Layout.StateTopic).Inc()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("restore partition %d: %w", p, err)
	}
	st.FinishRestore()
	s.parts[p] = st
	s.m.restores.Inc()
	total := 0
	for _, ps := range s.parts {
		total += ps.Groups()
	}
	s.m.groups.Set(float64(total))
	s.log.Info("restored partition state", "partition", p, "records", n, "groups", st.Groups(), "took", time.Since(start))
	return st, nil
}
