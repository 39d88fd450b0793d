package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/causeway/causeway/pipeline"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrForeignRecords: the destination group topic of a copy holds records
// that the copy did not write (or that it copied from another topic).
var ErrForeignRecords = errors.New("the destination group topic has records this copy did not write")

// CopiedFromHeader names the header every copied record carries:
// "TOPIC/PARTITION/OFFSET" of its source record. A rerun finds in the
// destination what was copied already, so an interrupted copy resumes
// without duplicating anything, checkpoint file or not.
const CopiedFromHeader = "causeway-copied-from"

// GroupsOptions configure Groups.
type GroupsOptions struct {
	// Common is the destination: Kafka and Layout are the new topic
	// generation's (its group topic receives the copy). Partitions must
	// be empty: a copy is of every partition.
	Common
	// SourceKafka and SourceLayout are the old generation's cluster and
	// layout; its group topic is copied.
	SourceKafka  pipeline.KafkaConfig
	SourceLayout pipeline.Layout
	// AllowTruncatedLog copies even when the source no longer starts at
	// offset 0 (retention): the groups whose beginning is gone will not
	// be rebuilt right from the copy.
	AllowTruncatedLog bool
	// TxnRecords bounds the records copied in one transaction (default
	// 10000).
	TxnRecords int
	// OnTransaction, if set, hears the records of each committed
	// transaction.
	OnTransaction func(records int)
}

// GroupsReport sums up a Groups run.
type GroupsReport struct {
	// AlreadyCopied records were found in the destination: copied by
	// earlier runs (beyond what the checkpoint knew of, with one).
	AlreadyCopied int
	// Read source records in this run; Written destination records
	// (heartbeats go to every destination partition they concern);
	// Dropped records were neither keyed nor heartbeats (the sequencer
	// would skip them).
	Read, Written, Dropped int
	// PerPartition counts Written by destination partition.
	PerPartition map[int32]int
}

func (o *GroupsOptions) validate() error {
	if err := o.Common.validate(); err != nil {
		return err
	}
	if len(o.Partitions) > 0 {
		return errors.New("a copy is of every partition: no partition list")
	}
	if err := o.SourceKafka.Validate(); err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if err := o.SourceLayout.Validate(); err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if o.TxnRecords == 0 {
		o.TxnRecords = 10000
	}
	if o.TxnRecords < 1 {
		return fmt.Errorf("transaction records %d: must be positive", o.TxnRecords)
	}
	if o.SourceLayout.GroupTopic == o.Layout.GroupTopic && slices.Equal(o.SourceKafka.Brokers, o.Kafka.Brokers) {
		return fmt.Errorf("the source and the destination are the same topic (%s): the destination is a new topic generation", o.Layout.GroupTopic)
	}
	return nil
}

// groupsRun is one copy in progress.
type groupsRun struct {
	o         GroupsOptions
	dst, src  *kgo.Client
	dstAdm    *kadm.Client
	srcAdm    *kadm.Client
	prod      *kgo.Client
	cp        *checkpoint
	rep       GroupsReport
	heartbeat map[int32][]int32 // source partition -> destination partitions of its heartbeats
}

