package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/causeway/causeway/cmd/causeway/internal/config"
	"github.com/causeway/causeway/consumers/rollup"
	"github.com/causeway/causeway/consumers/rollup/chsink"
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
		rc := rollupConfig(c, id, log, reg)
		g, ctx := errgroup.WithContext(cmd.Context())
		g.Go(func() error { return checkKafka(ctx, rc.Kafka, log) })
		ready := func() bool { return true }
		if c.Rollup.ClickHouse {
			sink, err := analyticsSink(c, log, reg, false)
			if err != nil {
				return err
			}
			rc.Receipts = sink.AddReceipts
			ready = sink.Healthy
			g.Go(func() error { return sink.Run(ctx) })
		}
		r, err := rollup.New(rc)
		if err != nil {
			return err
		}
		g.Go(func() error { return r.Run(ctx) })
		addr, _ := cmd.Flags().GetString("metrics-addr")
		if err := serveMetrics(ctx, g, addr, reg, c.Admin.Pprof, ready); err != nil {
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
		CommitInterval:     c.Rollup.CommitInterval,
		SessionTimeout:     c.Sequencer.SessionTimeout,
		TransactionTimeout: c.Sequencer.TransactionTimeout,
		Logger:             log,
		Registerer:         reg,
	}
}

// analyticsSinkConfig is the rollup's ClickHouse sink; migrate creates the
// tables first (`causeway dev`; elsewhere an operator runs `causeway
// migrate`).
func analyticsSinkConfig(c config.Config, log *slog.Logger, reg prometheus.Registerer, migrate bool) (rollup.SinkConfig, error) {
	chc, err := clickhouseConfig(c)
	if err != nil {
		return rollup.SinkConfig{}, err
	}
	w, err := chsink.New(chc)
	if err != nil {
		return rollup.SinkConfig{}, fmt.Errorf("clickhouse sink: %w", err)
	}
	sc := rollup.SinkConfig{
		Kafka:      kafkaConfig(c, "rollup-sink"),
		Layout:     layout(c),
		GroupID:    c.Rollup.GroupID + "-sink",
		Writer:     w,
		MaxRows:    5000,
		FlushEvery: time.Second,
		Logger:     log,
		Registerer: reg,
	}
	if migrate {
		sc.Prepare = func(ctx context.Context) error { _, err := chsink.Migrate(ctx, chc); return err }
	}
	return sc, nil
}

func analyticsSink(c config.Config, log *slog.Logger, reg prometheus.Registerer, migrate bool) (*rollup.Sink, error) {
	sc, err := analyticsSinkConfig(c, log, reg, migrate)
	if err != nil {
		return nil, err
	}
	return rollup.NewSink(sc)
}
