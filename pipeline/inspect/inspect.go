// Package inspect reads a range of one of Causeway's topics and decodes its
// records with the protobuf schemas: the library behind `causeway inspect`.
//
// Transactions are resolved the way a read_committed consumer sees them:
// records of aborted transactions are not shown, and records of a
// committed one appear when its commit marker is read (so in commit order).
// Records of transactions still open when a read stops are shown, marked
// open, since a stuck transaction is what an operator may be looking for.
// Records that do not decode are shown with the error and their bytes, never
// skipped and never fatal.
//
// Concurrency: Run reads on the calling goroutine and calls its Sink from
// there only; Options and Records are plain values.
package inspect

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/causeway/causeway/pipeline"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
)

// Bound is where a read starts or stops: an offset, a time, or unset.
type Bound struct {
	Offset int64
	Time   time.Time
	set    bool
}

// OffsetBound is the bound at offset o.
func OffsetBound(o int64) Bound { return Bound{Offset: o, set: true} }

// TimeBound is the bound at time t (record timestamps).
func TimeBound(t time.Time) Bound { return Bound{Time: t, set: true} }

// IsSet reports whether b bounds anything.
func (b Bound) IsSet() bool { return b.set }

// IsTime reports whether b is a time rather than an offset.
func (b Bound) IsTime() bool { return b.set && !b.Time.IsZero() }

func (b Bound) String() string {
	switch {
	case !b.set:
		return "unset"
	case b.IsTime():
		return b.Time.Format(time.RFC3339Nano)
	}
	return strconv.FormatInt(b.Offset, 10)
}

// ParseBound reads an offset (a whole number, 0 or more) or an RFC 3339
// time; "" is unset.
func ParseBound(s string) (Bound, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Bound{}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return Bound{}, fmt.Errorf("%q: an offset must be 0 or more", s)
		}
		return OffsetBound(n), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return Bound{}, fmt.Errorf("%q: want an offset (e.g. 1200) or an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)", s)
	}
	return TimeBound(t), nil
}

// Options says what to read.
type Options struct {
	Kafka  pipeline.KafkaConfig
	Layout pipeline.Layout
	// Topic is one of the layout's topics, by name or by its role:
	// groups, state or deliveries.
	Topic string
	// Partition restricts the read to one partition; -1 reads every
	// partition (or, with Group on the group log or the changelog, the
	// group's).
	Partition int32
	// From is the first offset or time (inclusive); unset is the log start.
	From Bound
	// To is where to stop (exclusive): records at or after this offset or
	// timestamp are not read. Unset is the high watermark seen at start,
	// or never with Follow.
	To Bound
	// Group keeps only this group's records. On the group log and the
	// changelog only its partition is read (pipeline.PartitionFor); the
	// deliveries are keyed by edge, so every partition is read and
	// filtered by the delivery's group (an undecodable delivery, whose
	// group cannot be told, is kept).
	Group string
	// Follow keeps reading new records until ctx is done (or To).
	Follow bool
}

// Validate reports the first invalid option.
func (o Options) Validate() error {
	if err := o.Kafka.Validate(); err != nil {
		return err
	}
	if err := o.Layout.Validate(); err != nil {
		return err
	}
	if _, _, err := o.topic(); err != nil {
		return err
	}
	if o.Partition < -1 {
		return fmt.Errorf("partition %d: must be 0 or more", o.Partition)
	}
	if o.From.IsSet() && o.To.IsSet() && o.From.IsTime() == o.To.IsTime() {
		if o.From.IsTime() && !o.From.Time.Before(o.To.Time) || !o.From.IsTime() && o.From.Offset >= o.To.Offset {
			return fmt.Errorf("from %s is not before to %s: nothing to read", o.From, o.To)
		}
	}
	return nil
}

func (o Options) topic() (string, topicKind, error) {
	l := o.Layout
	switch o.Topic {
	case l.GroupTopic, "groups":
		return l.GroupTopic, groupLog, nil
	case l.StateTopic, "state":
		return l.StateTopic, stateLog, nil
	case l.DeliveryTopic, "deliveries":
		return l.DeliveryTopic, deliveryLog, nil
	}
	return "", 0, fmt.Errorf("topic %q: not one of the layout's topics (%s, %s, %s; or groups, state, deliveries)",
		o.Topic, l.GroupTopic, l.StateTopic, l.DeliveryTopic)
}

