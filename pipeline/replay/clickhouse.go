package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/causeway/causeway/consumers/rollup"
	"github.com/causeway/causeway/pipeline"
	"github.com/twmb/franz-go/pkg/kadm"
)

// ClickHouseOptions configure ClickHouse.
type ClickHouseOptions struct {
	Common
	// From and To bound the range of the state topic replayed: From is
	// the first offset or time (unset: the log start), To the end,
	// exclusive (unset: the stable end at the start of the run). A time
	// is resolved to each partition's first offset at or after it.
	From, To Bound
	// Writer takes the rows (chsink.Sink).
	Writer rollup.Writer
	// Prepare, if set, runs once the options and the topic layout are
	// checked, before the first write: e.g. chsink.Migrate.
	Prepare func(ctx context.Context) error
	// Target names where the rows go, for the checkpoint: a checkpoint
	// of another target is refused.
	Target string
	// Receipts also writes the receipt aggregates the rollup holds now
	// (its changelog), of the messages sent within From and To when they
	// are times: they are counted by the rollup's state, not derived from
	// one record, so a range of the changelog cannot rebuild them.
	Receipts bool
	// RollupLimits are the rollup's (rollup.* settings), to restore its
	// state.
	RollupLimits rollup.Limits
	// BatchRows bounds the rows written at once (default 5000).
	BatchRows int
}

// ClickHouseReport sums up a ClickHouse run.
type ClickHouseReport struct {
	Partitions int
	// Records of the state topic read in this run.
	Records int
	// Rows written, by kind.
	Messages, Members, Reads, Presence, Receipts int
}

// Rows is the number of rows written.
func (r ClickHouseReport) Rows() int {
	return r.Messages + r.Members + r.Reads + r.Presence + r.Receipts
}

func (o *ClickHouseOptions) validate() error {
	if err := o.Common.validate(); err != nil {
		return err
	}
	if o.Writer == nil {
		return errors.New("no writer")
	}
	if o.BatchRows == 0 {
		o.BatchRows = 5000
	}
	if o.BatchRows < 1 {
		return fmt.Errorf("batch rows %d: must be positive", o.BatchRows)
	}
	for _, b := range []Bound{o.From, o.To} {
		for p := range b.Offsets {
			if p >= o.Layout.GroupPartitions {
				return fmt.Errorf("partition %d in %s: the layout has partitions 0 to %d", p, b, o.Layout.GroupPartitions-1)
			}
		}
	}
	return checkRange(o.From, o.To)
}

// writeRetries bounds the attempts at one batch before the run stops
// (its checkpoint keeps what was written).
const writeRetries = 5

