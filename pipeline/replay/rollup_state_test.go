package replay_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/causeway/causeway/consumers/rollup"
	"github.com/causeway/causeway/consumers/sequencer"
	"github.com/causeway/causeway/pipeline/devcluster"
	"github.com/causeway/causeway/pipeline/replay"
)

// TestRollupStateResume verifies the rollup state of a cluster whose
// rollup runs, with progress; interrupted after three partitions, the run
// started again with the same checkpoint skips them and finishes.
func TestRollupStateResume(t *testing.T) {
	t.Parallel()
	cl := devcluster.StartTest(t, 2, secret, nil)
	traffic(t, cl)
	opts := func() replay.RollupStateOptions {
		return replay.RollupStateOptions{
			StateOptions: replay.StateOptions{Common: options(cl), Limits: sequencer.DefaultLimits(), SequencerGroup: "causeway-sequencer", Verify: true},
			RollupLimits: rollup.DefaultLimits(),
			RollupGroup:  "causeway-rollup",
		}
	}
	// The rollup runs behind the sequencer: wait until it has applied
	// every read (it may still be committing while a run compares: the
	// run compares with what it reaches once it applied what is left).
	deadline := time.Now().Add(30 * time.Second)
	for {
		var out bytes.Buffer
		o := opts()
		o.Out = &out
		_, err := replay.RollupState(context.Background(), o)
		if err == nil {
			break
		}
		if !errors.Is(err, replay.ErrMismatch) || time.Now().After(deadline) {
			t.Fatalf("verify of the live rollup state: %v\n%s", err, out.String())
		}
		time.Sleep(500 * time.Millisecond)
	}

	var cp string
	rep, out := interruptAndResume(t, func(ctx context.Context, c replay.Common, onPartition func(replay.StatePartition)) (replay.StateReport, error) {
		o := opts()
		o.Common, o.OnPartition, cp = c, onPartition, c.Checkpoint
		return replay.RollupState(ctx, o)
	}, options(cl))
	if !strings.Contains(out, "verified: causeway.rollup-state matches the rebuilt state") {
		t.Errorf("resumed run's output:\n%s", out)
	}

	// The whole verification again, with progress: every record of the
	// group log counted, every key there.
	progress := &countProgress{}
	o := opts()
	o.Progress = progress
	full, err := replay.RollupState(context.Background(), o)
	if err != nil || full.Keys != rep.Keys || progress.total <= 0 || progress.done < progress.total {
		t.Errorf("full run: %d keys, %v, progress %d of %d records; resumed run: %d keys", full.Keys, err, progress.done, progress.total, rep.Keys)
	}

	// A checkpoint is refused by a run of the other changelog.
	so := opts().StateOptions
	so.Checkpoint = cp
	if _, err := replay.State(context.Background(), so); !errors.Is(err, replay.ErrCheckpoint) {
		t.Errorf("--into state with a rollup-state checkpoint: %v, want ErrCheckpoint", err)
	}
	// Without a rollup group there is nothing to resume or commit.
	o = opts()
	o.RollupGroup = ""
	if _, err := replay.RollupState(context.Background(), o); err == nil || !strings.Contains(err.Error(), "rollup.group_id") {
		t.Errorf("no rollup group: %v", err)
	}
}
