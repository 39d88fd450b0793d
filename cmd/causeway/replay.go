package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/causeway/causeway/cmd/causeway/internal/config"
	"github.com/causeway/causeway/consumers/rollup/chsink"
	"github.com/causeway/causeway/consumers/sequencer"
	"github.com/causeway/causeway/pipeline/replay"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newReplayCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Rebuild the sequencer or rollup state topic (--into state, rollup-state) or the ClickHouse rows (--into clickhouse) from the group log, or copy the group log into a new topic generation (--into groups)",
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
            It refuses a partition where the sequencer group has no committed
            offset unless --commit-offsets (a new topic generation filled by
            --into groups), which commits the group's offset at the end of
            what was rebuilt once the partition is written: the sequencers
            resume there.

--into rollup-state rebuilds the rollups' changelog (topics.rollup_state) the
same way: the group log runs through the sequencer's state machine, up to
the sequencer group's committed offset, and the changelog writes that makes
through the rollup's own (rollup.* limits), as the rollups read them from
the sequencer state topic. --verify, --write, --force and --commit-offsets
apply to the rollup state topic and the rollup group (rollup.group_id),
whose offsets are in the sequencer state topic:

  --verify  compares with the state a rollup resuming at its group's
            committed offset would reach (the topic, plus the sequencer
            changelog records after the offset applied), key by key:
            members' join seq, read watermark and read time, messages'
            sender, send time, members at send and read count. It ignores
            a message's pending-summary mark and its read times and
            time-to-read samples: the live rollup sets them by the wall
            clock and per transaction, where reads coalesce;
  --write   refuses while the rollup group has members, into a topic that
            is not empty unless --force, and where a rollup resuming at its
            offset would apply again changes the rebuild has. Where the
            group has no offset it refuses unless --commit-offsets, which
            commits the end of the sequencer state topic that matches the
            rebuild (read with the sequencers' committed offset). Messages
            whose count no receipts summary in the group log carries are
            marked owed, so the rollups emit those summaries, and no other.

The group log has a retention (7 days by default): when it no longer starts
at offset 0 the state of older groups cannot be rebuilt, and replay refuses
unless --allow-truncated-log.

--into clickhouse rebuilds the analytics rows of a range (--from, --to) and
writes them to ClickHouse (clickhouse.* settings; the schema is migrated
first), derived exactly as the rollup's sink derives them from the
sequencer's changelog. With --source groups (the default) every partition of
the group log is run from its start through the sequencer's state machine,
as --into state does, and the rows of the records in the range are written:
all the log holds can be rebuilt, whatever compaction removed from the state
topic. With --source state the range is one of the state topic, as the live
sink reads it. --receipts (default true) also writes the receipt
aggregates. The tables are idempotent: replaying a range twice gives the
same query results.

--into groups copies the group log of an older topic generation
(--source-config, its configuration file; --source-brokers) into the group
topic of this one (--config), each record into the partition of its group
under the new partition count, keeping each group's order. Run it again to
copy what was added since; an interrupted copy continues where it stopped
(what was copied is found in the destination). Then --into state --write
--commit-offsets rebuilds the new generation's state (docs/operations.md,
Growing partitions).

