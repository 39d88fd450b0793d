package replay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/causeway/causeway/consumers/sequencer"
	"github.com/causeway/causeway/pipeline"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// StateOptions configure State.
type StateOptions struct {
	Common
	// Limits are the sequencers' limits (sequencer.* settings): the state
	// is a pure function of the log given the same limits.
	Limits sequencer.Limits
	// SequencerGroup is the sequencers' consumer group
	// (sequencer.group_id). Its committed offset in a partition is the
	// log position the state topic reflects (state and offsets are
	// committed in one transaction) and where the sequencers resume, so
	// a partition is rebuilt up to it. A partition without one is rebuilt
	// up to the log's stable end (its high watermark, less transactions
	// still open) at the time it is read.
	SequencerGroup string
	// Verify compares the rebuilt state with the state topic and prints
	// the differences; State then returns ErrMismatch if there are any.
	Verify bool
	// Write produces, into the state topic, what makes it equal to the
	// rebuilt state: the missing and different keys, and tombstones for
	// extra ones. It refuses while the sequencer group has members, for
	// a partition without a committed offset, and, unless Force, when
	// the state topic is not empty. With Verify too, the comparison is
	// made after the write.
	Write, Force bool
	// CommitOffsets, with Write, commits the sequencer group's offset at
	// the end of what was rebuilt in each partition where the group has
	// none (a new topic generation filled by Groups), once the partition's
	// state is written: the sequencers then resume after the rebuilt log
	// instead of sequencing it again. Without it, Write refuses such a
	// partition (ErrNoCommittedOffset).
	CommitOffsets bool
	// AllowTruncatedLog rebuilds even when the group log no longer starts
	// at offset 0 (retention deleted its beginning): the state of groups
	// older than the log is then missing from the rebuild.
	AllowTruncatedLog bool
	// MaxDiffs bounds the differences printed per partition; 0: all.
	MaxDiffs int
	// OnPartition, if set, hears each partition's result once it is final
	// (and checkpointed).
	OnPartition func(StatePartition)
}

// StatePartition is what State did for one partition.
type StatePartition struct {
	Partition int32
	// LogStart and End are the group-log offsets replayed: [LogStart,
	// End).
	LogStart, End int64
	// Committed: End is the sequencer group's committed offset, not the
	// log's stable end.
	Committed bool
	// Records were applied; Undecodable records were skipped, as the
	// sequencer skips them.
	Records, Undecodable int
	// Keys is the size of the rebuilt state; TopicKeys that of the state
	// topic (with Verify or Write).
	Keys, TopicKeys int
	// Missing, Extra and Different count the differences (with Verify;
	// after the write with Write).
	Missing, Extra, Different int
	// Written records (with Write).
	Written int
	// OffsetCommitted: the sequencer group had no committed offset here
	// and CommitOffsets committed End.
	OffsetCommitted bool
	// Resumed: done by an earlier run (the checkpoint); only the counts
	// it kept are set.
	Resumed bool
}

// Differences is the number of differing keys.
func (sp StatePartition) Differences() int { return sp.Missing + sp.Extra + sp.Different }

// StateReport sums up a State run.
type StateReport struct {
	Partitions                          []StatePartition
	Records, Keys, Differences, Written int
}

func (o *StateOptions) validate() error {
	if err := o.Common.validate(); err != nil {
		return err
	}
	switch {
	case o.SequencerGroup == "":
		return errors.New("the sequencer group (sequencer.group_id) must not be empty")
	case o.Force && !o.Write:
		return errors.New("force only applies to write")
	case o.CommitOffsets && !o.Write:
		return errors.New("commit offsets only applies to write")
	case o.MaxDiffs < 0:
		return fmt.Errorf("max diffs %d: must be 0 (all) or more", o.MaxDiffs)
	}
	return nil
}

type stateRun struct {
	o      StateOptions
	t      *stateTarget
	adm    *kadm.Client
	starts map[int32]int64
	cp     *checkpoint
	prod   *kgo.Client
}

