package main

import (
	"log/slog"

	"github.com/causeway/causeway/cmd/causeway/internal/config"
	"github.com/causeway/causeway/consumers/rollup"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
)

func newRollupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollup",
		Short: "Run a rollup: read watermarks into coalesced receipts summaries (and ClickHouse aggregates)",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().String("brokers", "", "Kafka seed brokers, comma-separated")
	cmd.Flags().String("id", "", "instance ID, unique and stable per rollup (default: the host name)")
	cmd.Flags().String("metrics-addr", "", "serve /metrics and /healthz on host:port (empty: off)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := load(cmd, flagKeys{"brokers": "kafka.brokers", "id": "rollup.instance_id"})
		if err != nil {
			return err
		}
		log := newLogger(c.Log)
		id := c.Rollup.InstanceID
		if id == "" {
			id = defaultInstance()
		}
		reg := prometheus.NewRegistry()
		r, err := rollup.New(rollupConfig(c, id, log, reg))
		if err != nil {
			return err
		}
		g, ctx := errgroup.WithContext(cmd.Context())
		g.Go(func() error { return r.Run(ctx) })
		addr, _ := cmd.Flags().GetString("metrics-addr")
		if err := serveMetrics(ctx, g, addr, reg); err != nil {
			return err
		}
		log.Info("rollup started", "instance", id, "brokers", c.Kafka.Brokers)
		return g.Wait()
	}
	return cmd
}

func rollupConfig(c config.Config, instance string, log *slog.Logger, reg prometheus.Registerer) rollup.Config {
	return rollup.Config{
		Kafka:      kafkaConfig(c, "rollup-"+instance),
		Layout:     layout(c),
		GroupID:    c.Rollup.GroupID,
		InstanceID: instance,
		Limits: rollup.Limits{
			Window:          c.Rollup.Window,
			MaxMessages:     c.Rollup.MaxMessages,
			CountsOnlyAbove: c.Rollup.CountsOnlyAbove,
			SenderOnlyAbove: c.Rollup.SenderOnlyAbove,
			SlowFactor:      c.Rollup.SlowFactor,
			TTRSamples:      rollup.DefaultLimits().TTRSamples,
		},
		MaxBatch:           c.Sequencer.MaxBatch,
		SessionTimeout:     c.Sequencer.SessionTimeout,
		TransactionTimeout: c.Sequencer.TransactionTimeout,
		Logger:             log,
		Registerer:         reg,
	}
}