// Record is one decoded record.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
	Key       []byte
	// Raw is the value as stored; nil for a tombstone.
	Raw []byte
	// Schema is the full protobuf name of the value's message, empty when
	// the key does not tell it (a malformed changelog key).
	Schema string
	// Value is the decoded value; nil for a tombstone or when Err is set.
	Value proto.Message
	// Version is the value's schema version field; nil when the message
	// has none (history events) or was not decoded.
	Version   *uint32
	Tombstone bool
	// StateKey is the parsed key of a changelog record.
	StateKey *StateKey
	// Err says why the value could not be decoded.
	Err error
	// Open is true for a record of a transaction that had not ended when
	// the read stopped: it may still commit or abort.
	Open bool
}

// Sink receives the records of a read.
type Sink interface {
	Write(Record) error
	// Flush is called after each batch of records, so a follower sees
	// them promptly.
	Flush() error
}

// ErrGroupPartition is returned when Partition and Group disagree.
var ErrGroupPartition = errors.New("group is not in that partition")

// pending is a record of a transaction whose marker was not read yet.
type pending struct {
	rec   *kgo.Record
	epoch int16
}

type partState struct {
	from int64 // records below are skipped (a from offset past the end)
	end  int64 // exclusive; -1: none
	done bool
	open map[int64][]pending // producer ID -> its open transaction
}

// Run reads the range o describes and writes every record it keeps to
// sink. Without Follow it returns once every partition reached its end;
// with Follow it returns nil when ctx is done.
func Run(ctx context.Context, o Options, sink Sink) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	topic, kind, _ := o.topic()
	cl, err := kgo.NewClient(append(o.Kafka.Opts(),
		// Transactions are resolved here, from the markers, so a read
		// is not held at the last stable offset by a dead producer's
		// open transaction, and can show such records as open.
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(500*time.Millisecond),
	)...)
	if err != nil {
		return fmt.Errorf("inspect: kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	parts, err := partitions(ctx, adm, o, topic, kind)
	if err != nil {
		return err
	}
	states, offsets, err := positions(ctx, adm, o, topic, parts)
	if err != nil {
		return err
	}
	left := 0
	for _, st := range states {
		if !st.done {
			left++
		}
	}
	if left == 0 {
		return sink.Flush()
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets})

	emit := func(r *kgo.Record, open bool) error {
		rec := Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp,
			Key: r.Key, Raw: r.Value, Open: open}
		decode(kind, &rec)
		if o.Group != "" {
			if g, ok := group(kind, &rec); ok && g != o.Group {
				return nil
			}
		}
		return sink.Write(rec)
	}
	// finish ends a partition: what is still in an open transaction is
	// shown as open, in offset order.
	finish := func(st *partState) error {
		st.done = true
		left--
		var rest []pending
		for _, ps := range st.open {
			rest = append(rest, ps...)
		}
		sort.Slice(rest, func(i, j int) bool { return rest[i].rec.Offset < rest[j].rec.Offset })
		for _, p := range rest {
			if err := emit(p.rec, true); err != nil {
				return err
			}
		}
		return nil
	}

	for left > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			if o.Follow {
				return sink.Flush()
			}
			return fmt.Errorf("inspect %s: %w", topic, ctx.Err())
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil && !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("inspect: fetch %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		var werr error
		fs.EachRecord(func(r *kgo.Record) {
			st := states[r.Partition]
			if werr != nil || st == nil || st.done || r.Offset < st.from {
				return
			}
			if st.end >= 0 && r.Offset >= st.end || o.To.IsTime() && !r.Timestamp.Before(o.To.Time) {
				werr = finish(st)
				return
			}
			werr = step(st, r, emit)
			if werr == nil && st.end >= 0 && r.Offset >= st.end-1 {
				werr = finish(st)
			}
		})
		if werr != nil {
			return werr
		}
		if err := sink.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// step applies one record to its partition's transaction state.
func step(st *partState, r *kgo.Record, emit func(*kgo.Record, bool) error) error {
	switch {
	case r.Attrs.IsControl():
		// Control record key: version int16, type int16 (0 abort,
		// 1 commit). Records buffered under an epoch older than the
		// marker's transaction belong to one that never got a marker (a
		// broker crash aborted it); transaction version 2 bumps the
		// epoch each transaction and writes the marker with the bumped
		// one, hence epoch-1. The same rule as pipeline.ReadChangelog.
		if len(r.Key) >= 4 && r.Key[2] == 0 && r.Key[3] == 1 {
			for _, p := range st.open[r.ProducerID] {
				if p.epoch >= r.ProducerEpoch-1 {
					if err := emit(p.rec, false); err != nil {
						return err
					}
				}
			}
		}
		delete(st.open, r.ProducerID)
	case r.Attrs.IsTransactional():
		buf := st.open[r.ProducerID]
		if len(buf) > 0 && buf[len(buf)-1].epoch < r.ProducerEpoch {
			buf = buf[:0] // a newer transaction: the older one never ended
		}
		st.open[r.ProducerID] = append(buf, pending{r, r.ProducerEpoch})
	default:
		return emit(r, false)
	}
	return nil
}

// partitions picks the partitions to read.
func partitions(ctx context.Context, adm *kadm.Client, o Options, topic string, kind topicKind) ([]int32, error) {
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("inspect: describe topic %s: %w", topic, err)
	}
	d, ok := details[topic]
	if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return nil, fmt.Errorf("inspect: topic %s: %w", topic, pipeline.ErrTopicMissing)
	}
	if d.Err != nil {
		return nil, fmt.Errorf("inspect: describe topic %s: %w", topic, d.Err)
	}
	n := int32(len(d.Partitions))
	if o.Partition >= n {
		return nil, fmt.Errorf("inspect: partition %d: topic %s has partitions 0 to %d", o.Partition, topic, n-1)
	}
	if o.Group != "" && kind != deliveryLog {
		// The topic's own count, which is what placed the records; the
		// roles refuse to run when it differs from the layout's.
		p := pipeline.PartitionFor(o.Group, n)
		if o.Partition >= 0 && o.Partition != p {
			return nil, fmt.Errorf("inspect: group %q is in partition %d of %s, not %d: %w", o.Group, p, topic, o.Partition, ErrGroupPartition)
		}
		return []int32{p}, nil
	}
	if o.Partition >= 0 {
		return []int32{o.Partition}, nil
	}
	return d.Partitions.Numbers(), nil
}

