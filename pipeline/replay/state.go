package replay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/causeway/causeway/consumers/sequencer"
	"github.com/causeway/causeway/pipeline"
	pb "github.com/causeway/causeway/schemas/causewaypb"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
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
	case o.MaxDiffs < 0:
		return fmt.Errorf("max diffs %d: must be 0 (all) or more", o.MaxDiffs)
	}
	return nil
}

type stateRun struct {
	o      StateOptions
	adm    *kadm.Client
	starts map[int32]int64
	cp     *checkpoint
	prod   *kgo.Client
}

// State rebuilds the sequencer's changelog from the group log, one
// partition at a time, and verifies and/or writes it (StateOptions). It
// returns ErrMismatch (wrapped) when a verification found differences.
func State(ctx context.Context, o StateOptions) (StateReport, error) {
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
	run := fmt.Sprintf("into=state groups=%s state=%s group_partitions=%d partitions=%s sequencer_group=%s verify=%t write=%t",
		l.GroupTopic, l.StateTopic, l.GroupPartitions, partitionList(parts, l.GroupPartitions), o.SequencerGroup, o.Verify, o.Write)
	cp, resumed, err := loadCheckpoint(o.Checkpoint, run)
	if err != nil {
		return rep, err
	}
	r := &stateRun{o: o, adm: adm, cp: cp}
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

	if r.starts, err = offsets("start", func() (kadm.ListedOffsets, error) { return adm.ListStartOffsets(ctx, l.GroupTopic) }, l.GroupTopic); err != nil {
		return rep, err
	}
	if err := r.checkTruncated(parts); err != nil {
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
	stable, _ := offsets("stable end", func() (kadm.ListedOffsets, error) { return adm.ListCommittedOffsets(ctx, l.GroupTopic) }, l.GroupTopic)
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
	o.Progress.Start("replay state", total)
	defer o.Progress.Stop()

	for i, p := range parts {
		o.Progress.Label(fmt.Sprintf("replay state, partition %d (%d of %d)", p, i+1, len(parts)))
		var sp StatePartition
		if pc, ok := cp.has(p); ok && pc.Done {
			sp = StatePartition{Partition: p, End: pc.Offset, Records: pc.Records, Keys: pc.Keys, Written: pc.Written, Resumed: true}
			// Only the total was kept: report it as different keys.
			sp.Different = pc.Differences
			fmt.Fprintf(o.Out, "partition %d: done in an earlier run (checkpoint): group log to offset %d, %d records, %d keys, %d differences, %d written\n",
				p, pc.Offset, pc.Records, pc.Keys, pc.Differences, pc.Written)
		} else {
			sp, err = r.partition(ctx, p)
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

	summary := fmt.Sprintf("replay --into state: %d partitions, %s records, %s keys rebuilt", len(rep.Partitions), group(int64(rep.Records)), group(int64(rep.Keys)))
	if o.Write {
		summary += fmt.Sprintf("; %s records written to %s", group(int64(rep.Written)), l.StateTopic)
	}
	if o.Verify {
		bad := 0
		for _, sp := range rep.Partitions {
			if sp.Differences() > 0 {
				bad++
			}
		}
		if rep.Differences == 0 {
			summary += "; verified: " + l.StateTopic + " matches the rebuilt state"
		} else {
			summary += fmt.Sprintf("; verify FAILED: %s in %s", plural(rep.Differences, "difference"), plural(bad, "partition"))
		}
	}
	fmt.Fprintln(o.Out, summary)
	if o.Verify && rep.Differences > 0 {
		return rep, fmt.Errorf("replay: %s in %s: %w", plural(rep.Differences, "difference"), l.StateTopic, ErrMismatch)
	}
	return rep, nil
}

func (r *stateRun) checkTruncated(parts []int32) error {
	var bad []string
	for _, p := range parts {
		if s := r.starts[p]; s > 0 {
			bad = append(bad, fmt.Sprintf("partition %d starts at offset %d", p, s))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	msg := fmt.Sprintf("%s: %s (retention deleted its beginning): the state of groups whose records are gone cannot be rebuilt",
		r.o.Layout.GroupTopic, strings.Join(bad, ", "))
	if !r.o.AllowTruncatedLog {
		return fmt.Errorf("replay: %w: %s; pass --allow-truncated-log to rebuild from what is left", ErrTruncatedLog, msg)
	}
	r.o.Log.Warn("rebuilding from a truncated group log", "detail", msg)
	fmt.Fprintf(r.o.Out, "warning: %s; rebuilding from what is left (--allow-truncated-log)\n", msg)
	return nil
}

// checkWritable refuses a write while sequencers run (they would
// overwrite the state, and read it only when a partition is assigned) or
// into a state topic that has records (unless Force).
func (r *stateRun) checkWritable(ctx context.Context, parts []int32) error {
	l := r.o.Layout
	groups, err := r.adm.DescribeGroups(ctx, r.o.SequencerGroup)
	if err != nil {
		return fmt.Errorf("replay: describe the sequencer group %s: %w", r.o.SequencerGroup, err)
	}
	if g, ok := groups[r.o.SequencerGroup]; ok && g.Err == nil && len(g.Members) > 0 {
		var who []string
		for _, m := range g.Members {
			who = append(who, m.ClientID+"@"+m.ClientHost)
		}
		return fmt.Errorf("replay: %w: the sequencer group %s has %s (%s): stop every sequencer before --write "+
			"(kubectl -n causeway scale statefulset/causeway-sequencer --replicas=0), or it would number groups from a state the write replaces",
			ErrSequencersRunning, r.o.SequencerGroup, plural(len(g.Members), "member"), strings.Join(who, ", "))
	}
	if r.o.Force {
		return nil
	}
	starts, err := offsets("start", func() (kadm.ListedOffsets, error) { return r.adm.ListStartOffsets(ctx, l.StateTopic) }, l.StateTopic)
	if err != nil {
		return err
	}
	ends, err := offsets("end", func() (kadm.ListedOffsets, error) { return r.adm.ListEndOffsets(ctx, l.StateTopic) }, l.StateTopic)
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
			"different keys are replaced and extra keys deleted, so the topic equals the rebuilt state)", ErrNotEmpty, l.StateTopic, strings.Join(full, ", "))
	}
	return nil
}

// committed lists the sequencer group's committed offsets in the group
// log (partitions without one are absent). Not RequireStable: an offset
// commit still pending in an open transaction is not part of the state
// topic yet either.
func (r *stateRun) committed(ctx context.Context) (map[int32]int64, error) {
	l := r.o.Layout
	resps, err := r.adm.FetchOffsetsForTopics(ctx, r.o.SequencerGroup, l.GroupTopic)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[int32]int64{}, nil // no sequencer ever committed
	}
	if err != nil {
		return nil, fmt.Errorf("replay: fetch the committed offsets of %s: %w", r.o.SequencerGroup, err)
	}
	out := map[int32]int64{}
	for p, or := range resps[l.GroupTopic] {
		if or.Err != nil {
			return nil, fmt.Errorf("replay: committed offset of %s in %s/%d: %w", r.o.SequencerGroup, l.GroupTopic, p, or.Err)
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
	stable, err := offsets("stable end", func() (kadm.ListedOffsets, error) { return r.adm.ListCommittedOffsets(ctx, l.GroupTopic) }, l.GroupTopic)
	if err != nil {
		return 0, false, err
	}
	return stable[p], false, nil
}

// rebuild is one partition's state being rebuilt.
type rebuild struct {
	st      *sequencer.State
	keys    map[string][]byte
	records int
	bad     int
}

// fold takes the state's writes into keys and returns the keys written.
func (b *rebuild) fold() []string {
	ws := b.st.TakeWrites()
	touched := make([]string, len(ws))
	for i, w := range ws {
		touched[i] = w.Key
		if w.Value == nil {
			delete(b.keys, w.Key)
		} else {
			b.keys[w.Key] = w.Value
		}
	}
	return touched
}

// diffSet tracks the keys on which a state topic and a rebuild being
// stepped forward differ.
type diffSet struct {
	topic, rebuilt map[string][]byte
	bad            map[string]struct{}
}

func newDiffSet(topic, rebuilt map[string][]byte, diffs []Diff) *diffSet {
	d := &diffSet{topic: topic, rebuilt: rebuilt, bad: make(map[string]struct{}, len(diffs))}
	for _, x := range diffs {
		d.bad[x.Key] = struct{}{}
	}
	return d
}

func (d *diffSet) touch(keys []string) {
	for _, k := range keys {
		t, inTopic := d.topic[k]
		v, inRebuilt := d.rebuilt[k]
		if inTopic == inRebuilt && (!inTopic || sameValue(k, t, v)) {
			delete(d.bad, k)
		} else {
			d.bad[k] = struct{}{}
		}
	}
}

// apply runs the group log's partition p from from to end through the
// state, as a sequencer does.
func (r *stateRun) apply(ctx context.Context, b *rebuild, p int32, from, end int64) error {
	return r.applyEach(ctx, b, p, from, end, nil)
}

// applyEach is apply; each, if set, hears the keys every applied record
// changed (folded at once), and can stop the read there.
func (r *stateRun) applyEach(ctx context.Context, b *rebuild, p int32, from, end int64, each func(offset int64, touched []string) bool) error {
	rd, err := newReader(r.o.Kafka, r.o.Layout.GroupTopic, map[int32]span{p: {from, end}}, r.o.Log)
	if err != nil {
		return err
	}
	defer rd.Close()
	for !rd.Done() {
		recs, advanced, err := rd.Next(ctx)
		if err != nil {
			return err
		}
		r.o.Progress.Add(advanced)
		for _, rec := range recs {
			// What the sequencer skips, and counts as undecodable.
			ev := new(pb.GroupEvent)
			if err := proto.Unmarshal(rec.Value, ev); err != nil {
				b.bad++
				continue
			}
			if ev.GetGroup() != string(rec.Key) && ev.GetHeartbeat() == nil {
				b.bad++
				continue
			}
			b.st.Apply(ev)
			b.records++
			if each != nil {
				if each(rec.Offset, b.fold()) {
					return nil
				}
			} else if b.records%4096 == 0 {
				b.fold() // tombstoned keys need not wait in memory
			}
		}
	}
	b.fold()
	return nil
}

// readState reads partition p of the state topic as a sequencer restores
// it: the committed records up to its end, the latest value per key.
func (r *stateRun) readState(ctx context.Context, p int32) (map[string][]byte, int, error) {
	m := map[string][]byte{}
	n, err := pipeline.ReadChangelog(ctx, r.o.Kafka, r.o.Layout.StateTopic, p, func(k, v []byte) {
		if v == nil {
			delete(m, string(k))
		} else {
			m[string(k)] = v
		}
	})
	if err != nil {
		return nil, 0, fmt.Errorf("replay: read %s/%d: %w", r.o.Layout.StateTopic, p, err)
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
	if o.Write && !committed && end > sp.LogStart {
		return sp, fmt.Errorf("replay: %w of the sequencer group %s in %s/%d: sequencers resume where it points, and without one they read the log "+
			"from its start and would apply it again on top of a written state; check sequencer.group_id (refusing --write)",
			ErrNoCommittedOffset, o.SequencerGroup, o.Layout.GroupTopic, p)
	}
	b := &rebuild{st: sequencer.NewState(o.Limits), keys: map[string][]byte{}}
	if err := r.apply(ctx, b, p, sp.LogStart, end); err != nil {
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
				set := newDiffSet(topic, b.keys, diffs)
				matched := int64(-1)
				if err := r.applyEach(ctx, b, p, end, now, func(off int64, touched []string) bool {
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

	if o.Write && len(diffs) > 0 {
		if err := r.write(ctx, p, diffs); err != nil {
			return sp, err
		}
		m, x, d := countDiffs(diffs)
		sp.Written = len(diffs)
		fmt.Fprintf(o.Out, "partition %d: wrote %d records to %s (%d missing keys, %d different, %d extra deleted)\n", p, len(diffs), o.Layout.StateTopic, m, d, x)
		diffs = nil
		if o.Verify {
			if topic, _, err = r.readState(ctx, p); err != nil {
				return sp, err
			}
			sp.TopicKeys = len(topic)
			diffs = compare(p, topic, b.keys)
		}
	}
	if o.Verify {
		if moving && len(diffs) > 0 {
			fmt.Fprintf(o.Out, "partition %d: note: the sequencers kept committing while it was compared; some differences may be their latest changes (stop them for an exact comparison)\n", p)
		}
		for i, d := range diffs {
			if o.MaxDiffs > 0 && i >= o.MaxDiffs {
				fmt.Fprintf(o.Out, "partition %d: ... and %d more differences (--max-diffs 0 prints all)\n", p, len(diffs)-i)
				break
			}
			writeDiff(o.Out, d)
		}
		sp.Missing, sp.Extra, sp.Different = countDiffs(diffs)
	}

	upto := "the log's stable end (the sequencer group has no committed offset here)"
	if committed {
		upto = "the committed offset of " + o.SequencerGroup
	}
	line := fmt.Sprintf("partition %d: group log offsets %d-%d (to %s): %d records", p, sp.LogStart, sp.End, upto, sp.Records)
	if sp.Undecodable > 0 {
		line += fmt.Sprintf(" (%d undecodable, skipped)", sp.Undecodable)
	}
	line += fmt.Sprintf(", %d keys rebuilt", sp.Keys)
	if o.Verify {
		line += fmt.Sprintf("; %s has %d keys: ", o.Layout.StateTopic, sp.TopicKeys)
		if sp.Differences() == 0 {
			line += "identical"
		} else {
			line += fmt.Sprintf("%s (%d missing, %d different, %d extra)", plural(sp.Differences(), "difference"), sp.Missing, sp.Different, sp.Extra)
		}
	}
	fmt.Fprintln(o.Out, line)
	return sp, nil
}

// write produces what makes partition p of the state topic equal to the
// rebuilt state: the rebuilt value of each missing or different key, a
// tombstone for each extra one.
func (r *stateRun) write(ctx context.Context, p int32, diffs []Diff) error {
	o := r.o
	if !o.Force {
		// A state topic that was empty at the start may have been
		// written since; only this run's own earlier writes are fine.
		if pc, ok := r.cp.has(p); !ok || !pc.Writing {
			for _, d := range diffs {
				if d.Kind != Missing {
					return fmt.Errorf("replay: %w: %s/%d got records since the start of the run (refusing to overwrite them without --force)", ErrNotEmpty, o.Layout.StateTopic, p)
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
			kgo.DefaultProduceTopic(o.Layout.StateTopic),
		)...)
		if err != nil {
			return fmt.Errorf("replay: producer: %w", err)
		}
		r.prod = cl
	}
	var (
		mu    sync.Mutex
		first error
	)
	for _, d := range diffs {
		rec := &kgo.Record{Topic: o.Layout.StateTopic, Partition: p, Key: []byte(d.Key)}
		if d.Kind != Extra {
			rec.Value = d.Rebuilt
		}
		r.prod.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			mu.Lock()
			if err != nil && first == nil {
				first = err
			}
			mu.Unlock()
		})
	}
	if err := r.prod.Flush(ctx); err != nil {
		return fmt.Errorf("replay: write %s/%d: %w", o.Layout.StateTopic, p, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if first != nil {
		return fmt.Errorf("replay: write %s/%d: %w (rerun with the same --checkpoint to finish)", o.Layout.StateTopic, p, first)
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