// ClickHouse re-reads a range of the sequencer's changelog and writes the
// analytics rows it stands for, derived as the rollup's sink derives them
// (rollup.RowsOf); then, with Receipts, the rollup's receipt aggregates.
// The tables are idempotent by design (chsink), so rows written again
// change no query result: replaying a range twice, or resuming a run
// whose last batch was written but not checkpointed, is harmless.
func ClickHouse(ctx context.Context, o ClickHouseOptions) (ClickHouseReport, error) {
	var rep ClickHouseReport
	if err := o.validate(); err != nil {
		return rep, fmt.Errorf("replay: %w", err)
	}
	cl, adm, err := o.connect(ctx)
	if err != nil {
		return rep, err
	}
	defer cl.Close()
	if o.Prepare != nil {
		if err := o.Prepare(ctx); err != nil {
			return rep, fmt.Errorf("replay: %w", err)
		}
	}
	l := o.Layout
	parts := o.partitions()
	rep.Partitions = len(parts)
	run := fmt.Sprintf("into=clickhouse state=%s group_partitions=%d partitions=%s from=%s to=%s receipts=%t target=%s",
		l.StateTopic, l.GroupPartitions, partitionList(parts, l.GroupPartitions), o.From, o.To, o.Receipts, o.Target)
	cp, resumed, err := loadCheckpoint(o.Checkpoint, run)
	if err != nil {
		return rep, err
	}
	spans, err := o.spans(ctx, adm, parts, cp)
	if err != nil {
		return rep, err
	}
	if err := cp.save(); err != nil { // fixes the range for a resumed run
		return rep, err
	}
	var total int64
	for _, p := range parts {
		s := spans[p]
		note := ""
		if resumed {
			note = fmt.Sprintf(" (resumed at %d from checkpoint %s)", s.From, o.Checkpoint)
		}
		fmt.Fprintf(o.Out, "partition %d: %s offsets %d-%d%s\n", p, l.StateTopic, s.From, s.End, note)
		total += s.End - s.From
	}

	w := &batchWriter{o: &o, rep: &rep}
	rd, err := newReader(o.Kafka, l.StateTopic, spans, o.Log)
	if err != nil {
		return rep, err
	}
	defer rd.Close()
	o.Progress.Start("replay clickhouse", total)
	defer o.Progress.Stop()
	var b rollup.Batch
	// pending are the offsets to resume from once b is written: past
	// every record whose rows are in b.
	pending := map[int32]int64{}
	flush := func() error {
		if err := w.write(ctx, b); err != nil {
			return err
		}
		b = rollup.Batch{}
		for p, off := range pending {
			pc := cp.part(p)
			pc.Offset = off
			pc.Done = off >= pc.End
		}
		return cp.save()
	}
	last := time.Now()
	for !rd.Done() {
		recs, advanced, err := rd.Next(ctx)
		if err != nil {
			return rep, o.interrupted(err)
		}
		for _, r := range recs {
			rollup.RowsOf(&b, r)
			rep.Records++
			// Committed records come in offset order: whatever the
			// read skipped before r (markers, aborted records) is
			// resolved the same way when read again from r+1.
			pending[r.Partition] = r.Offset + 1
			if b.Len() >= o.BatchRows {
				if err := flush(); err != nil {
					return rep, o.interrupted(err)
				}
			}
		}
		for _, p := range parts {
			pending[p] = rd.Resume(p)
		}
		o.Progress.Add(advanced)
		if rd.Done() || time.Since(last) > 5*time.Second {
			if err := flush(); err != nil {
				return rep, o.interrupted(err)
			}
			last = time.Now()
		}
	}
	o.Progress.Stop()

	if o.Receipts && !cp.ReceiptsDone {
		if err := o.receipts(ctx, parts, w); err != nil {
			return rep, o.interrupted(err)
		}
		cp.ReceiptsDone = true
		if err := cp.save(); err != nil {
			return rep, err
		}
	}
	fmt.Fprintf(o.Out, "replay --into clickhouse: %d partitions, %s records of %s read, %s rows written (%s, %s, %s, %s, %s)\n",
		rep.Partitions, group(int64(rep.Records)), l.StateTopic, group(int64(rep.Rows())),
		plural(rep.Messages, "message"), plural(rep.Members, "member event"), plural(rep.Reads, "read watermark"),
		plural(rep.Presence, "presence row"), plural(rep.Receipts, "receipt aggregate"))
	return rep, nil
}

func (o *ClickHouseOptions) interrupted(err error) error {
	if o.Checkpoint != "" {
		return fmt.Errorf("replay: %w (progress is in %s: run again with the same flags to continue)", err, o.Checkpoint)
	}
	return fmt.Errorf("replay: %w", err)
}

