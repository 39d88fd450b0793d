// Package kafkacount counts what a Causeway cluster wrote to Kafka during a
// measured window: the high-watermark delta of each topic of the default
// layout (pipeline.DefaultLayout: group log, deliveries, sequencer state,
// rollup state) between two snapshots, and, by reading that offset range
// back, how it splits into data records and transaction control markers,
// its bytes, the record kinds, how many delivery records each message
// took, and the ClickHouse rows the rollup's analytics sink derives from
// it. The load generator (benchmarks/cmd/loadgen -kafka) takes the
// snapshots at its window's edges.
package kafkacount

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/causeway/causeway/consumers/rollup"
	"github.com/causeway/causeway/pipeline"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Role names, in report order.
const (
	RoleGroups      = "group log"
	RoleDeliveries  = "deliveries"
	RoleState       = "sequencer state"
	RoleRollupState = "rollup state"
)

// Topics maps each role to its topic in the default layout (what `causeway
// dev` and the roles use without a config file).
func Topics() [][2]string {
	l := pipeline.DefaultLayout()
	return [][2]string{{RoleGroups, l.GroupTopic}, {RoleDeliveries, l.DeliveryTopic}, {RoleState, l.StateTopic}, {RoleRollupState, l.RollupStateTopic}}
}

// Offsets is topic -> partition -> high watermark.
type Offsets map[string]map[int32]int64

// Lister lists the layout's high watermarks over one connection, so a
// snapshot at each edge of a window costs the same short round trip.
type Lister struct {
	cl  *kgo.Client
	adm *kadm.Client
}

// NewLister connects to brokers (comma-separated).
func NewLister(brokers string) (*Lister, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		return nil, err
	}
	return &Lister{cl: cl, adm: kadm.NewClient(cl)}, nil
}

// Close closes the connection.
func (l *Lister) Close() { l.cl.Close() }

// EndOffsets lists the high watermarks of the layout's topics.
func (l *Lister) EndOffsets(ctx context.Context) (Offsets, error) {
	var names []string
	for _, t := range Topics() {
		names = append(names, t[1])
	}
	lo, err := l.adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	out := Offsets{}
	var errs []error
	lo.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("%s/%d: %w", o.Topic, o.Partition, o.Err))
			return
		}
		if out[o.Topic] == nil {
			out[o.Topic] = map[int32]int64{}
		}
		out[o.Topic][o.Partition] = o.Offset
	})
	return out, errors.Join(errs...)
}

// Topic is what one topic took during the window.
type Topic struct {
	Role  string `json:"role"`
	Topic string `json:"topic"`
	// Offsets is the high-watermark delta: every data record and every
	// transaction control marker (commit/abort) written in the window.
	Offsets int64 `json:"offsets"`
	// Records are the data records of that range (aborted ones included:
	// AbortMarkers says whether there were any), Markers the control
	// markers (one per partition a transaction wrote to).
	Records int64 `json:"records"`
	Markers int64 `json:"control_markers"`
	// MarkerTxns counts the distinct (producer ID, epoch) of the markers:
	// the transactions that wrote here, when the broker bumps the epoch
	// per transaction (transaction version 2, as kfake does).
	MarkerTxns   int64 `json:"marker_transactions"`
	AbortMarkers int64 `json:"abort_markers,omitempty"`
	Tombstones   int64 `json:"tombstones,omitempty"`
	// Bytes is key + value of the data records (the payload; Kafka's
	// batch and record headers come on top).
	Bytes int64 `json:"bytes"`
	// Kinds counts the data records by kind (group log: the GroupEvent
	// kind; deliveries: event:msg, event:member, ephemeral:..., replies;
	// state topics: the key kind, "stream:" for personal streams, "-"
	// suffix for tombstones); KindBytes their bytes.
	Kinds     map[string]int64 `json:"kinds"`
	KindBytes map[string]int64 `json:"kind_bytes"`
}