// stateTarget is the changelog a state replay rebuilds from the group log:
// the sequencer's (State) or the rollup's (RollupState). The run around it
// (checkpoint, progress, refusals, writing, report) is the same.
type stateTarget struct {
	// into names the run (--into), run describes it for the checkpoint.
	into, run string
	// topic is the changelog verified and written.
	topic string
	// writer is the consumer group whose members write topic (--write
	// refuses while it has some, with running): role says what they
	// are, stop how to stop them, why what they would do otherwise.
	writer, role, stop, why string
	running                 error
	// offsets is the topic where writer's committed offsets are: where
	// it resumes (CommitOffsets commits there).
	offsets string
	// partition rebuilds, verifies and writes one partition.
	partition func(ctx context.Context, r *stateRun, p int32) (StatePartition, error)
}

// State rebuilds the sequencer's changelog from the group log, one
// partition at a time, and verifies and/or writes it (StateOptions). It
// returns ErrMismatch (wrapped) when a verification found differences.
func State(ctx context.Context, o StateOptions) (StateReport, error) {
	l := o.Layout
	return runState(ctx, o, &stateTarget{
		into: "state",
		run: fmt.Sprintf("into=state groups=%s state=%s group_partitions=%d partitions=%s sequencer_group=%s verify=%t write=%t commit_offsets=%t",
			l.GroupTopic, l.StateTopic, l.GroupPartitions, partitionList(o.partitions(), l.GroupPartitions), o.SequencerGroup, o.Verify, o.Write, o.CommitOffsets),
		topic:   l.StateTopic,
		writer:  o.SequencerGroup,
		role:    "sequencer",
		stop:    "kubectl -n causeway scale statefulset/causeway-sequencer --replicas=0",
		why:     "it would number groups from a state the write replaces",
		running: ErrSequencersRunning,
		offsets: l.GroupTopic,
		partition: func(ctx context.Context, r *stateRun, p int32) (StatePartition, error) {
			return r.partition(ctx, p)
		},
	})
}

