package replay

import (
	"context"
	"fmt"
	"strings"

	"github.com/causeway/causeway/consumers/sequencer"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
)

// What every replay that reads the group log shares: the check that the
// log still starts at offset 0, and running a partition of it through the
// sequencer's own state machine (sequencer.State), record by record, as a
// sequencer does.

// decodeEvent decodes a group-log record the way the sequencer does: it
// skips (and counts as undecodable) a record that does not decode, and one
// whose key is not its group (heartbeats have no key).
func decodeEvent(rec *kgo.Record) (*pb.GroupEvent, bool) {
	ev := new(pb.GroupEvent)
	if err := proto.Unmarshal(rec.Value, ev); err != nil {
		return nil, false
	}
	if ev.GetGroup() != string(rec.Key) && ev.GetHeartbeat() == nil {
		return nil, false
	}
	return ev, true
}

// logStep is one applied record of the group log and the changelog writes
// it made (sorted by key), in the order the sequencer would make them.
type logStep struct {
	Rec    *kgo.Record
	Ev     *pb.GroupEvent
	Writes []sequencer.Write
}

// logCounts counts what runLog saw.
type logCounts struct {
	// Applied records; Undecodable ones were skipped, as the sequencer
	// skips them.
	Applied, Undecodable int
}

// runLog runs partition p of topic (a group log), [from, end), through st
// and hands each applied record, with the writes it made, to each; each
// returns true to stop the read there. Taking the writes after every
// record (not per batch, as a sequencer does) gives every intermediate
// value, each with the time of the record that made it.
func runLog(ctx context.Context, c *Common, topic string, p int32, from, end int64, st *sequencer.State, each func(logStep) (bool, error)) (logCounts, error) {
	var n logCounts
	rd, err := newReader(c.Kafka, topic, map[int32]span{p: {from, end}}, c.Log)
	if err != nil {
		return n, err
	}
	defer rd.Close()
	for !rd.Done() {
		recs, advanced, err := rd.Next(ctx)
		if err != nil {
			return n, fmt.Errorf("read %s partition %d: %w", topic, p, err)
		}
		c.Progress.Add(advanced)
		for _, rec := range recs {
			ev, ok := decodeEvent(rec)
			if !ok {
				n.Undecodable++
				continue
			}
			st.Apply(ev)
			n.Applied++
			stop, err := each(logStep{Rec: rec, Ev: ev, Writes: st.TakeWrites()})
			if err != nil || stop {
				return n, err
			}
		}
	}
	return n, nil
}

// logStarts lists where each partition of topic starts now.
func logStarts(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	return offsets("start", func() (kadm.ListedOffsets, error) { return adm.ListStartOffsets(ctx, topic) }, topic)
}

// stableEnds lists each partition's stable end (last stable offset):
// every transaction below it has ended, so a read up to it never waits
// for one still open.
func stableEnds(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	return offsets("stable end", func() (kadm.ListedOffsets, error) { return adm.ListCommittedOffsets(ctx, topic) }, topic)
}

// checkTruncated refuses a group log that no longer starts at offset 0 in
// one of parts (retention deleted its beginning, and with it the state of
// the groups that were there), unless allow: then it warns.
func checkTruncated(c *Common, topic string, starts map[int32]int64, parts []int32, allow bool) error {
	var bad []string
	for _, p := range parts {
		if s := starts[p]; s > 0 {
			bad = append(bad, fmt.Sprintf("partition %d starts at offset %d", p, s))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	msg := fmt.Sprintf("%s: %s (retention deleted its beginning): the state of groups whose records are gone cannot be rebuilt",
		topic, strings.Join(bad, ", "))
	if !allow {
		return fmt.Errorf("replay: %w: %s; pass --allow-truncated-log to rebuild from what is left", ErrTruncatedLog, msg)
	}
	c.Log.Warn("rebuilding from a truncated group log", "detail", msg)
	fmt.Fprintf(c.Out, "warning: %s; rebuilding from what is left (--allow-truncated-log)\n", msg)
	return nil
}