// Report is the window's count.
type Report struct {
	Topics []Topic `json:"topics"`
	// Messages are the group log's send records in the window: the
	// denominator of every "per message" figure.
	Messages int64 `json:"messages"`
	// MsgDeliveries are delivery records carrying a msg event, Recipients
	// the sessions they list (the edges' last-mile fan-out).
	MsgDeliveries int64 `json:"msg_delivery_records"`
	Recipients    int64 `json:"msg_recipients"`
	// MessagesDelivered is how many distinct messages (group, seq) those
	// records carried, and MaxDeliveriesPerMessage the most records any
	// one of them took (exact, whatever the window's edges cut off).
	MessagesDelivered       int64 `json:"messages_in_deliveries"`
	MaxDeliveriesPerMessage int64 `json:"max_delivery_records_per_message"`
	// Rows are the ClickHouse rows the analytics sink writes for the
	// window, by table: messages, member_events, reads and presence_events
	// derived from the sequencer-state records exactly as the sink does
	// (rollup.RowsOf); receipts is an upper bound, the rollup-state
	// message records (the rollup hands the sink one receipt row per
	// message changed in a commit, and writes that message's state in the
	// same commit; a summary also rewrites it, without a row).
	Rows map[string]int64 `json:"clickhouse_rows"`
	// ReadSec is how long reading the range back took; Unread counts
	// partitions whose range could not be read to its end (0 normally).
	ReadSec float64 `json:"read_sec"`
	Unread  int64   `json:"unread_partitions,omitempty"`
}

// Per returns t's offsets, records, markers and bytes per message.
func (r *Report) Per(t Topic) (offsets, records, markers, bytes float64) {
	if r.Messages == 0 {
		return 0, 0, 0, 0
	}
	m := float64(r.Messages)
	return float64(t.Offsets) / m, float64(t.Records) / m, float64(t.Markers) / m, float64(t.Bytes) / m
}

// Find returns the topic of a role.
func (r *Report) Find(role string) *Topic {
	for i := range r.Topics {
		if r.Topics[i].Role == role {
			return &r.Topics[i]
		}
	}
	return nil
}

// Count reads every layout topic between from and to (end offsets taken
// before and after the window) and counts it.
func Count(ctx context.Context, brokers string, from, to Offsets) (*Report, error) {
	start := time.Now()
	rep := &Report{Rows: map[string]int64{}}
	roles := map[string]string{}
	consume := map[string]map[int32]kgo.Offset{}
	left := map[string]map[int32]int64{} // topic -> partition -> end, for those not done
	n := 0
	for _, rt := range Topics() {
		role, topic := rt[0], rt[1]
		roles[topic] = role
		t := Topic{Role: role, Topic: topic, Kinds: map[string]int64{}, KindBytes: map[string]int64{}}
		for p, end := range to[topic] {
			beg, ok := from[topic][p]
			if !ok || end <= beg {
				continue
			}
			t.Offsets += end - beg
			if consume[topic] == nil {
				consume[topic], left[topic] = map[int32]kgo.Offset{}, map[int32]int64{}
			}
			consume[topic][p] = kgo.NewOffset().At(beg)
			left[topic][p] = end
			n++
		}
		rep.Topics = append(rep.Topics, t)
	}
	if n == 0 {
		return rep, nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()), kgo.KeepControlRecords(),
		kgo.ConsumePartitions(consume), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	perMsg := map[string]int64{} // group \0 seq -> delivery records
	type txn struct {
		topic string
		pid   int64
		epoch int16
	}
	txns := map[txn]bool{}
	var batch rollup.Batch
	idle := time.Now()
	for n > 0 {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read back: %w (%d partitions unfinished)", ctx.Err(), n)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				ferr = errors.Join(ferr, fmt.Errorf("fetch %s/%d: %w", t, p, err))
			}
		})
		if ferr != nil {
			return nil, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := left[r.Topic][r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			if r.Offset == end-1 {
				delete(left[r.Topic], r.Partition)
				n--
			}
			t := rep.Find(roles[r.Topic])
			if r.Attrs.IsControl() {
				t.Markers++
				if k := (txn{r.Topic, r.ProducerID, r.ProducerEpoch}); !txns[k] {
					txns[k] = true
					t.MarkerTxns++
				}
				if len(r.Key) >= 4 && r.Key[2] == 0 && r.Key[3] == 0 {
					t.AbortMarkers++
				}
				return
			}
			t.Records++
			size := int64(len(r.Key) + len(r.Value))
			t.Bytes += size
			if r.Value == nil {
				t.Tombstones++
			}
			kind := rep.classify(t.Role, r, perMsg, &batch)
			t.Kinds[kind]++
			t.KindBytes[kind] += size
		})
		if len(fs.Records()) > 0 {
			idle = time.Now()
		} else if time.Since(idle) > 3*time.Second {
			// The rest of the range is gone (compacted away) or not
			// readable: report what was read.
			rep.Unread = int64(n)
			break
		}
	}
	rep.MessagesDelivered = int64(len(perMsg))
	for _, c := range perMsg {
		rep.MaxDeliveriesPerMessage = max(rep.MaxDeliveriesPerMessage, c)
	}
	rep.Rows["messages"] = int64(len(batch.Messages))
	rep.Rows["member_events"] = int64(len(batch.Members))
	rep.Rows["reads"] = int64(len(batch.Reads))
	rep.Rows["presence_events"] = int64(len(batch.Presence))
	if t := rep.Find(RoleRollupState); t != nil {
		rep.Rows["receipts"] = t.Kinds["message"]
	}
	rep.ReadSec = time.Since(start).Seconds()
	return rep, nil
}