// Groups copies the old generation's group log into the new one's group
// topic, each record into the partition its key has under the new
// partition count, so that a sequencer of the new generation sees each
// group's records in their order. The source partitions are merged in
// timestamp order (each keeps its own order, and with it each group's):
// the sequencer's clock is the log's own time, and records far out of time
// order would time edges and signals out. Edge heartbeats (no key) go to
// the destination partitions whose groups come from their source
// partition, from one source partition each, so every new partition sees
// each edge beat once per beat.
//
// Records are written in transactions, each carrying CopiedFromHeader; a
// rerun starts with what the destination already holds (read_committed),
// so it copies only what is new: run it once while the old generation
// runs, and again after its edges stopped to copy the tail.
func Groups(ctx context.Context, o GroupsOptions) (GroupsReport, error) {
	if err := o.validate(); err != nil {
		return GroupsReport{}, fmt.Errorf("replay: %w", err)
	}
	r := &groupsRun{o: o, rep: GroupsReport{PerPartition: map[int32]int{}}}
	defer r.close()
	if err := r.connect(ctx); err != nil {
		return r.rep, err
	}
	src, dst := o.SourceLayout, o.Layout
	// Not the brokers: a cluster's addresses may change between runs.
	run := fmt.Sprintf("into=groups source=%s/%d groups=%s group_partitions=%d",
		src.GroupTopic, src.GroupPartitions, dst.GroupTopic, dst.GroupPartitions)
	cp, resumed, err := loadCheckpoint(o.Checkpoint, run)
	if err != nil {
		return r.rep, err
	}
	r.cp = cp
	if resumed {
		fmt.Fprintf(o.Out, "resuming from checkpoint %s\n", o.Checkpoint)
	}
	r.heartbeat = heartbeatRoutes(src.GroupPartitions, dst.GroupPartitions)
	spans, err := r.plan(ctx)
	if err != nil {
		return r.rep, err
	}
	if err := r.copy(ctx, spans); err != nil {
		if o.Checkpoint != "" {
			return r.rep, fmt.Errorf("replay: %w (run again with the same flags to continue: what was copied is in %s and found there)", err, dst.GroupTopic)
		}
		return r.rep, fmt.Errorf("replay: %w (run again to continue: what was copied is found in %s)", err, dst.GroupTopic)
	}
	for q := range dst.GroupPartitions {
		fmt.Fprintf(o.Out, "partition %d of %s: %d records copied\n", q, dst.GroupTopic, r.rep.PerPartition[q])
	}
	fmt.Fprintf(o.Out, "replay --into groups: %s records of %s (%d partitions) read, %s written to %s (%d partitions); %s found there copied by earlier runs\n",
		group(int64(r.rep.Read)), src.GroupTopic, src.GroupPartitions, group(int64(r.rep.Written)), dst.GroupTopic, dst.GroupPartitions,
		group(int64(r.rep.AlreadyCopied)))
	return r.rep, nil
}

func (r *groupsRun) close() {
	for _, cl := range []*kgo.Client{r.prod, r.src, r.dst} {
		if cl != nil {
			cl.Close()
		}
	}
}

// connect checks both layouts and opens the transactional producer,
// fencing a predecessor: an interrupted run's open transaction is
// aborted at once, so the destination's committed records are exactly
// what was copied.
func (r *groupsRun) connect(ctx context.Context) error {
	o := r.o
	var err error
	if r.dst, r.dstAdm, err = o.connect(ctx); err != nil {
		return err
	}
	src := Common{Kafka: o.SourceKafka, Layout: o.SourceLayout}
	if r.src, r.srcAdm, err = src.connect(ctx); err != nil {
		return fmt.Errorf("source: %w", err)
	}
	r.prod, err = kgo.NewClient(append(o.Kafka.Opts(),
		kgo.TransactionalID("causeway-replay-groups-"+o.Layout.GroupTopic),
		kgo.TransactionTimeout(time.Minute),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)...)
	if err != nil {
		return fmt.Errorf("replay: producer: %w", err)
	}
	if _, _, err := r.prod.ProducerID(ctx); err != nil {
		return fmt.Errorf("replay: initialize the transactional producer of %s: %w", o.Layout.GroupTopic, err)
	}
	return nil
}

// heartbeatRoutes maps each source partition to the destination
// partitions that get its heartbeats. A group in source partition p and
// destination partition q has p = h % n and q = h % m for its hash h, so
// p and q are equal modulo d = gcd(n, m), and every p with p = q mod d
// feeds q: heartbeats come from the one such p below d.
func heartbeatRoutes(n, m int32) map[int32][]int32 {
	d := gcd(n, m)
	out := map[int32][]int32{}
	for q := range m {
		out[q%d] = append(out[q%d], q)
	}
	return out
}

func gcd(a, b int32) int32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// plan finds what the destination holds already and returns the source
// spans left to copy: from after the last copied record of each source
// partition to its stable end now.
func (r *groupsRun) plan(ctx context.Context) (map[int32]span, error) {
	o := r.o
	srcTopic := o.SourceLayout.GroupTopic
	starts, err := logStarts(ctx, r.srcAdm, srcTopic)
	if err != nil {
		return nil, err
	}
	srcParts := make([]int32, o.SourceLayout.GroupPartitions)
	for i := range srcParts {
		srcParts[i] = int32(i)
	}
	if err := checkTruncated(&o.Common, srcTopic, starts, srcParts, o.AllowTruncatedLog); err != nil {
		return nil, err
	}
	copied, err := r.copied(ctx)
	if err != nil {
		return nil, err
	}
	stable, err := stableEnds(ctx, r.srcAdm, srcTopic)
	if err != nil {
		return nil, err
	}
	spans := map[int32]span{}
	for _, p := range srcParts {
		from := starts[p]
		if c, ok := copied[p]; ok {
			from = max(from, c+1)
		}
		spans[p] = span{From: min(from, stable[p]), End: stable[p]}
		fmt.Fprintf(o.Out, "partition %d of %s: offsets %d-%d to copy\n", p, srcTopic, spans[p].From, spans[p].End)
	}
	return spans, nil
}