// runState runs a state replay of t.
func runState(ctx context.Context, o StateOptions, t *stateTarget) (StateReport, error) {
	var rep StateReport
	if err := o.validate(); err != nil {
		return rep, fmt.Errorf("replay: %w", err)
	}
	cl, adm, err := o.connect(ctx)
	if err != nil {
		return rep, err
	}
	defer cl.Close()
	l := o.Layout
	parts := o.partitions()
	cp, resumed, err := loadCheckpoint(o.Checkpoint, t.run)
	if err != nil {
		return rep, err
	}
	r := &stateRun{o: o, t: t, adm: adm, cp: cp}
	defer func() {
		if r.prod != nil {
			r.prod.Close()
		}
	}()
	if resumed {
		done := 0
		for _, p := range parts {
			if pc, ok := cp.has(p); ok && pc.Done {
				done++
			}
		}
		fmt.Fprintf(o.Out, "resuming from checkpoint %s: %d of %d partitions done\n", o.Checkpoint, done, len(parts))
	}

	if r.starts, err = logStarts(ctx, adm, l.GroupTopic); err != nil {
		return rep, err
	}
	if err := checkTruncated(&r.o.Common, l.GroupTopic, r.starts, parts, o.AllowTruncatedLog); err != nil {
		return rep, err
	}
	if o.Write {
		if err := r.checkWritable(ctx, parts); err != nil {
			return rep, err
		}
	}

	// The total for the progress meter: the committed offsets now.
	var total int64
	committed, _ := r.committed(ctx)
	stable, _ := stableEnds(ctx, adm, l.GroupTopic)
	for _, p := range parts {
		if pc, ok := cp.has(p); ok && pc.Done {
			continue
		}
		end, ok := committed[p]
		if !ok {
			end = stable[p]
		}
		total += max(0, end-r.starts[p])
	}
	o.Progress.Start("replay "+t.into, total)
	defer o.Progress.Stop()

	for i, p := range parts {
		o.Progress.Label(fmt.Sprintf("replay %s, partition %d (%d of %d)", t.into, p, i+1, len(parts)))
		var sp StatePartition
		if pc, ok := cp.has(p); ok && pc.Done {
			sp = StatePartition{Partition: p, End: pc.Offset, Records: pc.Records, Keys: pc.Keys, Written: pc.Written, Resumed: true}
			// Only the total was kept: report it as different keys.
			sp.Different = pc.Differences
			fmt.Fprintf(o.Out, "partition %d: done in an earlier run (checkpoint): group log to offset %d, %d records, %d keys, %d differences, %d written\n",
				p, pc.Offset, pc.Records, pc.Keys, pc.Differences, pc.Written)
		} else {
			sp, err = t.partition(ctx, r, p)
			if err != nil {
				return rep, err
			}
			pc := cp.part(p)
			pc.Offset, pc.Done, pc.Records, pc.Keys, pc.Differences, pc.Written = sp.End, true, sp.Records, sp.Keys, sp.Differences(), sp.Written
			if err := cp.save(); err != nil {
				return rep, err
			}
		}
		rep.Partitions = append(rep.Partitions, sp)
		rep.Records += sp.Records
		rep.Keys += sp.Keys
		rep.Differences += sp.Differences()
		rep.Written += sp.Written
		if o.OnPartition != nil {
			o.OnPartition(sp)
		}
	}
	o.Progress.Stop()

	summary := fmt.Sprintf("replay --into %s: %d partitions, %s records, %s keys rebuilt", t.into, len(rep.Partitions), group(int64(rep.Records)), group(int64(rep.Keys)))
	if o.Write {
		summary += fmt.Sprintf("; %s records written to %s", group(int64(rep.Written)), t.topic)
	}
	if o.Verify {
		bad := 0
		for _, sp := range rep.Partitions {
			if sp.Differences() > 0 {
				bad++
			}
		}
		if rep.Differences == 0 {
			summary += "; verified: " + t.topic + " matches the rebuilt state"
		} else {
			summary += fmt.Sprintf("; verify FAILED: %s in %s", plural(rep.Differences, "difference"), plural(bad, "partition"))
		}
	}
	fmt.Fprintln(o.Out, summary)
	if o.Verify && rep.Differences > 0 {
		return rep, fmt.Errorf("replay: %s in %s: %w", plural(rep.Differences, "difference"), t.topic, ErrMismatch)
	}
	return rep, nil
}

// checkWritable refuses a write while the target's writers run (they
// would overwrite the state, and read it only when a partition is
// assigned) or into a state topic that has records (unless Force).
func (r *stateRun) checkWritable(ctx context.Context, parts []int32) error {
	t := r.t
	who, err := members(ctx, r.adm, t.writer)
	if err != nil {
		return err
	}
	if len(who) > 0 {
		return fmt.Errorf("replay: %w: the %s group %s has %s (%s): stop every %s before --write (%s), or %s",
			t.running, t.role, t.writer, plural(len(who), "member"), strings.Join(who, ", "), t.role, t.stop, t.why)
	}
	if r.o.Force {
		return nil
	}
	starts, err := logStarts(ctx, r.adm, t.topic)
	if err != nil {
		return err
	}
	ends, err := offsets("end", func() (kadm.ListedOffsets, error) { return r.adm.ListEndOffsets(ctx, t.topic) }, t.topic)
	if err != nil {
		return err
	}
	var full []string
	for _, p := range parts {
		if pc, ok := r.cp.has(p); ok && (pc.Done || pc.Writing) {
			continue // this run's own writes
		}
		if n := ends[p] - starts[p]; n > 0 {
			full = append(full, fmt.Sprintf("partition %d has %d records", p, n))
		}
	}
	if len(full) > 0 {
		return fmt.Errorf("replay: %w: %s: %s; --write only fills an empty state topic (delete and recreate it, or pass --force to overwrite: "+
			"different keys are replaced and extra keys deleted, so the topic equals the rebuilt state)", ErrNotEmpty, t.topic, strings.Join(full, ", "))
	}
	return nil
}

