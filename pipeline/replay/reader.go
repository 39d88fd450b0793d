package replay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/causeway/causeway/pipeline"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// span is a range of one partition's offsets: [From, End).
type span struct{ From, End int64 }

// idleAfter is how long a partition may return nothing before the reader
// looks at why (idle).
var idleAfter = 10 * time.Second

// txnState is what is known of a buffered record's transaction.
type txnState int8

const (
	txnOpen txnState = iota
	txnCommitted
	txnAborted
)

type entry struct {
	rec   *kgo.Record
	epoch int16
	state txnState
}

// partReader turns one partition's raw records (read_uncommitted, control
// records kept) into what a read_committed consumer sees: committed and
// non-transactional records, in offset order, aborted ones dropped. It
// resolves transactions from their markers itself, so it knows exactly
// which offsets it has passed (a read_committed client skips markers and
// aborted records silently, and a range could end on one of them).
type partReader struct {
	end      int64
	next     int64    // the next offset not seen yet
	queue    []*entry // seen, not emitted yet, in offset order
	open     map[int64][]*entry
	done     bool
	removed  bool      // no longer fetched
	paused   bool      // not fetched for now (pause)
	progress time.Time // last time a record arrived
	warned   time.Time
}

func newPartReader(s span) *partReader {
	return &partReader{end: s.End, next: s.From, open: map[int64][]*entry{}, done: s.From >= s.End, progress: time.Now()}
}

// add takes one raw record and appends what it releases to out.
func (pr *partReader) add(r *kgo.Record, out []*kgo.Record) []*kgo.Record {
	if pr.done || r.Offset < pr.next {
		return out
	}
	pr.next = r.Offset + 1
	pr.progress = time.Now()
	switch {
	case r.Attrs.IsControl():
		// Control record key: version int16, type int16 (0 abort,
		// 1 commit). Records buffered under an epoch older than the
		// marker's belong to a transaction that never got a marker (a
		// broker crash aborted it); transaction version 2 bumps the epoch
		// every transaction and writes the marker with the bumped one,
		// hence epoch-1: the rule of pipeline.ReadChangelog.
		commit := len(r.Key) >= 4 && binary.BigEndian.Uint16(r.Key[2:4]) == 1
		for _, e := range pr.open[r.ProducerID] {
			if commit && e.epoch >= r.ProducerEpoch-1 {
				e.state = txnCommitted
			} else {
				e.state = txnAborted
			}
		}
		delete(pr.open, r.ProducerID)
	case r.Offset >= pr.end:
		// Past the range: only markers of transactions begun inside it
		// matter.
	case r.Attrs.IsTransactional():
		buf := pr.open[r.ProducerID]
		if len(buf) > 0 && buf[len(buf)-1].epoch < r.ProducerEpoch {
			for _, e := range buf { // a newer transaction: the older one never ended
				e.state = txnAborted
			}
			buf = nil
		}
		e := &entry{rec: r, epoch: r.ProducerEpoch}
		pr.open[r.ProducerID] = append(buf, e)
		pr.queue = append(pr.queue, e)
	default:
		pr.queue = append(pr.queue, &entry{rec: r, state: txnCommitted})
	}
	n := 0
	for n < len(pr.queue) && pr.queue[n].state != txnOpen {
		if pr.queue[n].state == txnCommitted {
			out = append(out, pr.queue[n].rec)
		}
		n++
	}
	if n > 0 {
		clear(pr.queue[:n])
		pr.queue = pr.queue[n:]
	}
	if pr.next >= pr.end && len(pr.queue) == 0 {
		pr.done = true
	}
	return out
}

// resume is the offset a later read must start from to see everything
// not emitted yet: the first record still waiting for its transaction, or
// the next offset.
func (pr *partReader) resume() int64 {
	if len(pr.queue) > 0 {
		return pr.queue[0].rec.Offset
	}
	if pr.done {
		return pr.end
	}
	return min(pr.next, pr.end)
}

// reader reads ranges of several partitions of one topic (see partReader).
type reader struct {
	cl    *kgo.Client
	topic string
	parts map[int32]*partReader
	left  int
	log   *slog.Logger
}

