package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"

	"github.com/causeway/causeway/consumers/sequencer"
	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/pipeline"
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
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := load(cmd, flagKeys{"edges": "dev.edges", "http-addr": "dev.http_addr", "data-dir": "dev.data_dir", "broker-listen": "broker.listen"})
		if err != nil {
			return err
		}
		log := newLogger(c.Log)
		host, portStr, err := net.SplitHostPort(c.Dev.HTTPAddr)
		if err != nil {
			return fmt.Errorf("dev.http_addr %q: %w", c.Dev.HTTPAddr, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil || port < 0 || port+c.Dev.Edges > 65536 {
			return fmt.Errorf("dev.http_addr %q: bad port", c.Dev.HTTPAddr)
		}

		b, err := pipeline.NewBroker(pipeline.BrokerConfig{Listen: c.Broker.Listen, DataDir: filepath.Join(c.Dev.DataDir, "broker"), Sync: c.Broker.Sync})
		if err != nil {
			return err
		}
		// Teardown order: edges (they flush their producers), then the
		// sequencer (it ends its transaction), then the broker (it
		// flushes its data dir).
		defer b.Close()
		c.Kafka.Brokers = []string{b.Addr()}
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "causeway dev: broker on %s, data in %s\n", b.Addr(), c.Dev.DataDir)

		seqCtx, stopSeq := context.WithCancel(context.Background())
		defer stopSeq()
		seq, err := sequencer.New(sequencerConfig(c, "dev", log, prometheus.NewRegistry()))
		if err != nil {
			return err
		}
		seqDone := make(chan error, 1)
		go func() { seqDone <- seq.Run(seqCtx) }()

		edgeCtx, stopEdges := context.WithCancel(context.Background())
		defer stopEdges()
		g, gctx := errgroup.WithContext(edgeCtx)
		for i := 0; i < c.Dev.Edges; i++ {
			addr := net.JoinHostPort(host, "0")
			if port != 0 {
				addr = net.JoinHostPort(host, strconv.Itoa(port+i))
			}
			id := fmt.Sprintf("edge-%d", i+1)
			s, err := edge.New(edgeConfig(c, id, addr, log))
			if err != nil {
				stopEdges()
				_ = g.Wait()
				return err
			}
			fmt.Fprintf(out, "edge %s: ws://%s/v1/ws\n", id, s.Addr())
			g.Go(func() error { return s.Run(gctx) })
		}
		fmt.Fprintf(out, "mint a token: causeway token --user alice --groups 'room-*'\n")

		var runErr error
		select {
		case <-cmd.Context().Done():
		case <-gctx.Done():
		case runErr = <-seqDone:
			seqDone <- runErr
		}
		stopEdges()
		if err := g.Wait(); err != nil {
			runErr = errors.Join(runErr, err)
		}
		stopSeq()
		runErr = errors.Join(runErr, <-seqDone)
		b.Close()
		fmt.Fprintln(out, "causeway dev: stopped")
		return runErr
	}
	return cmd
}