// copied reads the destination group topic (from where the checkpoint
// says it was read to) and returns the last source offset copied from
// each source partition. A transaction is a stretch of the merged
// stream, so everything of a source partition up to its last copied
// record was copied.
func (r *groupsRun) copied(ctx context.Context) (map[int32]int64, error) {
	o := r.o
	topic := o.Layout.GroupTopic
	out := map[int32]int64{}
	for k, v := range r.cp.Copied {
		p, err := strconv.ParseInt(k, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: source partition %q", ErrCheckpoint, o.Checkpoint, k)
		}
		out[int32(p)] = v
	}
	starts, err := logStarts(ctx, r.dstAdm, topic)
	if err != nil {
		return nil, err
	}
	stable, err := stableEnds(ctx, r.dstAdm, topic)
	if err != nil {
		return nil, err
	}
	spans := map[int32]span{}
	for q := range o.Layout.GroupPartitions {
		from := starts[q]
		if pc, ok := r.cp.has(q); ok {
			if pc.Offset > stable[q] {
				// What the checkpoint counts as copied is not there.
				return nil, fmt.Errorf("%w: %s/%d ends at offset %d, before %d where the checkpoint %s saw the copy: was the topic recreated? "+
					"delete the checkpoint (a run without one finds what was copied)", ErrCheckpoint, topic, q, stable[q], pc.Offset, o.Checkpoint)
			}
			from = max(from, pc.Offset)
		}
		spans[q] = span{From: from, End: stable[q]}
	}
	rd, err := newReader(o.Kafka, topic, spans, o.Log)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	for !rd.Done() {
		recs, _, err := rd.Next(ctx)
		if err != nil {
			return nil, fmt.Errorf("read what %s holds: %w", topic, err)
		}
		for _, rec := range recs {
			p, off, err := r.copiedFrom(rec)
			if err != nil {
				return nil, err
			}
			if c, ok := out[p]; !ok || off > c {
				out[p] = off
			}
			r.rep.AlreadyCopied++
		}
	}
	for q, s := range spans {
		r.cp.part(q).Offset = s.End
	}
	return out, nil
}

// copiedFrom reads a destination record's CopiedFromHeader.
func (r *groupsRun) copiedFrom(rec *kgo.Record) (int32, int64, error) {
	src := r.o.SourceLayout.GroupTopic
	for _, h := range rec.Headers {
		if h.Key != CopiedFromHeader {
			continue
		}
		parts := strings.Split(string(h.Value), "/")
		if len(parts) == 3 && parts[0] == src {
			p, perr := strconv.ParseInt(parts[1], 10, 32)
			off, oerr := strconv.ParseInt(parts[2], 10, 64)
			if perr == nil && oerr == nil {
				return int32(p), off, nil
			}
		}
		return 0, 0, fmt.Errorf("replay: %w: %s/%d offset %d was copied from %q, not from %s: refusing to mix two sources",
			ErrForeignRecords, rec.Topic, rec.Partition, rec.Offset, h.Value, src)
	}
	return 0, 0, fmt.Errorf("replay: %w: %s/%d offset %d was not written by a copy (did a new-generation edge or rollup run?): "+
		"copy into a new, empty group topic, before anything else writes to it", ErrForeignRecords, rec.Topic, rec.Partition, rec.Offset)
}

// copyTxn is one transaction of the copy.
type copyTxn struct {
	batch *pipeline.ProduceBatch
	began time.Time
	// recs are the records produced (their offsets are set once
	// written); last the last source offset merged, per source partition.
	recs []*kgo.Record
	last map[int32]int64
	read int
}