// positions resolves From and To into per-partition offsets.
func positions(ctx context.Context, adm *kadm.Client, o Options, topic string, parts []int32) (map[int32]*partState, map[int32]kgo.Offset, error) {
	list := func(what string, f func() (kadm.ListedOffsets, error)) (kadm.ListedOffsets, error) {
		l, err := f()
		if err == nil {
			err = l.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("inspect: list %s offsets of %s: %w", what, topic, err)
		}
		return l, nil
	}
	starts, err := list("start", func() (kadm.ListedOffsets, error) { return adm.ListStartOffsets(ctx, topic) })
	if err != nil {
		return nil, nil, err
	}
	ends, err := list("end", func() (kadm.ListedOffsets, error) { return adm.ListEndOffsets(ctx, topic) })
	if err != nil {
		return nil, nil, err
	}
	var byTime kadm.ListedOffsets
	if o.From.IsTime() {
		byTime, err = list("time", func() (kadm.ListedOffsets, error) {
			return adm.ListOffsetsAfterMilli(ctx, o.From.Time.UnixMilli(), topic)
		})
		if err != nil {
			return nil, nil, err
		}
	}
	states := make(map[int32]*partState, len(parts))
	offsets := make(map[int32]kgo.Offset, len(parts))
	for _, p := range parts {
		s, _ := starts.Lookup(topic, p)
		e, _ := ends.Lookup(topic, p)
		st := &partState{from: s.Offset, end: -1, open: map[int64][]pending{}}
		switch {
		case o.From.IsTime():
			t, _ := byTime.Lookup(topic, p)
			st.from = max(t.Offset, s.Offset)
		case o.From.IsSet():
			st.from = max(o.From.Offset, s.Offset)
		}
		if !o.Follow {
			st.end = e.Offset
		}
		if o.To.IsSet() && !o.To.IsTime() && (st.end < 0 || o.To.Offset < st.end) {
			st.end = o.To.Offset
		}
		// Fetching past the high watermark is out of range; a follower
		// of a from offset beyond it starts there and skips up to from.
		offsets[p] = kgo.NewOffset().At(min(st.from, e.Offset))
		st.done = st.end >= 0 && st.from >= st.end
		states[p] = st
	}
	return states, offsets, nil
}