// newReader starts reading spans of topic. A span whose From is below the
// partition's log start begins at the log start.
func newReader(kc pipeline.KafkaConfig, topic string, spans map[int32]span, log *slog.Logger) (*reader, error) {
	rd := &reader{topic: topic, parts: make(map[int32]*partReader, len(spans)), log: log}
	offsets := map[int32]kgo.Offset{}
	for p, s := range spans {
		pr := newPartReader(s)
		rd.parts[p] = pr
		pr.removed = pr.done
		if !pr.done {
			rd.left++
			offsets[p] = kgo.NewOffset().At(s.From)
		}
	}
	cl, err := kgo.NewClient(append(kc.Opts(),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(500*time.Millisecond),
		// Records deleted under the read (retention) move it to the new
		// log start, never to the end.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
	)...)
	if err != nil {
		return nil, fmt.Errorf("replay: kafka client: %w", err)
	}
	rd.cl = cl
	return rd, nil
}

func (rd *reader) Close() { rd.cl.Close() }

// Done reports whether every span was read.
func (rd *reader) Done() bool { return rd.left == 0 }

// Resume is partition p's resume offset (partReader.resume).
func (rd *reader) Resume(p int32) int64 { return rd.parts[p].resume() }

// pause stops fetching partition p until resume: its reader has enough
// of it for now.
func (rd *reader) pause(p int32) {
	rd.parts[p].paused = true
	rd.cl.PauseFetchPartitions(map[string][]int32{rd.topic: {p}})
}

func (rd *reader) resume(p int32) {
	pr := rd.parts[p]
	pr.paused, pr.progress = false, time.Now()
	rd.cl.ResumeFetchPartitions(map[string][]int32{rd.topic: {p}})
}

// Next returns the next committed records (possibly none) and how many
// offsets the read advanced, for progress.
func (rd *reader) Next(ctx context.Context) ([]*kgo.Record, int64, error) {
	if rd.left == 0 {
		return nil, 0, nil
	}
	before := map[int32]int64{}
	for p, pr := range rd.parts {
		before[p] = min(pr.next, pr.end)
	}
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	fs := rd.cl.PollFetches(pctx)
	cancel()
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	var ferr error
	fs.EachError(func(t string, p int32, err error) {
		if ferr == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			ferr = fmt.Errorf("replay: read %s/%d: %w", t, p, err)
		}
	})
	if ferr != nil {
		return nil, 0, ferr
	}
	var out []*kgo.Record
	fs.EachRecord(func(r *kgo.Record) {
		if pr := rd.parts[r.Partition]; pr != nil {
			out = pr.add(r, out)
		}
	})
	var finished []int32
	var advanced int64
	for p, pr := range rd.parts {
		if !pr.done && !pr.paused && time.Since(pr.progress) > idleAfter && time.Since(pr.warned) > idleAfter {
			pr.warned = time.Now()
			rd.idle(ctx, p, pr)
		}
		advanced += min(pr.next, pr.end) - before[p]
		if pr.done && !pr.removed {
			pr.removed = true
			rd.left--
			finished = append(finished, p)
		}
	}
	if len(finished) > 0 {
		rd.cl.RemoveConsumePartitions(map[string][]int32{rd.topic: finished})
	}
	return out, advanced, nil
}

// idle handles a partition that returned nothing for idleAfter. Records
// deleted from under the read (the log start moved past the range's end)
// end it; anything else is reported and waited for: a transaction still
// open (the broker aborts it after its transaction timeout) or a broker
// that does not answer.
func (rd *reader) idle(ctx context.Context, p int32, pr *partReader) {
	starts, err := kadm.NewClient(rd.cl).ListStartOffsets(ctx, rd.topic)
	if err == nil {
		if s, ok := starts.Lookup(rd.topic, p); ok && s.Err == nil && s.Offset >= pr.end && len(pr.queue) == 0 {
			rd.log.Warn("the rest of the range was deleted from the log (retention) while it was read",
				"topic", rd.topic, "partition", p, "log_start", s.Offset, "end", pr.end)
			pr.next, pr.done = pr.end, true
			return
		}
	}
	if len(pr.queue) > 0 {
		rd.log.Warn("waiting for an open transaction to end (the broker aborts it after its transaction timeout)",
			"topic", rd.topic, "partition", p, "offset", pr.queue[0].rec.Offset, "producer", pr.queue[0].rec.ProducerID)
		return
	}
	rd.log.Warn("no record for a while before the end of the range; still waiting",
		"topic", rd.topic, "partition", p, "next", pr.next, "end", pr.end, "err", err)
}
