package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/causeway/causeway/cmd/causeway/internal/config"
	"github.com/causeway/causeway/consumers/rollup/chsink"
	"github.com/causeway/causeway/pipeline/replay"
	"github.com/spf13/cobra"
)

func newReplayCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Rebuild the sequencer state topic from the group log (--into state), or the ClickHouse rows from the state topic (--into clickhouse)",
		Long: `--into state rebuilds the sequencers' changelog (topics.state) from the group
log: every partition is read from its start, read_committed, up to the
sequencer group's committed offset (the log position the state topic
reflects, and where the sequencers resume; the log's stable end where the
group has none), and run through the sequencer's own state machine with the
sequencer.* limits of the configuration. Then:

  --verify  compares the result with the state topic, prints every difference
            (missing, extra and different keys, values decoded with the
            schemas) and exits 1 if there is one;
  --write   produces the rebuilt state into the state topic, for a lost or
            corrupted one. Stop the sequencers first: it refuses while the
            sequencer group has members, and refuses a state topic that is
            not empty unless --force (which overwrites different keys and
            deletes extra ones). With --verify too, it verifies after writing.

The group log has a retention (7 days by default): when it no longer starts
at offset 0 the state of older groups cannot be rebuilt, and replay refuses
unless --allow-truncated-log.

--into clickhouse re-reads a range of the state topic (what the rollup's
analytics sink reads) and writes the rows it stands for, derived exactly as
the sink derives them, to ClickHouse (clickhouse.* settings; the schema is
migrated first), then the receipt aggregates the rollup holds (--receipts).
The tables are idempotent: replaying a range twice gives the same query
results.

Both refuse a cluster whose topics do not match the configured layout, show
progress (records/s, ETA) on stderr when it is a terminal (--progress forces
or disables it), and with --checkpoint FILE continue an interrupted run
where it stopped (run again with the same flags).`,
		Example: `  causeway replay --brokers kafka:9092 --into state --verify
  causeway replay --brokers kafka:9092 --into state --write --checkpoint /tmp/replay-state.json
  causeway replay --brokers kafka:9092 --into clickhouse --clickhouse ch:9000 \
      --from 2026-01-02T00:00:00Z --to 2026-01-03T00:00:00Z --checkpoint /tmp/replay-ch.json
  causeway replay --into clickhouse --from 0:1200,3:480`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.String("brokers", "", "Kafka seed brokers, comma-separated")
	f.String("into", "", "what to rebuild: state (the sequencer state topic) or clickhouse (the analytics tables) (required)")
	f.Int32Slice("partition", nil, "only these group-log partitions (repeat or comma-separate; default all)")
	f.String("checkpoint", "", "keep progress in this file, and continue from it when it exists (same flags)")
	f.Bool("progress", false, "show records/s and ETA on stderr (default: when stderr is a terminal)")
	// --into state
	f.Bool("verify", false, "state: compare with the state topic, print the differences, exit 1 on any")
	f.Bool("write", false, "state: write the rebuilt state into the state topic (sequencers stopped)")
	f.Bool("force", false, "state: with --write, overwrite a state topic that is not empty")
	f.Bool("allow-truncated-log", false, "state: rebuild even though the group log no longer starts at offset 0")
	f.Int("max-diffs", 50, "state: differences printed per partition (0: all)")
	// --into clickhouse
	f.String("from", "", "clickhouse: first offset (1200), offsets per partition (0:1200,3:480) or RFC 3339 time of the state topic; default: its start")
	f.String("to", "", "clickhouse: where to stop (exclusive), in the same forms; default: the end at start")
	f.String("clickhouse", "", "clickhouse: native protocol HOST:PORT (default 127.0.0.1:19000, scripts/clickhouse.sh)")
	f.String("database", "", "clickhouse: database (default causeway)")
	f.Bool("receipts", true, "clickhouse: also write the rollup's current receipt aggregates")

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := load(cmd, flagKeys{"brokers": "kafka.brokers", "clickhouse": "clickhouse.addr", "database": "clickhouse.database"})
		if err != nil {
			return err
		}
		into, _ := f.GetString("into")
		parts, _ := f.GetInt32Slice("partition")
		cpFile, _ := f.GetString("checkpoint")
		only := map[string][]string{
			"state":      {"verify", "write", "force", "allow-truncated-log", "max-diffs"},
			"clickhouse": {"from", "to", "clickhouse", "database", "receipts"},
		}
		switch into {
		case "state", "clickhouse":
		case "":
			return errors.New("--into is required: state or clickhouse")
		default:
			return fmt.Errorf("--into %q: want state or clickhouse", into)
		}
		for mode, names := range only {
			if mode == into {
				continue
			}
			for _, n := range names {
				if f.Changed(n) {
					return fmt.Errorf("--%s applies to --into %s, not --into %s", n, mode, into)
				}
			}
		}
		if cpFile != "" {
			if st, err := os.Stat(filepath.Dir(cpFile)); err != nil || !st.IsDir() {
				return fmt.Errorf("--checkpoint %s: its directory does not exist", cpFile)
			}
			if st, err := os.Stat(cpFile); err == nil && st.IsDir() {
				return fmt.Errorf("--checkpoint %s is a directory", cpFile)
			}
		}
		log := newLogger(c.Log)
		common := replay.Common{
			Kafka:      kafkaConfig(c, "replay"),
			Layout:     layout(c),
			Partitions: parts,
			Checkpoint: cpFile,
			Out:        cmd.OutOrStdout(),
			Log:        log,
		}
		show := isTerminal(os.Stderr)
		if f.Changed("progress") {
			show, _ = f.GetBool("progress")
		}
		if show {
			m := replay.NewMeter(cmd.ErrOrStderr(), isTerminal(os.Stderr))
			common.Progress, common.Out = m, m.Above(common.Out)
		}
		ctx := cmd.Context()
		if into == "state" {
			err = replayState(ctx, cmd, c, common)
		} else {
			err = replayClickHouse(ctx, cmd, c, common)
		}
		if err != nil && ctx.Err() != nil {
			// Not context.Canceled: an interrupted replay must not exit 0.
			if cpFile != "" {
				return fmt.Errorf("replay interrupted (%v); its progress is in %s: run it again with the same flags to continue", ctx.Err(), cpFile)
			}
			return fmt.Errorf("replay interrupted (%v); with --checkpoint FILE a run continues where it stopped", ctx.Err())
		}
		return err
	}
	return cmd
}

