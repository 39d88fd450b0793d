package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReadChangelog reads one partition of a compacted changelog from its start
// to its last stable offset (read_committed), calling fn for every committed
// record in order; a nil value is a tombstone. It returns the number of
// records read.
//
// Callers restore state with it after they are assigned the partition: the
// group's stable offset fetch guarantees that every transaction that
// committed offsets for the partition has ended, and state and offsets are
// written in the same transactions, so the last stable offset covers all
// state that the committed offsets depend on.
func ReadChangelog(ctx context.Context, kc KafkaConfig, topic string, partition int32, fn func(key, value []byte)) (int, error) {
	cl, err := kgo.NewClient(append(kc.Opts(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
			topic: {partition: kgo.NewOffset().AtStart()},
		}),
	)...)
	if err != nil {
		return 0, fmt.Errorf("changelog client: %w", err)
	}
	defer cl.Close()

	offs, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("list stable offsets of %s: %w", topic, err)
	}
	end, ok := offs.Lookup(topic, partition)
	if !ok || end.Err != nil {
		return 0, fmt.Errorf("stable offset of %s/%d: %v", topic, partition, end.Err)
	}
	starts, err := kadm.NewClient(cl).ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	if st, ok := starts.Lookup(topic, partition); ok && st.Err == nil && st.Offset >= end.Offset {
		return 0, nil
	}

	// With control records kept, the record just below the stable offset
	// is always seen (a transaction marker or a plain record), so the
	// read ends exactly there. Compaction may remove it in theory; an
	// idle read then ends after a quiet period instead of hanging.
	n := 0
	last := int64(-1)
	idle := time.Now()
	for last < end.Offset-1 {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if err != context.DeadlineExceeded {
				ferr = err
			}
		})
		if ferr != nil {
			return n, fmt.Errorf("read %s/%d: %w", topic, partition, ferr)
		}
		got := false
		fs.EachRecord(func(r *kgo.Record) {
			got = true
			last = r.Offset
			if r.Attrs.IsControl() || r.Offset >= end.Offset {
				return
			}
			n++
			fn(r.Key, r.Value)
		})
		if got {
			idle = time.Now()
		} else if time.Since(idle) > 5*time.Second {
			break
		}
	}
	return n, nil
}
