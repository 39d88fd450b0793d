package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReadChangelog reads one partition of a transactional, compacted
// changelog from its start to its high watermark, calling fn, in commit
// order, for every record of a committed transaction (and every
// non-transactional record); a nil value is a tombstone. It returns the
// number of records passed to fn.
//
// It does its own transaction filtering instead of reading read_committed:
// a read_committed reader stops at the last stable offset, and a dead
// producer's open transaction (a SIGKILLed sequencer) holds that offset
// back until the transaction times out, hiding every later committed write
// of the partition's new owner. Records of transactions still open at the
// end of the read are dropped: an open transaction can no longer commit
// offsets for the partition once its group generation is gone (KIP-447),
// so it will abort.
//
// Callers restore state with it after they are assigned the partition and
// have fetched from its committed offset: the stable offset fetch
// guarantees that every transaction that committed offsets for the
// partition has ended, and state and offsets are written in the same
// transactions.
func ReadChangelog(ctx context.Context, kc KafkaConfig, topic string, partition int32, fn func(key, value []byte)) (int, error) {
	cl, err := kgo.NewClient(append(kc.Opts(),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()),
		kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
			topic: {partition: kgo.NewOffset().AtStart()},
		}),
	)...)
	if err != nil {
		return 0, fmt.Errorf("changelog client: %w", err)
	}
	defer cl.Close()

	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	end, ok := ends.Lookup(topic, partition)
	if !ok || end.Err != nil {
		return 0, fmt.Errorf("end offset of %s/%d: %v", topic, partition, end.Err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	if st, ok := starts.Lookup(topic, partition); ok && st.Err == nil && st.Offset >= end.Offset {
		return 0, nil
	}

	type kv struct {
		k, v  []byte
		epoch int16
	}
	open := map[int64][]kv{} // producer ID -> records of its open transaction
	n := 0
	last := int64(-1)
	idle := time.Now()
	// The record at the high watermark - 1 is always returned by a
	// read_uncommitted fetch, so the read ends exactly there. Compaction
	// could in theory remove it; an idle read then ends after a quiet
	// period instead of hanging.
	for last < end.Offset-1 {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
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
			if r.Offset >= end.Offset {
				return
			}
			switch {
			case r.Attrs.IsControl():
				// Control record key: version int16, type int16
				// (0 abort, 1 commit).
				// Records buffered under an epoch older than the
				// marker's transaction belong to an earlier transaction
				// that never got a marker: one a broker crash aborted
				// implicitly. They are dropped, not committed with this
				// one. (Transaction version 2 bumps the epoch every
				// transaction and writes the marker with the bumped
				// epoch, hence markerEpoch-1.)
				if len(r.Key) >= 4 && binary.BigEndian.Uint16(r.Key[2:4]) == 1 {
					for _, x := range open[r.ProducerID] {
						if x.epoch >= r.ProducerEpoch-1 {
							n++
							fn(x.k, x.v)
						}
					}
				}
				delete(open, r.ProducerID)
			case r.Attrs.IsTransactional():
				buf := open[r.ProducerID]
				if len(buf) > 0 && buf[len(buf)-1].epoch < r.ProducerEpoch {
					buf = buf[:0] // a newer transaction: the older one never ended
				}
				open[r.ProducerID] = append(buf, kv{r.Key, r.Value, r.ProducerEpoch})
			default:
				n++
				fn(r.Key, r.Value)
			}
		})
		if got {
			idle = time.Now()
		} else if time.Since(idle) > 5*time.Second {
			break
		}
	}
	return n, nil
}