// members lists the members of consumer group g as client@host.
func members(ctx context.Context, adm *kadm.Client, g string) ([]string, error) {
	groups, err := adm.DescribeGroups(ctx, g)
	if err != nil {
		return nil, fmt.Errorf("replay: describe the consumer group %s: %w", g, err)
	}
	var who []string
	if d, ok := groups[g]; ok && d.Err == nil {
		for _, m := range d.Members {
			who = append(who, m.ClientID+"@"+m.ClientHost)
		}
	}
	return who, nil
}

// committed lists the sequencer group's committed offsets in the group
// log (partitions without one are absent). Not RequireStable: an offset
// commit still pending in an open transaction is not part of the state
// topic yet either.
func (r *stateRun) committed(ctx context.Context) (map[int32]int64, error) {
	return committedOffsets(ctx, r.adm, r.o.SequencerGroup, r.o.Layout.GroupTopic)
}

// committedOffsets lists consumer group g's committed offsets in topic
// (partitions without one are absent).
func committedOffsets(ctx context.Context, adm *kadm.Client, g, topic string) (map[int32]int64, error) {
	resps, err := adm.FetchOffsetsForTopics(ctx, g, topic)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[int32]int64{}, nil // the group never committed
	}
	if err != nil {
		return nil, fmt.Errorf("replay: fetch the committed offsets of %s: %w", g, err)
	}
	out := map[int32]int64{}
	for p, or := range resps[topic] {
		if or.Err != nil {
			return nil, fmt.Errorf("replay: committed offset of %s in %s/%d: %w", g, topic, p, or.Err)
		}
		if or.At >= 0 {
			out[p] = or.At
		}
	}
	return out, nil
}

// replayPoint is where partition p is rebuilt to: the sequencer group's
// committed offset, else the log's stable end.
func (r *stateRun) replayPoint(ctx context.Context, p int32) (int64, bool, error) {
	c, err := r.committed(ctx)
	if err != nil {
		return 0, false, err
	}
	if o, ok := c[p]; ok {
		return o, true, nil
	}
	l := r.o.Layout
	stable, err := stableEnds(ctx, r.adm, l.GroupTopic)
	if err != nil {
		return 0, false, err
	}
	return stable[p], false, nil
}

// folded is a changelog being rebuilt: the latest value of each key.
type folded struct {
	keys map[string][]byte
	// times holds, per key, the log time (ms) of the record that last
	// wrote it: a written key carries it as its record timestamp, as the
	// writer's own write carried about the same time (the analytics sink
	// times presence by it).
	times map[string]int64
}

func newFolded() folded { return folded{keys: map[string][]byte{}, times: map[string]int64{}} }

// put takes one write (nil value: the key is deleted) made at log time ms.
func (f folded) put(key string, value []byte, ms int64) {
	if value == nil {
		delete(f.keys, key)
		delete(f.times, key)
		return
	}
	f.keys[key] = value
	f.times[key] = ms
}

// rebuild is one partition's state being rebuilt.
type rebuild struct {
	folded
	st      *sequencer.State
	records int
	bad     int
}

func newRebuild(l sequencer.Limits) *rebuild {
	return &rebuild{st: sequencer.NewState(l), folded: newFolded()}
}

// fold takes one record's writes into keys and returns the keys written.
func (b *rebuild) fold(s logStep) []string {
	touched := make([]string, len(s.Writes))
	ms := s.Rec.Timestamp.UnixMilli()
	for i, w := range s.Writes {
		touched[i] = w.Key
		b.put(w.Key, w.Value, ms)
	}
	return touched
}

// diffSet tracks the keys on which a state topic and a rebuild being
// stepped forward differ.
type diffSet struct {
	log            *changelog
	topic, rebuilt map[string][]byte
	bad            map[string]struct{}
}

