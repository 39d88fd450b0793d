package replay

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/causeway/causeway/consumers/rollup"
	"github.com/causeway/causeway/consumers/sequencer"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
)

// The rollup's changelog (the rollup state topic) rebuilt from the group
// log. The rollup reads the sequencer's changelog, so the rebuild runs
// each partition of the group log through the sequencer's state machine,
// as State does, and feeds the changelog writes that makes into the
// rollup's own state machine (rollup.State), as the rollup is fed the
// records of the sequencer state topic; the rollup's changelog writes
// then make the rebuilt state. The rollup state topic is co-partitioned
// with the group log and the sequencer state topic, so partition p of
// one is rebuilt from partition p of the other.
//
// What the comparison covers: every key (members and tracked messages of
// every group), each member's join seq, read watermark and read time, and
// each message's seq, sender, send time, members at send and read count,
// exactly. What it ignores, because the live rollup and a rebuild
// legitimately differ there:
//
//   - a message's pending mark (a receipts summary is still owed): the
//     live rollup clears it when it emits a summary, by the wall clock
//     (Flush); a rebuild has no clock. A written rebuild marks as owed
//     the messages whose count no summary in the group log carries
//     (rollup.State.MarkOwed), so a rollup that resumes emits what was
//     owed and nothing twice;
//   - a message's first and last read times and time-to-read samples:
//     the live rollup reads the sequencer's changelog per transaction,
//     where two reads by one member coalesce into one record (the later
//     one), so the messages the first read passed take the later read's
//     time; the rebuild sees every read with its own time.
//
// Where the rollups stand matters as much as what they hold: they resume
// at their group's committed offset in the sequencer state topic, and
// apply what follows on top of their state. So the comparison is with
// the state a rollup resuming now would reach: the topic's state with
// the sequencer changelog records after the committed offset applied
// (none when the rollups have caught up), against the rebuild up to the
// sequencers' committed offset, which is where the sequencer state topic
// stands.

// ErrRollupsRunning: --write while the rollup group has members.
var ErrRollupsRunning = errors.New("rollups are running")

// ErrRollupBehind: --write where the rollup group's committed offset in
// the sequencer state topic is behind records whose changes the rebuild
// already has, and that a rollup resuming there would apply again.
var ErrRollupBehind = errors.New("the rollup group's committed offset is behind the rebuild")

// RollupStateOptions configure RollupState. The StateOptions apply as for
// State, to the rollup's changelog: Verify compares the rebuild with the
// rollup state topic; Write writes it there, refusing while the rollup
// group has members, into a topic that is not empty unless Force, and
// for a partition where the rollup group has no committed offset in the
// sequencer state topic unless CommitOffsets, which then commits there
// the sequencer state topic's end that corresponds to the rebuild's end.
// SequencerGroup and Limits are the sequencers': the rebuild ends at the
// sequencer group's committed offset in the group log.
type RollupStateOptions struct {
	StateOptions
	// RollupLimits are the rollups' limits (rollup.* settings):
	// MaxMessages bounds the messages each group tracks.
	RollupLimits rollup.Limits
	// RollupGroup is the rollups' consumer group (rollup.group_id), whose
	// offsets are in the sequencer state topic.
	RollupGroup string
}

// RollupState rebuilds the rollup's changelog from the group log, one
// partition at a time, and verifies and/or writes it (RollupStateOptions).
// It returns ErrMismatch (wrapped) when a verification found differences.
func RollupState(ctx context.Context, o RollupStateOptions) (StateReport, error) {
	if o.RollupGroup == "" {
		return StateReport{}, errors.New("replay: the rollup group (rollup.group_id) must not be empty")
	}
	l := o.Layout
	rr := &rollupRun{group: o.RollupGroup, limits: o.RollupLimits, log: rollupChangelog()}
	return runState(ctx, o.StateOptions, &stateTarget{
		into: "rollup-state",
		run: fmt.Sprintf("into=rollup-state groups=%s state=%s rollup_state=%s group_partitions=%d partitions=%s sequencer_group=%s rollup_group=%s verify=%t write=%t commit_offsets=%t",
			l.GroupTopic, l.StateTopic, l.RollupStateTopic, l.GroupPartitions, partitionList(o.partitions(), l.GroupPartitions),
			o.SequencerGroup, o.RollupGroup, o.Verify, o.Write, o.CommitOffsets),
		topic:     l.RollupStateTopic,
		writer:    o.RollupGroup,
		role:      "rollup",
		stop:      "kubectl -n causeway scale statefulset/causeway-rollup --replicas=0",
		why:       "it would count reads into a state the write replaces",
		running:   ErrRollupsRunning,
		offsets:   l.StateTopic,
		partition: rr.partition,
	})
}

