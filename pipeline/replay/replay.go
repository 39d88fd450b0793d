// Package replay rebuilds what Causeway derives from its logs: the library
// behind `causeway replay`.
//
//   - State rebuilds the sequencer's changelog (the state topic) from the
//     group log: the state is a pure function of the log (sequencer.State),
//     so running the log through a fresh State, in the order a sequencer
//     reads it, gives what the sequencers wrote. It compares the result
//     with the state topic (Verify) and can write it back (Write), for a
//     lost or corrupted state topic.
//   - RollupState rebuilds the rollup's changelog (the rollup state
//     topic) the same way: the sequencer's changelog writes that the log
//     makes go through a fresh rollup.State, as the rollup reads them
//     (rollup_state.go says what the comparison covers and ignores).
//   - ClickHouse rebuilds the analytics rows of a range of the group log:
//     it runs the log through a fresh State as State does, and derives the
//     rows from the changelog writes that makes with the rollup sink's own
//     derivation (rollup.RowsOf), and the receipt aggregates with the
//     rollup's counting (rollup.State); or, with SourceStateTopic, of a
//     range of the state topic, as the live sink reads it. It writes them
//     with a rollup.Writer (chsink). The tables are idempotent by design,
//     so a range replayed twice gives the same query results.
//   - Groups copies the group log of an older topic generation into a new
//     one with another partition count, each record into its group's new
//     partition, for growing the partition count (docs/operations.md);
//     State then rebuilds the new generation's state (CommitOffsets).
//
// All refuse to run against a cluster whose topics do not match the
// configured layout (pipeline.CheckTopics), report progress to a Progress
// (records/s and ETA), and are resumable: with a checkpoint file, a run
// that was interrupted continues where it stopped (Groups also without
// one: it finds what it copied in the destination).
//
// Reads resolve transactions the way a read_committed consumer does
// (committed records in offset order, aborted ones dropped), from the
// transaction markers, so a range ends exactly where it should.
//
// Concurrency: State and ClickHouse run on the calling goroutine; the
// Progress they are given is called from it.
package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	"github.com/causeway/causeway/pipeline"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

var (
	// ErrMismatch: the state topic differs from the state rebuilt from the
	// group log.
	ErrMismatch = errors.New("the state topic differs from the state rebuilt from the group log")
	// ErrTruncatedLog: the group log no longer starts at offset 0
	// (retention deleted its beginning), so the state of groups older
	// than the log cannot be rebuilt.
	ErrTruncatedLog = errors.New("the group log does not start at offset 0")
	// ErrNotEmpty: --write into a state topic that has records.
	ErrNotEmpty = errors.New("the state topic is not empty")
	// ErrSequencersRunning: --write while the sequencer group has members.
	ErrSequencersRunning = errors.New("sequencers are running")
	// ErrNoCommittedOffset: --write for a partition whose sequencer group
	// has no committed offset, so where the sequencers resume is unknown.
	ErrNoCommittedOffset = errors.New("no committed offset")
)

// Common are the options of both replays.
type Common struct {
	Kafka  pipeline.KafkaConfig
	Layout pipeline.Layout
	// Partitions restricts the replay to these partitions; empty: all.
	Partitions []int32
	// Checkpoint is the file that keeps the run's progress; empty: none
	// (an interrupted run starts again).
	Checkpoint string
	// Progress, if set, hears the records read.
	Progress Progress
	// Out gets the report (one line per partition, the differences).
	Out io.Writer
	// Log gets warnings.
	Log *slog.Logger
}

func (c *Common) validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if err := c.Layout.Validate(); err != nil {
		return err
	}
	seen := map[int32]bool{}
	for _, p := range c.Partitions {
		if p < 0 || p >= c.Layout.GroupPartitions {
			return fmt.Errorf("partition %d: the layout has partitions 0 to %d", p, c.Layout.GroupPartitions-1)
		}
		if seen[p] {
			return fmt.Errorf("partition %d is listed twice", p)
		}
		seen[p] = true
	}
	if c.Progress == nil {
		c.Progress = nopProgress{}
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// partitions are the selected partitions, sorted.
func (c *Common) partitions() []int32 {
	ps := append([]int32(nil), c.Partitions...)
	if len(ps) == 0 {
		for p := range c.Layout.GroupPartitions {
			ps = append(ps, p)
		}
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}

func partitionList(ps []int32, all int32) string {
	if int32(len(ps)) == all {
		return "all"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

// connect opens an admin client and checks the cluster's topics against
// the layout: a replay against a layout it does not recognise would read
// or write the wrong partitions.
func (c *Common) connect(ctx context.Context) (*kgo.Client, *kadm.Client, error) {
	cl, err := kgo.NewClient(c.Kafka.Opts()...)
	if err != nil {
		return nil, nil, fmt.Errorf("replay: kafka client: %w", err)
	}
	adm := kadm.NewClient(cl)
	if err := pipeline.CheckTopics(ctx, adm, c.Layout); err != nil {
		cl.Close()
		return nil, nil, fmt.Errorf("replay refuses to run: the cluster's topics do not match the configured layout "+
			"(topics.* settings; `causeway topics check` lists every difference): %w", err)
	}
	return cl, adm, nil
}

// offsets lists one kind of offsets of topic's partitions.
func offsets(what string, f func() (kadm.ListedOffsets, error), topic string) (map[int32]int64, error) {
	l, err := f()
	if err == nil {
		err = l.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("replay: list %s offsets of %s: %w", what, topic, err)
	}
	out := map[int32]int64{}
	l.Each(func(o kadm.ListedOffset) {
		if o.Topic == topic {
			out[o.Partition] = o.Offset
		}
	})
	return out, nil
}
