package main

import (
	"fmt"

	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/pipeline/inspect"
	"github.com/spf13/cobra"
)

func newInspectCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inspect",
		Short: "Decode a topic's records with the schemas and print them as JSON lines or a table",
		Long: `Reads one of the layout's topics (by name, or groups, state or deliveries)
and prints each record with its partition, offset, timestamp, key, schema
and schema version: one JSON object per line (the value as protojson), or an
aligned table with --table. Undecodable records are printed with their
bytes in hex. Aborted transactions are not shown; records of a transaction
still open when the read stops are marked "txn":"open".

Without --follow it stops at the end of each partition as it was at start.`,
		Example: `  causeway inspect --brokers kafka:9092 --topic groups --group-id room-1
  causeway inspect --topic state --partition 3 --from 2026-01-02T15:00:00Z --to 2026-01-02T16:00:00Z --table
  causeway inspect --topic deliveries --from 120000 --follow`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().String("brokers", "", "Kafka seed brokers, comma-separated")
	cmd.Flags().String("topic", "", "topic to read: a layout topic name, or groups, state or deliveries (required)")
	cmd.Flags().Int32("partition", -1, "read only this partition (-1: all, or the group's with --group-id)")
	cmd.Flags().String("from", "", "first offset (e.g. 1200) or RFC 3339 time (e.g. 2026-01-02T15:04:05Z); default: the log start")
	cmd.Flags().String("to", "", "stop before this offset or time; default: the end at start, or never with --follow")
	cmd.Flags().String("group-id", "", "only this group's records (reads only its partition of the group log and the state)")
	cmd.Flags().Bool("follow", false, "keep printing new records until interrupted")
	cmd.Flags().Bool("table", false, "print an aligned table instead of JSON lines")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := load(cmd, flagKeys{"brokers": "kafka.brokers"})
		if err != nil {
			return err
		}
		f := cmd.Flags()
		topic, _ := f.GetString("topic")
		part, _ := f.GetInt32("partition")
		fromS, _ := f.GetString("from")
		toS, _ := f.GetString("to")
		group, _ := f.GetString("group-id")
		follow, _ := f.GetBool("follow")
		table, _ := f.GetBool("table")
		if topic == "" {
			return fmt.Errorf("--topic is required: %s, %s, %s (or groups, state, deliveries)", c.Topics.Groups, c.Topics.State, c.Topics.Deliveries)
		}
		if part < -1 {
			return fmt.Errorf("--partition %d: want a partition number, or -1 for all", part)
		}
		if group != "" && !edge.ValidGroupID(group) {
			return fmt.Errorf("--group-id %q: not a group ID (1-128 of A-Z a-z 0-9 . _ - : @ +)", group)
		}
		from, err := inspect.ParseBound(fromS)
		if err != nil {
			return fmt.Errorf("--from %w", err)
		}
		to, err := inspect.ParseBound(toS)
		if err != nil {
			return fmt.Errorf("--to %w", err)
		}
		o := inspect.Options{
			Kafka: kafkaConfig(c, "inspect"), Layout: layout(c),
			Topic: topic, Partition: part, From: from, To: to, Group: group, Follow: follow,
		}
		if err := o.Validate(); err != nil {
			return fmt.Errorf("inspect: %w", err)
		}
		var sink inspect.Sink = inspect.NewJSONSink(cmd.OutOrStdout())
		if table {
			sink = inspect.NewTableSink(cmd.OutOrStdout())
		}
		return inspect.Run(cmd.Context(), o, sink)
	}
	return cmd
}