// spans resolves the range of each partition, or takes it from the
// checkpoint of an earlier run.
func (o *ClickHouseOptions) spans(ctx context.Context, adm *kadm.Client, parts []int32, cp *checkpoint) (map[int32]span, error) {
	topic := o.Layout.StateTopic
	out := map[int32]span{}
	var todo []int32
	for _, p := range parts {
		if pc, ok := cp.has(p); ok {
			out[p] = span{min(pc.Offset, pc.End), pc.End}
		} else {
			todo = append(todo, p)
		}
	}
	if len(todo) == 0 {
		return out, nil
	}
	starts, err := offsets("start", func() (kadm.ListedOffsets, error) { return adm.ListStartOffsets(ctx, topic) }, topic)
	if err != nil {
		return nil, err
	}
	// The stable end: every transaction below it has ended, so the read
	// never waits for one that is still open at the start.
	stable, err := offsets("stable end", func() (kadm.ListedOffsets, error) { return adm.ListCommittedOffsets(ctx, topic) }, topic)
	if err != nil {
		return nil, err
	}
	at := func(b Bound) (map[int32]int64, error) {
		if !b.IsTime() {
			return nil, nil
		}
		return offsets("time", func() (kadm.ListedOffsets, error) { return adm.ListOffsetsAfterMilli(ctx, b.Time.UnixMilli(), topic) }, topic)
	}
	fromT, err := at(o.From)
	if err != nil {
		return nil, err
	}
	toT, err := at(o.To)
	if err != nil {
		return nil, err
	}
	for _, p := range todo {
		s := span{starts[p], stable[p]}
		if o.From.IsTime() {
			s.From = max(s.From, fromT[p])
		} else if off, ok := o.From.offset(p); ok {
			s.From = max(s.From, off)
		}
		if o.To.IsTime() {
			s.End = min(s.End, toT[p])
		} else if off, ok := o.To.offset(p); ok {
			s.End = min(s.End, off)
		}
		s.From = min(s.From, s.End)
		out[p] = s
		pc := cp.part(p)
		pc.Offset, pc.End, pc.Done = s.From, s.End, s.From >= s.End
	}
	return out, nil
}

// receipts writes the aggregates of the rollup's current state, partition
// by partition (pipeline.ReadChangelog: what a restoring rollup reads).
func (o *ClickHouseOptions) receipts(ctx context.Context, parts []int32, w *batchWriter) error {
	topic := o.Layout.RollupStateTopic
	for _, p := range parts {
		st := rollup.NewState(o.RollupLimits)
		bad := 0
		if _, err := pipeline.ReadChangelog(ctx, o.Kafka, topic, p, func(k, v []byte) {
			if !st.Restore(string(k), v) {
				bad++
			}
		}); err != nil {
			return fmt.Errorf("read %s/%d: %w", topic, p, err)
		}
		if bad > 0 {
			o.Log.Warn("skipped undecodable rollup changelog records", "topic", topic, "partition", p, "records", bad)
		}
		st.FinishRestore()
		var b rollup.Batch
		for _, r := range st.AllReceiptRows() {
			if o.From.IsTime() && r.SentAt.Before(o.From.Time) || o.To.IsTime() && !r.SentAt.Before(o.To.Time) {
				continue
			}
			b.Receipts = append(b.Receipts, r)
			if len(b.Receipts) >= o.BatchRows {
				if err := w.write(ctx, b); err != nil {
					return err
				}
				b = rollup.Batch{}
			}
		}
		if err := w.write(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// batchWriter writes batches, retrying a failed one a few times, and
// counts the rows.
type batchWriter struct {
	o   *ClickHouseOptions
	rep *ClickHouseReport
}

func (w *batchWriter) write(ctx context.Context, b rollup.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	var err error
	for attempt := range writeRetries {
		if attempt > 0 {
			w.o.Log.Warn("write failed; retrying", "attempt", attempt, "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * time.Second):
			}
		}
		if err = w.o.Writer.Write(ctx, b); err == nil {
			w.rep.Messages += len(b.Messages)
			w.rep.Members += len(b.Members)
			w.rep.Reads += len(b.Reads)
			w.rep.Presence += len(b.Presence)
			w.rep.Receipts += len(b.Receipts)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("write %d rows: %w", b.Len(), err)
}
