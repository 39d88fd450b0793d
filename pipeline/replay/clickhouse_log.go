package replay

import (
	"context"
	"fmt"
	"time"

	"github.com/causeway/causeway/consumers/rollup"
	"github.com/causeway/causeway/consumers/sequencer"
	"github.com/twmb/franz-go/pkg/kgo"
)

// fromLog writes the rows of the spans of the group log: each partition
// is read from its log start and run through the sequencer's state
// machine, and the changelog writes of the records in its span are turned
// into rows as the sink turns the state topic's records into rows. One
// partition at a time, so memory holds one partition's state (as
// StateOptions does).
func (o *ClickHouseOptions) fromLog(ctx context.Context, starts map[int32]int64, spans map[int32]span, parts []int32, cp *checkpoint, w *batchWriter) error {
	var total int64
	var todo []int32
	for _, p := range parts {
		if pc := cp.part(p); !pc.Done {
			todo = append(todo, p)
			total += max(0, spans[p].End-starts[p])
		}
	}
	o.Progress.Start("replay clickhouse from the group log", total)
	defer o.Progress.Stop()
	for i, p := range todo {
		o.Progress.Label(fmt.Sprintf("replay clickhouse from the group log, partition %d (%d of %d)", p, i+1, len(todo)))
		lr := &logRows{o: o, w: w, cp: cp, p: p, emitFrom: cp.part(p).Offset}
		if err := lr.run(ctx, starts[p], spans[p].End); err != nil {
			return err
		}
	}
	return nil
}

// logRows derives one partition's rows from the group log.
type logRows struct {
	o  *ClickHouseOptions
	w  *batchWriter
	cp *checkpoint
	p  int32
	// emitFrom is the first offset whose rows are written: the range's
	// start, or where an earlier run's checkpoint says it stopped.
	emitFrom int64
	// counts is the rollup's receipt counting (with Receipts).
	counts   *rollup.State
	emitting bool
	b        rollup.Batch
	last     time.Time
}

func (lr *logRows) run(ctx context.Context, from, end int64) error {
	o := lr.o
	if o.Receipts {
		lr.counts = rollup.NewState(o.RollupLimits)
	}
	lr.last = time.Now()
	n, err := runLog(ctx, &o.Common, o.Layout.GroupTopic, lr.p, from, end, sequencer.NewState(o.Limits), func(s logStep) (bool, error) {
		return false, lr.step(ctx, s)
	})
	lr.w.rep.Records += n.Applied
	lr.w.rep.Undecodable += n.Undecodable
	if err != nil {
		return err
	}
	return lr.flush(ctx, end)
}

// step turns one applied record's writes into rows, if it is in the
// range, and counts its receipts either way (a message's aggregate is
// made of reads on both sides of the range's start).
func (lr *logRows) step(ctx context.Context, s logStep) error {
	in := s.Rec.Offset >= lr.emitFrom
	if in && !lr.emitting && lr.counts != nil {
		// Aggregates changed before the range are not the range's (or
		// an earlier run wrote them).
		lr.counts.TakeReceiptRows()
	}
	lr.emitting = lr.emitting || in
	for _, wr := range s.Writes {
		// The record the sequencer would have written, timed by the
		// log record that made it: the sink times presence by its
		// record's timestamp, and the sequencer's own write followed
		// this record by its processing time.
		r := &kgo.Record{Topic: lr.o.Layout.StateTopic, Partition: lr.p, Key: []byte(wr.Key), Value: wr.Value, Timestamp: s.Rec.Timestamp}
		if in {
			rollup.RowsOf(&lr.b, r)
		}
		if lr.counts != nil && !lr.counts.Apply(wr.Key, wr.Value, s.Rec.Timestamp.UnixMilli()) {
			lr.o.Log.Warn("the rollup's counting skipped a changelog value it could not decode", "partition", lr.p, "offset", s.Rec.Offset)
		}
	}
	if in && (lr.b.Len() >= lr.o.BatchRows || time.Since(lr.last) > flushEvery) {
		return lr.flush(ctx, s.Rec.Offset+1)
	}
	return nil
}

// flush writes the batch and the receipt aggregates changed since the
// last flush, and checkpoints next as the first offset whose rows are not
// written.
func (lr *logRows) flush(ctx context.Context, next int64) error {
	if lr.counts != nil && lr.emitting {
		lr.b.Receipts = append(lr.b.Receipts, lr.counts.TakeReceiptRows()...)
	}
	if err := lr.w.write(ctx, lr.b); err != nil {
		return err
	}
	lr.b = rollup.Batch{}
	lr.last = time.Now()
	lr.cp.advance(lr.p, next)
	return lr.cp.save()
}