func newDiffSet(log *changelog, topic, rebuilt map[string][]byte, diffs []Diff) *diffSet {
	d := &diffSet{log: log, topic: topic, rebuilt: rebuilt, bad: make(map[string]struct{}, len(diffs))}
	for _, x := range diffs {
		d.bad[x.Key] = struct{}{}
	}
	return d
}

func (d *diffSet) touch(keys []string) {
	for _, k := range keys {
		t, inTopic := d.topic[k]
		v, inRebuilt := d.rebuilt[k]
		if inTopic == inRebuilt && (!inTopic || d.log.same(k, t, v)) {
			delete(d.bad, k)
		} else {
			d.bad[k] = struct{}{}
		}
	}
}

// apply runs the group log's partition p from from to end through the
// state, as a sequencer does; each, if set, hears the keys every applied
// record changed (folded at once), and can stop the read there.
func (r *stateRun) apply(ctx context.Context, b *rebuild, p int32, from, end int64, each func(offset int64, touched []string) bool) error {
	n, err := runLog(ctx, &r.o.Common, r.o.Layout.GroupTopic, p, from, end, b.st, func(s logStep) (bool, error) {
		touched := b.fold(s)
		return each != nil && each(s.Rec.Offset, touched), nil
	})
	b.records += n.Applied
	b.bad += n.Undecodable
	return err
}

// readState reads partition p of the target's state topic as its writer
// restores it: the committed records up to its end, the latest value per
// key.
func (r *stateRun) readState(ctx context.Context, p int32) (map[string][]byte, int, error) {
	m := map[string][]byte{}
	n, err := pipeline.ReadChangelog(ctx, r.o.Kafka, r.t.topic, p, func(k, v []byte) {
		if v == nil {
			delete(m, string(k))
		} else {
			m[string(k)] = v
		}
	})
	if err != nil {
		return nil, 0, fmt.Errorf("replay: read %s/%d: %w", r.t.topic, p, err)
	}
	return m, n, nil
}

// settleTries bounds how often a verification that found differences
// looks again, following sequencers that commit while it reads.
const settleTries = 5