// classify names a data record's kind and tallies what the report counts
// across records.
func (rep *Report) classify(role string, r *kgo.Record, perMsg map[string]int64, batch *rollup.Batch) string {
	switch role {
	case RoleGroups:
		var ev pb.GroupEvent
		if proto.Unmarshal(r.Value, &ev) != nil {
			return "undecodable"
		}
		k := oneofName(ev.ProtoReflect(), "kind")
		if k == "send" {
			rep.Messages++
		}
		return k
	case RoleDeliveries:
		var d pb.Delivery
		if proto.Unmarshal(r.Value, &d) != nil {
			return "undecodable"
		}
		switch {
		case d.GetEvent() != nil:
			k := oneofName(d.GetEvent().ProtoReflect(), "kind")
			if k == "msg" {
				rep.MsgDeliveries++
				rep.Recipients += int64(len(d.GetSessions()))
				perMsg[fmt.Sprintf("%s\x00%d", d.GetGroup(), d.GetEvent().GetSeq())]++
			}
			return "event:" + k
		case d.GetEphemeral() != nil:
			return "ephemeral:" + oneofName(d.GetEphemeral().ProtoReflect(), "kind")
		default:
			return "replies"
		}
	case RoleState:
		rollup.RowsOf(batch, r)
		return keyKind(r, stateKinds)
	case RoleRollupState:
		return keyKind(r, rollupKinds)
	}
	return "?"
}

// The changelog key kinds (records.proto; consumers/rollup).
var (
	stateKinds = map[string]string{"g": "meta", "m": "member", "a": "attachment", "d": "dedup", "h": "history",
		"w": "watcher", "c": "call", "s": "signal", "r": "alias", "p": "presence"}
	rollupKinds = map[string]string{"m": "member", "x": "message"}
)

func keyKind(r *kgo.Record, names map[string]string) string {
	parts := strings.SplitN(string(r.Key), "\x00", 3)
	k := "?"
	if len(parts) >= 2 {
		k = parts[1]
		if n, ok := names[k]; ok {
			k = n
		}
		if strings.HasPrefix(parts[0], "u:") {
			k = "stream:" + k
		}
	}
	if r.Value == nil {
		k += "-"
	}
	return k
}

func oneofName(m protoreflect.Message, oneof string) string {
	od := m.Descriptor().Oneofs().ByName(protoreflect.Name(oneof))
	if od == nil {
		return "?"
	}
	if fd := m.WhichOneof(od); fd != nil {
		return string(fd.Name())
	}
	return "none"
}

// SortedKinds lists a topic's kinds, most records first.
func (t Topic) SortedKinds() []string {
	ks := make([]string, 0, len(t.Kinds))
	for k := range t.Kinds {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		if t.Kinds[ks[i]] != t.Kinds[ks[j]] {
			return t.Kinds[ks[i]] > t.Kinds[ks[j]]
		}
		return ks[i] < ks[j]
	})
	return ks
}