All refuse a cluster whose topics do not match the configured layout, show
progress (records/s, ETA) on stderr when it is a terminal (--progress forces
or disables it), and with --checkpoint FILE continue an interrupted run
where it stopped (run again with the same flags).`,
		Example: `  causeway replay --brokers kafka:9092 --into state --verify
  causeway replay --brokers kafka:9092 --into state --write --checkpoint /tmp/replay-state.json
  causeway replay --brokers kafka:9092 --into rollup-state --verify
  causeway replay --brokers kafka:9092 --into rollup-state --write --verify --commit-offsets --checkpoint /tmp/replay-rollup.json
  causeway replay --brokers kafka:9092 --into clickhouse --clickhouse ch:9000 \
      --from 2026-01-02T00:00:00Z --to 2026-01-03T00:00:00Z --checkpoint /tmp/replay-ch.json
  causeway replay --into clickhouse --from 0:1200,3:480
  causeway replay --into clickhouse --source state
  causeway replay --config causeway-v2.yaml --into groups --source-config causeway.yaml --checkpoint /tmp/replay-groups.json
  causeway replay --config causeway-v2.yaml --into state --write --commit-offsets`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.String("brokers", "", "Kafka seed brokers, comma-separated")
	f.String("into", "", "what to rebuild: state (the sequencer state topic), rollup-state (the rollup state topic), clickhouse (the analytics tables) or groups (a new topic generation's group log) (required)")
	f.Int32Slice("partition", nil, "state, rollup-state, clickhouse: only these group-log partitions (repeat or comma-separate; default all)")
	f.String("checkpoint", "", "keep progress in this file, and continue from it when it exists (same flags)")
	f.Bool("progress", false, "show records/s and ETA on stderr (default: when stderr is a terminal)")
	f.Bool("allow-truncated-log", false, "rebuild or copy even though the group log no longer starts at offset 0")
	// --into state, rollup-state
	f.Bool("verify", false, "state, rollup-state: compare with the state topic, print the differences, exit 1 on any")
	f.Bool("write", false, "state, rollup-state: write the rebuilt state into the state topic (its sequencers or rollups stopped)")
	f.Bool("force", false, "state, rollup-state: with --write, overwrite a state topic that is not empty")
	f.Bool("commit-offsets", false, "state, rollup-state: with --write, commit the sequencer (rollup) group's offset at the end of what was rebuilt where it has none")
	f.Int("max-diffs", 50, "state, rollup-state: differences printed per partition (0: all)")
	// --into clickhouse
	f.String("source", string(replay.SourceGroupLog), "clickhouse: read the group log (groups) or the sequencer state topic (state)")
	f.String("from", "", "clickhouse: first offset (1200), offsets per partition (0:1200,3:480) or RFC 3339 time of the source topic; default: its start")
	f.String("to", "", "clickhouse: where to stop (exclusive), in the same forms; default: the end at start")
	f.String("clickhouse", "", "clickhouse: native protocol HOST:PORT (default 127.0.0.1:19000, scripts/clickhouse.sh)")
	f.String("database", "", "clickhouse: database (default causeway)")
	f.Bool("receipts", true, "clickhouse: also write the receipt aggregates")
	// --into groups
	f.String("source-config", "", "groups: the configuration file of the topic generation to copy from (required)")
	f.String("source-brokers", "", "groups: its Kafka seed brokers (default: its configuration's)")

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := load(cmd, flagKeys{"brokers": "kafka.brokers", "clickhouse": "clickhouse.addr", "database": "clickhouse.database"})
		if err != nil {
			return err
		}
		into, _ := f.GetString("into")
		parts, _ := f.GetInt32Slice("partition")
		cpFile, _ := f.GetString("checkpoint")
		if err := checkReplayFlags(f, into); err != nil {
			return err
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
		switch into {
		case "state", "rollup-state":
			err = replayState(ctx, cmd, c, common, into)
		case "clickhouse":
			err = replayClickHouse(ctx, cmd, c, common)
		default:
			err = replayGroups(ctx, cmd, common)
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

// checkReplayFlags refuses an unknown --into and flags of another mode.
func checkReplayFlags(f *pflag.FlagSet, into string) error {
	// The --into modes each mode-specific flag applies to.
	flagModes := map[string][]string{
		"partition":           {"state", "rollup-state", "clickhouse"},
		"allow-truncated-log": {"state", "rollup-state", "clickhouse", "groups"},
		"verify":              {"state", "rollup-state"},
		"write":               {"state", "rollup-state"},
		"force":               {"state", "rollup-state"},
		"commit-offsets":      {"state", "rollup-state"},
		"max-diffs":           {"state", "rollup-state"},
		"source":              {"clickhouse"},
		"from":                {"clickhouse"},
		"to":                  {"clickhouse"},
		"clickhouse":          {"clickhouse"},
		"database":            {"clickhouse"},
		"receipts":            {"clickhouse"},
		"source-config":       {"groups"},
		"source-brokers":      {"groups"},
	}
	switch into {
	case "state", "rollup-state", "clickhouse", "groups":
	case "":
		return errors.New("--into is required: state, rollup-state, clickhouse or groups")
	default:
		return fmt.Errorf("--into %q: want state, clickhouse or groups (or rollup-state)", into)
	}
	names := make([]string, 0, len(flagModes))
	for n := range flagModes {
		names = append(names, n)
	}
	sort.Strings(names) // the same error for the same flags
	for _, n := range names {
		modes := flagModes[n]
		if !f.Changed(n) || slices.Contains(modes, into) {
			continue
		}
		// rollup-state is the state replay of the other changelog:
		// named after the rest, so the sentence stays short.
		also := ""
		if i := slices.Index(modes, "rollup-state"); i >= 0 {
			modes, also = slices.Delete(slices.Clone(modes), i, i+1), " (also to --into rollup-state)"
		}
		return fmt.Errorf("--%s applies to --into %s, not --into %s%s", n, strings.Join(modes, " or "), into, also)
	}
	return nil
}

// replayState rebuilds the sequencer's (into "state") or the rollup's
// ("rollup-state") changelog.
func replayState(ctx context.Context, cmd *cobra.Command, c config.Config, common replay.Common, into string) error {
	f := cmd.Flags()
	verify, _ := f.GetBool("verify")
	write, _ := f.GetBool("write")
	force, _ := f.GetBool("force")
	commit, _ := f.GetBool("commit-offsets")
	truncated, _ := f.GetBool("allow-truncated-log")
	maxDiffs, _ := f.GetInt("max-diffs")
	switch {
	case force && !write:
		return errors.New("--force only applies with --write")
	case commit && !write:
		return errors.New("--commit-offsets only applies with --write")
	case maxDiffs < 0:
		return fmt.Errorf("--max-diffs %d: want 0 (all) or more", maxDiffs)
	}
	limits, err := sequencerLimits(c, common.Log)
	if err != nil {
		return err
	}
	if !verify && !write {
		fmt.Fprintln(common.Out, "neither --verify nor --write: rebuilding only, to count records and keys")
	}
	o := replay.StateOptions{
		Common:            common,
		Limits:            limits,
		SequencerGroup:    c.Sequencer.GroupID,
		Verify:            verify,
		Write:             write,
		Force:             force,
		CommitOffsets:     commit,
		AllowTruncatedLog: truncated,
		MaxDiffs:          maxDiffs,
	}
	if into == "state" {
		_, err = replay.State(ctx, o)
		return err
	}
	rc := rollupConfig(c, "replay", common.Log, nil)
	if err := rc.Validate(); err != nil {
		return fmt.Errorf("rollup config: %w", err)
	}
	_, err = replay.RollupState(ctx, replay.RollupStateOptions{StateOptions: o, RollupLimits: rc.Limits, RollupGroup: rc.GroupID})
	return err
}

// sequencerLimits are the sequencer.* limits of c: the rebuilt state is a
// pure function of the log given the sequencers' own limits.
func sequencerLimits(c config.Config, log *slog.Logger) (sequencer.Limits, error) {
	sc := sequencerConfig(c, "replay", log, nil)
	if err := sc.Validate(); err != nil {
		return sequencer.Limits{}, fmt.Errorf("sequencer config: %w", err)
	}
	return sc.Limits, nil
}

func replayClickHouse(ctx context.Context, cmd *cobra.Command, c config.Config, common replay.Common) error {
	f := cmd.Flags()
	fromS, _ := f.GetString("from")
	toS, _ := f.GetString("to")
	receipts, _ := f.GetBool("receipts")
	source, _ := f.GetString("source")
	truncated, _ := f.GetBool("allow-truncated-log")
	switch replay.Source(source) {
	case replay.SourceGroupLog:
	case replay.SourceStateTopic:
		if truncated {
			return errors.New("--allow-truncated-log applies to --source groups (the state topic is compacted, not truncated)")
		}
	default:
		return fmt.Errorf("--source %q: want groups (the group log) or state (the sequencer state topic)", source)
	}
	limits, err := sequencerLimits(c, common.Log)
	if err != nil {
		return err
	}
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
		Common:            common,
		Source:            replay.Source(source),
		From:              from,
		To:                to,
		Limits:            limits,
		AllowTruncatedLog: truncated,
		Writer:            w,
		Prepare:           prepare,
		Target:            database + "@" + chc.Addr,
		Receipts:          receipts,
		RollupLimits:      rollupConfig(c, "replay", common.Log, nil).Limits,
	})
	return err
}

// replayGroups copies the group log of the generation named by
// --source-config into the configured one's.
func replayGroups(ctx context.Context, cmd *cobra.Command, common replay.Common) error {
	f := cmd.Flags()
	file, _ := f.GetString("source-config")
	if file == "" {
		return errors.New("--into groups needs --source-config: the configuration file of the topic generation to copy from")
	}
	l := config.NewLoader()
	if err := l.BindFlag("kafka.brokers", f.Lookup("source-brokers")); err != nil {
		return err
	}
	src, err := l.Load(file)
	if err != nil {
		return fmt.Errorf("--source-config: %w", err)
	}
	truncated, _ := f.GetBool("allow-truncated-log")
	_, err = replay.Groups(ctx, replay.GroupsOptions{
		Common:            common,
		SourceKafka:       kafkaConfig(src, "replay-source"),
		SourceLayout:      layout(src),
		AllowTruncatedLog: truncated,
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
