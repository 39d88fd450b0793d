package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/causeway/causeway/cmd/causeway/internal/config"
	"github.com/causeway/causeway/pipeline"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// topicsTimeout bounds one topics command: an unreachable cluster is an
// error to report, not a wait.
const topicsTimeout = 30 * time.Second

func newTopicsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topics",
		Short: "Create, describe or check the Kafka topic layout (topics.* config keys)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("topics: want a subcommand: create, describe or check")
		},
	}
	cmd.PersistentFlags().String("brokers", "", "Kafka seed brokers, comma-separated")
	cmd.PersistentFlags().Int("replication-factor", 0, "replication of created topics and the least check accepts; -1: broker default (default 3)")
	sub := func(use, short string, fn func(ctx context.Context, out io.Writer, adm *kadm.Client, l pipeline.Layout) error) *cobra.Command {
		c := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs}
		c.RunE = func(c *cobra.Command, _ []string) error {
			cfg, err := load(c, flagKeys{"brokers": "kafka.brokers", "replication-factor": "topics.create_replication_factor"})
			if err != nil {
				return err
			}
			l, err := adminLayout(cfg)
			if err != nil {
				return err
			}
			kc := kafkaConfig(cfg, "topics")
			if err := kc.Validate(); err != nil {
				return err
			}
			// A short metadata age: create checks the topics it has just
			// made, and kadm caches topic metadata for this long.
			cl, err := kgo.NewClient(append(kc.Opts(), kgo.MetadataMinAge(250*time.Millisecond))...)
			if err != nil {
				return fmt.Errorf("kafka client: %w", err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(c.Context(), topicsTimeout)
			defer cancel()
			err = fn(ctx, c.OutOrStdout(), kadm.NewClient(cl), l)
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("no answer from %s within %s: %w", strings.Join(kc.Brokers, ","), topicsTimeout, err)
			}
			return err
		}
		return c
	}
	cmd.AddCommand(
		sub("create", "Create the missing topics with the layout's partitions, replication and cleanup policies, then check", topicsCreate),
		sub("describe", "Print each topic's partitions, replicas and configs", topicsDescribe),
		sub("check", "Verify an existing cluster against the layout; exit non-zero on any difference", topicsCheck),
	)
	return cmd
}

// adminLayout is the configured layout with the replication factor an
// operator's command creates and checks.
func adminLayout(c config.Config) (pipeline.Layout, error) {
	l := layout(c)
	l.ReplicationFactor = int16(c.Topics.CreateReplicationFactor)
	if err := l.Validate(); err != nil {
		return l, fmt.Errorf("topic layout (topics.*, --replication-factor): %w", err)
	}
	return l, nil
}

func topicsCreate(ctx context.Context, out io.Writer, adm *kadm.Client, l pipeline.Layout) error {
	res, err := pipeline.CreateTopics(ctx, adm, l)
	for _, r := range res {
		what := "exists, left as it is"
		if r.Created {
			what = "created"
		}
		fmt.Fprintf(out, "%s: %s\n", r.Topic, what)
	}
	if err != nil {
		return layoutError(err)
	}
	fmt.Fprintln(out, "layout ok")
	return nil
}

func topicsDescribe(ctx context.Context, out io.Writer, adm *kadm.Client, l pipeline.Layout) error {
	states, err := pipeline.DescribeLayout(ctx, adm, l)
	if err != nil {
		return err
	}
	printTopics(out, l, states)
	return nil
}

func topicsCheck(ctx context.Context, out io.Writer, adm *kadm.Client, l pipeline.Layout) error {
	states, err := pipeline.CheckLayout(ctx, adm, l)
	if states != nil {
		for _, s := range states {
			if s.Exists {
				fmt.Fprintf(out, "%s: %d partitions, replication factor %d\n", s.Name, len(s.Partitions), s.ReplicationFactor)
			}
		}
	}
	if err != nil {
		return layoutError(err)
	}
	fmt.Fprintln(out, "layout ok")
	return nil
}

// layoutError puts every difference of a joined error on its own line.
func layoutError(err error) error {
	if _, ok := err.(interface{ Unwrap() []error }); !ok {
		return err
	}
	return mismatchError{err}
}

type mismatchError struct{ err error }

func (e mismatchError) Error() string {
	var b strings.Builder
	b.WriteString("the cluster does not match the layout:")
	for _, x := range e.err.(interface{ Unwrap() []error }).Unwrap() {
		b.WriteString("\n  - " + x.Error())
	}
	return b.String()
}

func (e mismatchError) Unwrap() error { return e.err }

func printTopics(out io.Writer, l pipeline.Layout, states []pipeline.TopicState) {
	specs := l.Specs()
	for i, s := range states {
		want := specs[i]
		if !s.Exists {
			fmt.Fprintf(out, "%s: missing (layout: %d partitions, cleanup.policy %s)\n", s.Name, want.Partitions, want.Configs["cleanup.policy"])
			continue
		}
		fmt.Fprintf(out, "%s: %d partitions (layout: %d), replication factor %d\n", s.Name, len(s.Partitions), want.Partitions, s.ReplicationFactor)
		for _, c := range s.Configs {
			fmt.Fprintf(out, "  config %s=%s (%s)\n", c.Key, c.Value, c.Source)
		}
		for _, p := range s.Partitions {
			line := fmt.Sprintf("  partition %d: leader %d, replicas %v, in sync %v", p.Partition, p.Leader, p.Replicas, p.ISR)
			if p.Err != nil {
				line += ", error: " + p.Err.Error()
			}
			fmt.Fprintln(out, line)
		}
	}
}