func replayState(ctx context.Context, cmd *cobra.Command, c config.Config, common replay.Common) error {
	f := cmd.Flags()
	verify, _ := f.GetBool("verify")
	write, _ := f.GetBool("write")
	force, _ := f.GetBool("force")
	truncated, _ := f.GetBool("allow-truncated-log")
	maxDiffs, _ := f.GetInt("max-diffs")
	switch {
	case force && !write:
		return errors.New("--force only applies with --write")
	case maxDiffs < 0:
		return fmt.Errorf("--max-diffs %d: want 0 (all) or more", maxDiffs)
	}
	sc := sequencerConfig(c, "replay", common.Log, nil)
	if err := sc.Validate(); err != nil {
		return fmt.Errorf("sequencer config: %w", err)
	}
	if !verify && !write {
		fmt.Fprintln(common.Out, "neither --verify nor --write: rebuilding only, to count records and keys")
	}
	_, err := replay.State(ctx, replay.StateOptions{
		Common:            common,
		Limits:            sc.Limits,
		SequencerGroup:    c.Sequencer.GroupID,
		Verify:            verify,
		Write:             write,
		Force:             force,
		AllowTruncatedLog: truncated,
		MaxDiffs:          maxDiffs,
	})
	return err
}

func replayClickHouse(ctx context.Context, cmd *cobra.Command, c config.Config, common replay.Common) error {
	f := cmd.Flags()
	fromS, _ := f.GetString("from")
	toS, _ := f.GetString("to")
	receipts, _ := f.GetBool("receipts")
	from, err := replay.ParseBound(fromS)
	if err != nil {
		return fmt.Errorf("--from %w", err)
	}
	to, err := replay.ParseBound(toS)
	if err != nil {
		return fmt.Errorf("--to %w", err)
	}
	chc, err := clickhouseConfig(c)
	if err != nil {
		return err
	}
	w, err := chsink.New(chc)
	if err != nil {
		return err
	}
	defer w.Close()
	database := chc.Database
	if database == "" {
		database = chsink.DefaultDatabase
	}
	// After the topic layout is checked: the schema first, as the
	// rollup's sink has it.
	prepare := func(ctx context.Context) error {
		mctx, cancel := context.WithTimeout(ctx, migrateTimeout)
		defer cancel()
		res, err := chsink.Migrate(mctx, chc)
		if err != nil {
			return fmt.Errorf("migrate clickhouse %s before the replay: %w", chc.Addr, err)
		}
		for _, m := range res.Applied {
			fmt.Fprintf(common.Out, "applied %s\n", m.File)
		}
		return nil
	}
	_, err = replay.ClickHouse(ctx, replay.ClickHouseOptions{
		Common:       common,
		From:         from,
		To:           to,
		Writer:       w,
		Prepare:      prepare,
		Target:       database + "@" + chc.Addr,
		Receipts:     receipts,
		RollupLimits: rollupConfig(c, "replay", common.Log, nil).Limits,
	})
	return err
}

// isTerminal reports whether f is a terminal (a character device other
// than /dev/null).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	if null, err := os.Stat(os.DevNull); err == nil && os.SameFile(st, null) {
		return false
	}
	return true
}