// rollupChangelog is the rollup changelog's schema (consumers/rollup,
// records.proto): `<group>\0m\0<user>` members, `<group>\0x\0<seq>`
// messages (seq zero-padded to 20 digits).
func rollupChangelog() *changelog {
	return &changelog{
		kinds: changelogKinds{
			"m": {"member", func() proto.Message { return &pb.RollupMember{} }},
			"x": {"message", func() proto.Message { return &pb.RollupMessage{} }},
		},
		ignore: func(m proto.Message) {
			if x, ok := m.(*pb.RollupMessage); ok {
				x.Pending, x.FirstReadTsMs, x.LastReadTsMs, x.TtrMs = false, 0, 0, nil
			}
		},
	}
}

// rollupRun is what a rollup state replay adds to the state replay's run
// (stateRun, whose options are validated).
type rollupRun struct {
	group  string
	limits rollup.Limits
	log    *changelog
}

// rollupRebuild is one partition's rollup state being rebuilt.
type rollupRebuild struct {
	folded
	seq *sequencer.State
	st  *rollup.State
	// reported holds, per group and seq, the count the latest receipts
	// summary in the group log gave the message.
	reported map[string]map[uint64]uint32
	// records applied to the sequencer's state, bad ones skipped (as the
	// sequencer skips them); skipped changelog values the rollup could not
	// decode (as it skips them).
	records, bad, skipped int
}

// apply runs the group log's partition p from from to end through the
// sequencer's state, and its changelog writes through the rollup's.
func (b *rollupRebuild) apply(ctx context.Context, c *Common, p int32, from, end int64) error {
	n, err := runLog(ctx, c, c.Layout.GroupTopic, p, from, end, b.seq, func(s logStep) (bool, error) {
		if rs := s.Ev.GetReceipts(); rs != nil {
			counts := b.reported[s.Ev.GetGroup()]
			if counts == nil {
				counts = map[uint64]uint32{}
				b.reported[s.Ev.GetGroup()] = counts
			}
			for _, rc := range rs.GetReads() {
				counts[rc.GetSeq()] = rc.GetCount()
			}
		}
		// Timed by the log record, as the live rollup times them by the
		// sequencer's record that followed it.
		ms := s.Rec.Timestamp.UnixMilli()
		for _, w := range s.Writes {
			if !b.st.Apply(w.Key, w.Value, ms) {
				b.skipped++
				c.Log.Warn("the rollup's rebuild skipped a changelog value it could not decode", "partition", p, "offset", s.Rec.Offset, "key", w.Key)
			}
		}
		for _, w := range b.st.TakeWrites() {
			b.put(w.Key, w.Value, ms)
		}
		return false, nil
	})
	b.records += n.Applied
	b.bad += n.Undecodable
	return err
}

// markOwed sets the messages' pending marks from the summaries in the log
// (rollup.State.MarkOwed), before the rebuild is written.
func (b *rollupRebuild) markOwed() {
	b.st.MarkOwed(func(group string, seq uint64, count uint32) bool {
		c, ok := b.reported[group][seq]
		return !ok || c != count
	})
	for _, w := range b.st.TakeWrites() {
		b.keys[w.Key] = w.Value // only the mark changed: the key keeps its time
	}
}

// rollupPosition is where the rollups resume in one partition.
type rollupPosition struct {
	// has: the rollup group has a committed offset, at, in the sequencer
	// state topic; without one a rollup reads it from its start.
	has bool
	at  int64
	// members of the rollup group (with Verify: their commits may move
	// the topic while it is read).
	members []string
}

// resumedState is the state a rollup restoring keys (a rollup state topic
// partition) and then applying lag (records of the sequencer state topic)
// would have, as keys: those lag changed replaced.
func resumedState(l rollup.Limits, keys map[string][]byte, lag []*kgo.Record) map[string][]byte {
	if len(lag) == 0 {
		return keys
	}
	st := rollup.NewState(l)
	for k, v := range keys {
		st.Restore(k, v) // what does not decode stays in keys, as a difference
	}
	st.FinishRestore()
	for _, r := range lag {
		st.Apply(string(r.Key), r.Value, r.Timestamp.UnixMilli())
	}
	out := maps.Clone(keys)
	for _, w := range st.TakeWrites() {
		if w.Value == nil {
			delete(out, w.Key)
		} else {
			out[w.Key] = w.Value
		}
	}
	return out
}

