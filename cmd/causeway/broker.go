package main

import (
	"fmt"

	"github.com/causeway/causeway/pipeline"
	"github.com/spf13/cobra"
)

func newBrokerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run the embedded Kafka-protocol broker (kfake) as a standalone process",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().String("listen", "", "host:port to listen on (default 127.0.0.1:9092)")
	cmd.Flags().String("data-dir", "", "persist topics, offsets and groups here (empty: in memory)")
	cmd.Flags().Bool("sync", false, "fsync every produced batch (survives SIGKILL and power loss)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := load(cmd, flagKeys{"listen": "broker.listen", "data-dir": "broker.data_dir", "sync": "broker.sync"})
		if err != nil {
			return err
		}
		log := newLogger(c.Log)
		b, err := pipeline.NewBroker(pipeline.BrokerConfig{Listen: c.Broker.Listen, DataDir: c.Broker.DataDir, Sync: c.Broker.Sync})
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "broker listening on %s\n", b.Addr())
		log.Info("broker started", "addr", b.Addr(), "data_dir", c.Broker.DataDir, "sync", c.Broker.Sync)
		return b.Run(cmd.Context())
	}
	return cmd
}
