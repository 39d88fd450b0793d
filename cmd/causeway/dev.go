package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/causeway/causeway/pipeline"
	"github.com/causeway/causeway/pipeline/devcluster"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
)

func newDevCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run broker, sequencer and N edges in one process (embedded Kafka-protocol broker)",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().Int("edges", 0, "number of edges (default 2)")
	cmd.Flags().String("http-addr", "", "first edge's host:port; edge i listens on port+i (default 127.0.0.1:8080)")
	cmd.Flags().String("data-dir", "", "where the embedded broker keeps its data (default .causeway/dev)")
	cmd.Flags().String("broker-listen", "", "embedded broker's host:port (default 127.0.0.1:9092)")
	cmd.Flags().String("admin-addr", "", "host:port for the sequencer's and the rollup's /metrics (label role) and, with admin.pprof, /debug/pprof/ of the whole process (empty: off; each edge serves its own /metrics)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := load(cmd, flagKeys{"edges": "dev.edges", "http-addr": "dev.http_addr", "data-dir": "dev.data_dir", "broker-listen": "broker.listen"})
		if err != nil {
			return err
		}
		log := newLogger(c.Log)
		ec := edgeConfig(c, "", c.Dev.HTTPAddr, log)
		reg := prometheus.NewRegistry()
		// Dev only: the demo page at / signs in by fetching a token from
		// /dev/token, which mints one for any user name. No other
		// command turns this on.
		ec.DevTokens = true
		ec.DevTokenGroups = []string{"*"}
		ec.DevTokenTTL = min(12*time.Hour, ec.MaxTokenLifetime)
		dc := devcluster.Config{
			Edges:     c.Dev.Edges,
			HTTPAddr:  c.Dev.HTTPAddr,
			Broker:    pipeline.BrokerConfig{Listen: c.Broker.Listen, DataDir: devcluster.DataDir(c.Dev.DataDir), Sync: c.Broker.Sync},
			Edge:      ec,
			Sequencer: sequencerConfig(c, "dev", log, prometheus.WrapRegistererWith(prometheus.Labels{"role": "sequencer"}, reg)),
			Rollup:    rollupConfig(c, "dev", log, prometheus.WrapRegistererWith(prometheus.Labels{"role": "rollup"}, reg)),
		}
		if c.Rollup.ClickHouse {
			// ClickHouse is optional: while it is down (not started with
			// scripts/clickhouse.sh) the sink waits, and catches up from
			// Kafka once it is up; nothing else waits for it.
			sc, err := analyticsSinkConfig(c, log, nil, true)
			if err != nil {
				return err
			}
			dc.Analytics = &sc
		}
		g, ctx := errgroup.WithContext(cmd.Context())
		addr, _ := cmd.Flags().GetString("admin-addr")
		if err := serveMetrics(ctx, g, addr, reg, c.Admin.Pprof, nil); err != nil {
			return err
		}
		startCtx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		cl, err := devcluster.Start(startCtx, dc)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "causeway dev: broker on %s, data in %s\n", cl.Broker.Addr(), c.Dev.DataDir)
		for i, e := range cl.Edges {
			fmt.Fprintf(out, "edge edge-%d: %s (health: http://%s/readyz, demo: %s)\n", i+1, cl.URL(i), e.Addr(), cl.PageURL(i))
		}
		if c.Rollup.ClickHouse {
			fmt.Fprintf(out, "analytics: ClickHouse %s database %s (start one with scripts/clickhouse.sh start)\n", c.ClickHouse.Addr, c.ClickHouse.Database)
		}
		fmt.Fprintf(out, "mint a token: causeway token --user alice --groups 'room-*'\n")
		<-ctx.Done()
		err = errors.Join(cl.Close(), g.Wait())
		fmt.Fprintln(out, "causeway dev: stopped")
		return err
	}
	return cmd
}