// readSpan reads the committed records of topic's partition p in s.
func readSpan(ctx context.Context, c *Common, topic string, p int32, s span) ([]*kgo.Record, error) {
	if s.From >= s.End {
		return nil, nil
	}
	rd, err := newReader(c.Kafka, topic, map[int32]span{p: s}, c.Log)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	var out []*kgo.Record
	for !rd.Done() {
		recs, _, err := rd.Next(ctx)
		if err != nil {
			return nil, fmt.Errorf("read %s partition %d: %w", topic, p, err)
		}
		out = append(out, recs...)
	}
	return out, nil
}

// ends returns where partition p is rebuilt to (the sequencer group's
// committed offset in the group log, else its stable end) and the stable
// end of the sequencer state topic that goes with it. The sequencers
// commit their changelog and their offsets in one transaction, so while
// they run the two are read until the state topic's end is the same
// before and after the committed offset (a transaction that commits in
// between would be in one and not the other); settled is false when it
// kept moving.
func (rr *rollupRun) ends(ctx context.Context, r *stateRun, p int32) (end int64, committed bool, stateEnd int64, settled bool, err error) {
	topic := r.o.Layout.StateTopic
	for try := 0; ; try++ {
		before, err := stableEnds(ctx, r.adm, topic)
		if err != nil {
			return 0, false, 0, false, err
		}
		if end, committed, err = r.replayPoint(ctx, p); err != nil {
			return 0, false, 0, false, err
		}
		after, err := stableEnds(ctx, r.adm, topic)
		if err != nil {
			return 0, false, 0, false, err
		}
		// On a miss, the end before: a transaction in the rebuild but
		// after it is applied again by a rollup resuming there, where one
		// after the rebuild but before it would be skipped.
		if before[p] == after[p] || try == settleTries {
			return end, committed, before[p], before[p] == after[p], nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// position reads where the rollups resume in partition p.
func (rr *rollupRun) position(ctx context.Context, r *stateRun, p int32) (rollupPosition, error) {
	var pos rollupPosition
	c, err := committedOffsets(ctx, r.adm, rr.group, r.o.Layout.StateTopic)
	if err != nil {
		return pos, err
	}
	pos.at, pos.has = c[p]
	pos.members, err = members(ctx, r.adm, rr.group)
	return pos, err
}

// lagSpan is what a rollup resuming at pos applies first, up to the
// sequencer state topic's end stateEnd. An offset past the end (the
// topic was recreated since the rollups committed it) is an error: where
// they resume then means nothing.
func (rr *rollupRun) lagSpan(r *stateRun, pos rollupPosition, p int32, stateStart, stateEnd int64) (span, error) {
	if !pos.has {
		return span{stateStart, stateEnd}, nil
	}
	if pos.at > stateEnd {
		return span{}, fmt.Errorf("replay: the rollup group %s's committed offset %d in %s/%d is past the topic's end %d: was the sequencer state topic recreated? "+
			"The offset means nothing in the new topic: delete the group's offsets in it "+
			"(kafka-consumer-groups.sh --bootstrap-server $B --group %s --topic %s --delete-offsets) and run --write --commit-offsets",
			rr.group, pos.at, r.o.Layout.StateTopic, p, stateEnd, rr.group, r.o.Layout.StateTopic)
	}
	return span{max(pos.at, stateStart), stateEnd}, nil
}

// readLag reads what a rollup resuming at x.pos applies first (lagSpan).
// Verifying only, an offset that means nothing is noted, and the topic
// compared as it is.
func (rr *rollupRun) readLag(ctx context.Context, r *stateRun, x *rollupPart) error {
	o, p, topic := r.o, x.sp.Partition, r.o.Layout.StateTopic
	starts, err := logStarts(ctx, r.adm, topic)
	if err != nil {
		return err
	}
	lag, err := rr.lagSpan(r, x.pos, p, starts[p], x.stateEnd)
	if err != nil {
		if o.Write {
			return err
		}
		fmt.Fprintf(o.Out, "partition %d: note: %v\n", p, err)
		return nil
	}
	if x.lag, err = readSpan(ctx, &o.Common, topic, p, lag); err != nil {
		return err
	}
	x.lagKnown = true
	return nil
}

// rollupPart is one partition being rebuilt and compared.
type rollupPart struct {
	sp    StatePartition
	pos   rollupPosition
	b     *rollupRebuild
	topic map[string][]byte
	// lag is what a rollup resuming at pos applies first, up to the
	// sequencer state topic's offset stateEnd that matches sp.End.
	lag      []*kgo.Record
	stateEnd int64
	// lagKnown: lag starts where the rollups resume (not so when their
	// offset means nothing in the topic).
	lagKnown bool
	// settled: stateEnd and sp.End were read together (ends); moving:
	// the sequencers committed during the comparison.
	settled, moving bool
}

// partition rebuilds partition p of the rollup state and verifies and/or
// writes it (RollupStateOptions).
func (rr *rollupRun) partition(ctx context.Context, r *stateRun, p int32) (StatePartition, error) {
	o := r.o
	x := &rollupPart{sp: StatePartition{Partition: p, LogStart: r.starts[p]}}
	sp := &x.sp
	// The rollups' offset before their topic: a rollup that runs (only
	// while verifying) commits its state and offset together, so the
	// topic read after is at or after the offset, and applying the lag
	// again on top is what a restart would do.
	var err error
	if x.pos, err = rr.position(ctx, r, p); err != nil {
		return *sp, err
	}
	if o.Verify || o.Write {
		if x.topic, _, err = r.readState(ctx, p); err != nil {
			return *sp, err
		}
	}
	end, committed, stateEnd, settled, err := rr.ends(ctx, r, p)
	if err != nil {
		return *sp, err
	}
	sp.End, sp.Committed, x.stateEnd, x.settled = max(end, sp.LogStart), committed, stateEnd, settled

	x.b = &rollupRebuild{folded: newFolded(), seq: sequencer.NewState(o.Limits), st: rollup.NewState(rr.limits), reported: map[string]map[uint64]uint32{}}
	if err := x.b.apply(ctx, &o.Common, p, sp.LogStart, sp.End); err != nil {
		return *sp, err
	}
	// A write where the rollups have no offset commits one, or refuses:
	// what they would read from the start does not matter.
	if o.Verify || (o.Write && x.pos.has) {
		if err := rr.readLag(ctx, r, x); err != nil {
			return *sp, err
		}
	}

	var diffs []Diff
	sp.TopicKeys = len(x.topic)
	if o.Write {
		if err := rr.checkResume(r, x, committed); err != nil {
			return *sp, err
		}
		x.b.markOwed()
		if diffs, err = r.writeDiffs(ctx, sp, rr.log, rr.log.compare(p, x.topic, x.b.keys), x.b.folded); err != nil {
			return *sp, err
		}
		if o.CommitOffsets && !x.pos.has {
			if err := r.commitOffset(ctx, p, stateEnd); err != nil {
				return *sp, err
			}
			sp.OffsetCommitted = true
		}
	} else if o.Verify {
		if diffs, err = rr.settle(ctx, r, x); err != nil {
			return *sp, err
		}
	}
	sp.Records, sp.Undecodable, sp.Keys = x.b.records, x.b.bad, len(x.b.keys)
	if o.Verify {
		switch {
		case len(diffs) > 0 && len(x.pos.members) > 0:
			fmt.Fprintf(o.Out, "partition %d: note: the rollup group %s has members (%s) committing while it was compared; stop them for an exact comparison\n",
				p, rr.group, strings.Join(x.pos.members, ", "))
		case len(diffs) > 0 && (x.moving || !x.settled):
			fmt.Fprintf(o.Out, "partition %d: note: the sequencers kept committing while it was compared; some differences may be their latest changes (stop them for an exact comparison)\n", p)
		}
		r.printDiffs(sp, diffs)
	}
	fmt.Fprintln(o.Out, rr.line(r, x))
	return *sp, nil
}

// line is a partition's report line.
func (rr *rollupRun) line(r *stateRun, x *rollupPart) string {
	o, l := r.o, r.o.Layout
	line := r.rebuiltLine(x.sp)
	if x.b.skipped > 0 {
		line += fmt.Sprintf(" (%d sequencer changelog values the rollup could not decode, skipped)", x.b.skipped)
	}
	switch {
	case x.sp.OffsetCommitted:
		line += fmt.Sprintf("; committed offset %d of %s for %s", x.stateEnd, l.StateTopic, rr.group)
	case x.pos.has:
		line += fmt.Sprintf("; %s resumes at offset %d of %s", rr.group, x.pos.at, l.StateTopic)
	default:
		line += fmt.Sprintf("; %s has no committed offset in %s", rr.group, l.StateTopic)
	}
	if len(x.lag) > 0 && !o.Write {
		line += fmt.Sprintf(" (%s to apply up to offset %d: compared as applied)", plural(len(x.lag), "record"), x.stateEnd)
	}
	if o.Verify {
		line += r.verifiedLine(x.sp, "identical")
	}
	return line
}

// checkResume refuses a write a rollup would not resume from right: where
// the rollup group has no committed offset (it would read the sequencer
// state topic from its start and apply it again on top of the written
// state), unless CommitOffsets, which needs the sequencers' committed
// offset (the sequencer state topic's end matches the rebuild's end only
// then); and where it has one behind records whose changes the rebuild
// has, which it would apply again (a member who read and left among them
// would have the reads counted twice).
func (rr *rollupRun) checkResume(r *stateRun, x *rollupPart, committed bool) error {
	o, l, p, pos := r.o, r.o.Layout, x.sp.Partition, x.pos
	if !pos.has {
		switch {
		case len(x.b.keys) == 0:
			return nil // nothing written: a rollup starts as on a new topic
		case !o.CommitOffsets:
			return fmt.Errorf("replay: %w of the rollup group %s in %s/%d: rollups resume where it points, and without one they read the sequencer state topic "+
				"from its start and would apply it again on top of the written state; check rollup.group_id, or pass --commit-offsets "+
				"(it commits the end of the sequencer state topic that matches the rebuild)",
				ErrNoCommittedOffset, rr.group, l.StateTopic, p)
		case !committed:
			return fmt.Errorf("replay: %w of the sequencer group %s in %s/%d: without it the end of %s does not match the rebuild's end, "+
				"so --commit-offsets cannot tell where the rollups must resume; rebuild the sequencer state first (--into state --write --commit-offsets)",
				ErrNoCommittedOffset, o.SequencerGroup, l.GroupTopic, p, l.StateTopic)
		}
		return nil
	}
	again := rr.log.compare(p, x.b.keys, resumedState(rr.limits, x.b.keys, x.lag))
	if len(again) == 0 {
		return nil // what the rollups have left to apply changes nothing the rebuild has
	}
	return fmt.Errorf("replay: %w: the rollup group %s resumes at offset %d of %s/%d, %s before the rebuild's end, "+
		"and applying them again would change %s of the rebuild (e.g. %s); stop the sequencers too, delete the group's offsets "+
		"(kafka-consumer-groups.sh --bootstrap-server $B --group %s --topic %s --delete-offsets) and run --write --commit-offsets: "+
		"the rollups then resume at the end that matches the rebuild",
		ErrRollupBehind, rr.group, pos.at, l.StateTopic, p, plural(len(x.lag), "record"), plural(len(again), "key"),
		rr.log.describeKey(again[0].Key), rr.group, l.StateTopic)
}

// settle compares the rebuild with the state a rollup resuming from the
// topic would reach. Sequencers that run commit meanwhile: while there
// are differences and the sequencer group's committed offset moved, the
// rebuild is stepped to it and the rollups' lag read to the new end, a
// few times.
func (rr *rollupRun) settle(ctx context.Context, r *stateRun, x *rollupPart) ([]Diff, error) {
	o, p := r.o, x.sp.Partition
	for try := 0; ; try++ {
		// Ignored by the comparison, but printed with the differences:
		// marked as a write would.
		x.b.markOwed()
		diffs := rr.log.compare(p, resumedState(rr.limits, x.topic, x.lag), x.b.keys)
		if len(diffs) == 0 || try == settleTries {
			return diffs, nil
		}
		end, _, stateEnd, settled, err := rr.ends(ctx, r, p)
		if err != nil {
			return nil, err
		}
		if end <= x.sp.End && stateEnd <= x.stateEnd {
			return diffs, nil // nothing moved: the differences are real
		}
		x.moving = true
		if err := x.b.apply(ctx, &o.Common, p, x.sp.End, end); err != nil {
			return nil, err
		}
		if x.lagKnown {
			more, err := readSpan(ctx, &o.Common, o.Layout.StateTopic, p, span{x.stateEnd, stateEnd})
			if err != nil {
				return nil, err
			}
			x.lag = append(x.lag, more...)
		}
		x.sp.End, x.stateEnd, x.settled = max(x.sp.End, end), max(x.stateEnd, stateEnd), settled
	}
}