func (r *stateRun) partition(ctx context.Context, p int32) (StatePartition, error) {
	o := r.o
	sp := StatePartition{Partition: p, LogStart: r.starts[p]}
	end, committed, err := r.replayPoint(ctx, p)
	if err != nil {
		return sp, err
	}
	end = max(end, sp.LogStart)
	sp.End, sp.Committed = end, committed
	if o.Write && !committed && end > sp.LogStart && !o.CommitOffsets {
		return sp, fmt.Errorf("replay: %w of the sequencer group %s in %s/%d: sequencers resume where it points, and without one they read the log "+
			"from its start and would apply it again on top of a written state; check sequencer.group_id, or, for a new topic generation "+
			"filled by --into groups, pass --commit-offsets (refusing --write)",
			ErrNoCommittedOffset, o.SequencerGroup, o.Layout.GroupTopic, p)
	}
	b := newRebuild(o.Limits)
	if err := r.apply(ctx, b, p, sp.LogStart, end, nil); err != nil {
		return sp, err
	}
	var (
		topic map[string][]byte
		diffs []Diff
	)
	if o.Verify || o.Write {
		if topic, _, err = r.readState(ctx, p); err != nil {
			return sp, err
		}
		diffs = compare(p, topic, b.keys)
	}
	// Sequencers that run commit while the state topic is read, so the
	// read shows the log at some position between the committed offsets
	// seen before and after it (or a moment later: a commit's offsets
	// can become visible after its state). Look for that position: step
	// the rebuild through the records in between and stop where it
	// equals the state topic.
	moving, still := false, 0
	if o.Verify && !o.Write && committed {
		for try := 0; len(diffs) > 0 && try < settleTries; try++ {
			c, err := r.committed(ctx)
			if err != nil {
				return sp, err
			}
			now, ok := c[p]
			if !ok || now < end {
				return sp, fmt.Errorf("replay: the committed offset of %s in partition %d went from %d to %v while it was read: was the group reset?", o.SequencerGroup, p, end, now)
			}
			if now > end {
				moving = true
				set := newDiffSet(sequencerChangelog(), topic, b.keys, diffs)
				matched := int64(-1)
				if err := r.apply(ctx, b, p, end, now, func(off int64, touched []string) bool {
					set.touch(touched)
					if len(set.bad) == 0 {
						matched = off + 1
						return true
					}
					return false
				}); err != nil {
					return sp, err
				}
				end = now
				if matched >= 0 {
					end = matched
				}
				sp.End = end
				if diffs = compare(p, topic, b.keys); len(diffs) == 0 {
					break
				}
				still = 0
			} else if still++; still > 1 {
				break // stopped sequencers: the differences are real
			}
			time.Sleep(300 * time.Millisecond)
			if topic, _, err = r.readState(ctx, p); err != nil {
				return sp, err
			}
			diffs = compare(p, topic, b.keys)
		}
	}
	sp.Records, sp.Undecodable, sp.Keys, sp.TopicKeys = b.records, b.bad, len(b.keys), len(topic)

	if o.Write {
		if diffs, err = r.writeDiffs(ctx, &sp, sequencerChangelog(), diffs, b.folded); err != nil {
			return sp, err
		}
	}
	if o.Write && o.CommitOffsets && !committed {
		if err := r.commitOffset(ctx, p, end); err != nil {
			return sp, err
		}
		sp.OffsetCommitted = true
	}
	if o.Verify {
		if moving && len(diffs) > 0 {
			fmt.Fprintf(o.Out, "partition %d: note: the sequencers kept committing while it was compared; some differences may be their latest changes (stop them for an exact comparison)\n", p)
		}
		r.printDiffs(&sp, diffs)
	}

	line := r.rebuiltLine(sp)
	if sp.OffsetCommitted {
		line += fmt.Sprintf("; committed offset %d for %s", sp.End, o.SequencerGroup)
	}
	if o.Verify {
		line += r.verifiedLine(sp, "identical")
	}
	fmt.Fprintln(o.Out, line)
	return sp, nil
}

// writeDiffs writes the differences of partition sp.Partition (write) and
// reports them; with Verify it returns the differences left after the
// write, read back from the topic.
func (r *stateRun) writeDiffs(ctx context.Context, sp *StatePartition, log *changelog, diffs []Diff, rebuilt folded) ([]Diff, error) {
	if len(diffs) == 0 {
		return diffs, nil
	}
	p := sp.Partition
	if err := r.write(ctx, p, diffs, rebuilt.times); err != nil {
		return nil, err
	}
	m, x, d := countDiffs(diffs)
	sp.Written = len(diffs)
	fmt.Fprintf(r.o.Out, "partition %d: wrote %d records to %s (%d missing keys, %d different, %d extra deleted)\n", p, len(diffs), r.t.topic, m, d, x)
	if !r.o.Verify {
		return nil, nil
	}
	topic, _, err := r.readState(ctx, p)
	if err != nil {
		return nil, err
	}
	sp.TopicKeys = len(topic)
	return log.compare(p, topic, rebuilt.keys), nil
}

// printDiffs prints a partition's differences (at most MaxDiffs) and
// counts them into sp.
func (r *stateRun) printDiffs(sp *StatePartition, diffs []Diff) {
	for i, d := range diffs {
		if r.o.MaxDiffs > 0 && i >= r.o.MaxDiffs {
			fmt.Fprintf(r.o.Out, "partition %d: ... and %d more differences (--max-diffs 0 prints all)\n", sp.Partition, len(diffs)-i)
			break
		}
		writeDiff(r.o.Out, d)
	}
	sp.Missing, sp.Extra, sp.Different = countDiffs(diffs)
}