// copy merges the source spans and writes them, a transaction at a time.
func (r *groupsRun) copy(ctx context.Context, spans map[int32]span) error {
	o := r.o
	var total int64
	for _, s := range spans {
		total += s.End - s.From
	}
	rd, err := newReader(o.SourceKafka, o.SourceLayout.GroupTopic, spans, o.Log)
	if err != nil {
		return err
	}
	defer rd.Close()
	m := newMerger(rd, o.Progress)
	o.Progress.Start("replay groups", total)
	defer o.Progress.Stop()
	t := &copyTxn{last: map[int32]int64{}, began: time.Now()}
	for {
		rec, err := m.next(ctx)
		if err != nil {
			return r.abort(ctx, t, err)
		}
		if rec == nil {
			break
		}
		if err := r.add(ctx, t, rec); err != nil {
			return r.abort(ctx, t, err)
		}
		if len(t.recs) >= o.TxnRecords || time.Since(t.began) > time.Second {
			if err := r.commit(ctx, t); err != nil {
				return err
			}
			t = &copyTxn{last: map[int32]int64{}, began: time.Now()}
		}
	}
	return r.commit(ctx, t)
}

// add routes one source record and produces its copies.
func (r *groupsRun) add(ctx context.Context, t *copyTxn, rec *kgo.Record) error {
	o := r.o
	r.rep.Read++
	t.read++
	t.last[rec.Partition] = rec.Offset
	var to []int32
	if len(rec.Key) > 0 {
		to = []int32{pipeline.PartitionFor(string(rec.Key), o.Layout.GroupPartitions)}
	} else if ev, ok := decodeEvent(rec); ok && ev.GetHeartbeat() != nil {
		to = r.heartbeat[rec.Partition] // none: another source partition's copy of the beat goes there
	} else {
		r.rep.Dropped++
	}
	if len(to) > 0 && t.batch == nil {
		if err := r.prod.BeginTransaction(); err != nil {
			return fmt.Errorf("begin transaction: %w", err)
		}
		t.batch = pipeline.NewProduceBatch(r.prod)
	}
	from := kgo.RecordHeader{Key: CopiedFromHeader, Value: fmt.Appendf(nil, "%s/%d/%d", rec.Topic, rec.Partition, rec.Offset)}
	for _, q := range to {
		c := &kgo.Record{Topic: o.Layout.GroupTopic, Partition: q, Key: rec.Key, Value: rec.Value, Timestamp: rec.Timestamp,
			Headers: append(slices.Clip(rec.Headers), from)}
		t.batch.Produce(ctx, c)
		t.recs = append(t.recs, c)
	}
	return nil
}

// commit ends t's transaction and checkpoints what it copied.
func (r *groupsRun) commit(ctx context.Context, t *copyTxn) error {
	if t.batch != nil {
		err := t.batch.Wait()
		if err != nil {
			return r.abort(ctx, t, fmt.Errorf("write %s: %w", r.o.Layout.GroupTopic, err))
		}
		// Not cancelled with ctx: a commit that was sent must end.
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := r.prod.EndTransaction(ectx, kgo.TryCommit); err != nil {
			return fmt.Errorf("commit a transaction of %d records to %s: %w", len(t.recs), r.o.Layout.GroupTopic, err)
		}
	}
	for _, c := range t.recs {
		pc := r.cp.part(c.Partition)
		pc.Offset = max(pc.Offset, c.Offset+1)
		r.rep.PerPartition[c.Partition]++
	}
	r.rep.Written += len(t.recs)
	if r.cp.Copied == nil {
		r.cp.Copied = map[string]int64{}
	}
	for p, off := range t.last {
		r.cp.Copied[strconv.Itoa(int(p))] = off
	}
	if err := r.cp.save(); err != nil {
		return err
	}
	if r.o.OnTransaction != nil && t.read > 0 {
		r.o.OnTransaction(len(t.recs))
	}
	return nil
}

// abort ends t's transaction without its records and returns cause.
func (r *groupsRun) abort(ctx context.Context, t *copyTxn, cause error) error {
	if t.batch == nil {
		return cause
	}
	_ = t.batch.Wait()
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := r.prod.EndTransaction(ectx, kgo.TryAbort); err != nil {
		// The next run's producer fences it: the broker aborts it then.
		r.o.Log.Warn("abort the copy's transaction", "err", err)
	}
	return cause
}
