package replay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/causeway/causeway/consumers/rollup"
	"github.com/causeway/causeway/consumers/sequencer"
	"github.com/causeway/causeway/pipeline"
	"github.com/twmb/franz-go/pkg/kadm"
)

// Source is what ClickHouse reads.
type Source string

const (
	// SourceGroupLog (the default) reads the group log, runs it through
	// the sequencer's state machine (as State does) and derives the rows
	// from the changelog writes that produces: everything the log still
	// holds can be rebuilt, whatever compaction removed from the state
	// topic.
	SourceGroupLog Source = "groups"
	// SourceStateTopic reads the sequencer's changelog (the state topic),
	// as the live sink does: only what compaction left.
	SourceStateTopic Source = "state"
)

// ClickHouseOptions configure ClickHouse.
type ClickHouseOptions struct {
	Common
	// Source is the topic read (default SourceGroupLog).
	Source Source
	// From and To bound the range of the source topic whose rows are
	// written: From is the first offset or time (unset: the log start),
	// To the end, exclusive (unset: the stable end at the start of the
	// run). A time is resolved to each partition's first offset at or
	// after it. From the group log, each partition is still read from its
	// start (the state at From is made of everything before it); only the
	// rows of records in the range are written.
	From, To Bound
	// Limits are the sequencers' (sequencer.* settings), for
	// SourceGroupLog: the state, and so the rows, are a pure function of
	// the log given the same limits. Zero: sequencer.DefaultLimits().
	Limits sequencer.Limits
	// AllowTruncatedLog, for SourceGroupLog, rebuilds even when the group
	// log no longer starts at offset 0 (see StateOptions).
	AllowTruncatedLog bool
	// Writer takes the rows (chsink.Sink).
	Writer rollup.Writer
	// Prepare, if set, runs once the options, the topic layout and the
	// checkpoint are checked, before the first write: e.g.
	// chsink.Migrate.
	Prepare func(ctx context.Context) error
	// Target names where the rows go, for the checkpoint: a checkpoint
	// of another target is refused.
	Target string
	// Receipts also writes the per-message receipt aggregates. From the
	// group log they are counted as the rollup counts them
	// (rollup.State over the rebuilt changelog), and those that records
	// in the range changed are written. From the state topic they are
	// the ones the rollup holds now (its changelog), of the messages sent
	// within From and To when they are times: a range of the changelog
	// cannot rebuild them.
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
	// Records of the source topic read in this run (from the group log:
	// applied to the state, in and before the range); Undecodable ones
	// were skipped, as the sequencer skips them.
	Records, Undecodable int
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
	switch o.Source {
	case "":
		o.Source = SourceGroupLog
	case SourceGroupLog, SourceStateTopic:
	default:
		return fmt.Errorf("source %q: want %s or %s", o.Source, SourceGroupLog, SourceStateTopic)
	}
	if o.AllowTruncatedLog && o.Source != SourceGroupLog {
		return errors.New("allow truncated log only applies to the group-log source")
	}
	if o.Limits == (sequencer.Limits{}) {
		o.Limits = sequencer.DefaultLimits()
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

// ClickHouse rebuilds the analytics rows of a range of the group log (or
// of the state topic, Source) and writes them, derived as the rollup's
// sink derives them from the sequencer's changelog (rollup.RowsOf); with
// Receipts, the receipt aggregates too. The tables are idempotent by
// design (chsink), so rows written again change no query result:
// replaying a range twice, or resuming a run whose last batch was
// written but not checkpointed, is harmless.
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
	l := o.Layout
	topic := o.topic()
	parts := o.partitions()
	rep.Partitions = len(parts)
	run := fmt.Sprintf("into=clickhouse source=%s topic=%s group_partitions=%d partitions=%s from=%s to=%s receipts=%t target=%s",
		o.Source, topic, l.GroupPartitions, partitionList(parts, l.GroupPartitions), o.From, o.To, o.Receipts, o.Target)
	cp, resumed, err := loadCheckpoint(o.Checkpoint, run)
	if err != nil {
		return rep, err
	}
	var starts map[int32]int64
	if o.Source == SourceGroupLog {
		if starts, err = logStarts(ctx, adm, topic); err != nil {
			return rep, err
		}
		if err := checkTruncated(&o.Common, topic, starts, parts, o.AllowTruncatedLog); err != nil {
			return rep, err
		}
	}
	if o.Prepare != nil { // once nothing else refuses the run
		if err := o.Prepare(ctx); err != nil {
			return rep, fmt.Errorf("replay: %w", err)
		}
	}
	spans, err := o.spans(ctx, adm, topic, parts, cp)
	if err != nil {
		return rep, err
	}
	if err := cp.save(); err != nil { // fixes the range for a resumed run
		return rep, err
	}
	o.describe(parts, spans, starts, resumed)

	w := &batchWriter{o: &o, rep: &rep}
	if o.Source == SourceGroupLog {
		err = o.fromLog(ctx, starts, spans, parts, cp, w)
	} else {
		err = o.fromState(ctx, spans, parts, cp, w)
	}
	if err != nil {
		return rep, o.interrupted(err)
	}
	if o.Receipts && o.Source == SourceStateTopic && !cp.ReceiptsDone {
		if err := o.receipts(ctx, parts, w); err != nil {
			return rep, o.interrupted(err)
		}
		cp.ReceiptsDone = true
		if err := cp.save(); err != nil {
			return rep, err
		}
	}
	o.summary(rep)
	return rep, nil
}

// describe prints each partition's range.
func (o *ClickHouseOptions) describe(parts []int32, spans map[int32]span, starts map[int32]int64, resumed bool) {
	for _, p := range parts {
		s := spans[p]
		note := ""
		if resumed {
			note = fmt.Sprintf(" (resumed at %d from checkpoint %s)", s.From, o.Checkpoint)
		}
		if o.Source == SourceGroupLog {
			fmt.Fprintf(o.Out, "partition %d: rows of %s offsets %d-%d%s, read from offset %d\n", p, o.topic(), s.From, s.End, note, starts[p])
		} else {
			fmt.Fprintf(o.Out, "partition %d: %s offsets %d-%d%s\n", p, o.topic(), s.From, s.End, note)
		}
	}
}

// summary prints what the run did.
func (o *ClickHouseOptions) summary(rep ClickHouseReport) {
	skipped := ""
	if rep.Undecodable > 0 {
		skipped = fmt.Sprintf(" (%d undecodable, skipped)", rep.Undecodable)
	}
	fmt.Fprintf(o.Out, "replay --into clickhouse: %d partitions, %s records of %s read%s, %s rows written (%s, %s, %s, %s, %s)\n",
		rep.Partitions, group(int64(rep.Records)), o.topic(), skipped, group(int64(rep.Rows())),
		plural(rep.Messages, "message"), plural(rep.Members, "member event"), plural(rep.Reads, "read watermark"),
		plural(rep.Presence, "presence row"), plural(rep.Receipts, "receipt aggregate"))
}

// topic is the topic the source reads.
func (o *ClickHouseOptions) topic() string {
	if o.Source == SourceStateTopic {
		return o.Layout.StateTopic
	}
	return o.Layout.GroupTopic
}

// fromState writes the rows of the spans of the state topic, record by
// record, as the live sink does.
func (o *ClickHouseOptions) fromState(ctx context.Context, spans map[int32]span, parts []int32, cp *checkpoint, w *batchWriter) error {
	var total int64
	for _, s := range spans {
		total += s.End - s.From
	}
	rd, err := newReader(o.Kafka, o.Layout.StateTopic, spans, o.Log)
	if err != nil {
		return err
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
			cp.advance(p, off)
		}
		return cp.save()
	}
	last := time.Now()
	for !rd.Done() {
		recs, advanced, err := rd.Next(ctx)
		if err != nil {
			return err
		}
		for _, r := range recs {
			rollup.RowsOf(&b, r)
			w.rep.Records++
			// Committed records come in offset order: whatever the
			// read skipped before r (markers, aborted records) is
			// resolved the same way when read again from r+1.
			pending[r.Partition] = r.Offset + 1
			if b.Len() >= o.BatchRows {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		for _, p := range parts {
			pending[p] = rd.Resume(p)
		}
		o.Progress.Add(advanced)
		if rd.Done() || time.Since(last) > flushEvery {
			if err := flush(); err != nil {
				return err
			}
			last = time.Now()
		}
	}
	return nil
}

// flushEvery bounds how long rows wait in a replay's batch (and so what
// an interrupted run does again).
const flushEvery = 5 * time.Second

func (o *ClickHouseOptions) interrupted(err error) error {
	if o.Checkpoint != "" {
		return fmt.Errorf("replay: %w (progress is in %s: run again with the same flags to continue)", err, o.Checkpoint)
	}
	return fmt.Errorf("replay: %w", err)
}

// spans resolves the range of each partition, or takes it from the
// checkpoint of an earlier run.
func (o *ClickHouseOptions) spans(ctx context.Context, adm *kadm.Client, topic string, parts []int32, cp *checkpoint) (map[int32]span, error) {
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
	starts, err := logStarts(ctx, adm, topic)
	if err != nil {
		return nil, err
	}
	// The stable end: every transaction below it has ended, so the read
	// never waits for one that is still open at the start.
	stable, err := stableEnds(ctx, adm, topic)
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