// rebuiltLine starts a partition's report line: what was rebuilt.
func (r *stateRun) rebuiltLine(sp StatePartition) string {
	upto := "the log's stable end (the sequencer group has no committed offset here)"
	if sp.Committed {
		upto = "the committed offset of " + r.o.SequencerGroup
	}
	line := fmt.Sprintf("partition %d: group log offsets %d-%d (to %s): %d records", sp.Partition, sp.LogStart, sp.End, upto, sp.Records)
	if sp.Undecodable > 0 {
		line += fmt.Sprintf(" (%d undecodable, skipped)", sp.Undecodable)
	}
	return line + fmt.Sprintf(", %d keys rebuilt", sp.Keys)
}

// verifiedLine is the comparison's part of a partition's report line;
// same says how a partition without differences compares.
func (r *stateRun) verifiedLine(sp StatePartition, same string) string {
	line := fmt.Sprintf("; %s has %d keys: ", r.t.topic, sp.TopicKeys)
	if sp.Differences() == 0 {
		return line + same
	}
	return line + fmt.Sprintf("%s (%d missing, %d different, %d extra)", plural(sp.Differences(), "difference"), sp.Missing, sp.Different, sp.Extra)
}

// write produces what makes partition p of the target's state topic
// equal to the rebuilt state: the rebuilt value of each missing or
// different key, a tombstone for each extra one.
func (r *stateRun) write(ctx context.Context, p int32, diffs []Diff, times map[string]int64) error {
	o, topic := r.o, r.t.topic
	if !o.Force {
		// A state topic that was empty at the start may have been
		// written since; only this run's own earlier writes are fine.
		if pc, ok := r.cp.has(p); !ok || !pc.Writing {
			for _, d := range diffs {
				if d.Kind != Missing {
					return fmt.Errorf("replay: %w: %s/%d got records since the start of the run (refusing to overwrite them without --force)", ErrNotEmpty, topic, p)
				}
			}
		}
	}
	pc := r.cp.part(p)
	pc.Writing = true
	if err := r.cp.save(); err != nil {
		return err
	}
	if r.prod == nil {
		cl, err := kgo.NewClient(append(o.Kafka.Opts(),
			kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.DefaultProduceTopic(topic),
		)...)
		if err != nil {
			return fmt.Errorf("replay: producer: %w", err)
		}
		r.prod = cl
	}
	batch := pipeline.NewProduceBatch(r.prod)
	for _, d := range diffs {
		rec := &kgo.Record{Topic: topic, Partition: p, Key: []byte(d.Key)}
		if d.Kind != Extra {
			rec.Value = d.Rebuilt
			rec.Timestamp = time.UnixMilli(times[d.Key])
		}
		batch.Produce(ctx, rec)
	}
	if err := batch.Wait(); err != nil {
		return fmt.Errorf("replay: write %s/%d: %w (rerun with the same --checkpoint to finish)", topic, p, err)
	}
	return nil
}

// commitOffset commits the target writer's offset end in partition p of
// the topic it reads, once the partition's state is written: the writers
// resume there, after what was rebuilt.
func (r *stateRun) commitOffset(ctx context.Context, p int32, end int64) error {
	t := r.t
	c, err := committedOffsets(ctx, r.adm, t.writer, t.offsets)
	if err != nil {
		return err
	}
	if at, ok := c[p]; ok {
		// Someone else committed since the run looked: a writer that
		// started owns what comes after, so leave it alone.
		return fmt.Errorf("replay: the %s group %s committed offset %d in %s/%d during the run: did a %s start? (not committing %d)",
			t.role, t.writer, at, t.offsets, p, t.role, end)
	}
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: t.offsets, Partition: p, At: end, LeaderEpoch: -1})
	resp, err := r.adm.CommitOffsets(ctx, t.writer, os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("replay: commit offset %d of the %s group %s in %s/%d: %w (rerun with the same --checkpoint to finish)",
			end, t.role, t.writer, t.offsets, p, err)
	}
	return nil
}

// plural is "1 thing" or "n things".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
