package main

import (
	"fmt"

	"github.com/causeway/causeway/cmd/causeway/internal/config"
	"github.com/causeway/causeway/edge"
	"github.com/spf13/cobra"
)

func newEdgeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "edge",
		Short: "Run an edge: client WebSockets in, group events to Kafka, deliveries out",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().String("brokers", "", "Kafka seed brokers, comma-separated")
	cmd.Flags().String("http-addr", "", "host:port for /v1/ws, /healthz, /readyz, /metrics")
	cmd.Flags().String("id", "", "edge ID, unique among running edges (default: the host name)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := load(cmd, flagKeys{"brokers": "kafka.brokers", "http-addr": "edge.http_addr", "id": "edge.id"})
		if err != nil {
			return err
		}
		log := newLogger(c.Log)
		id := c.Edge.ID
		if id == "" {
			id = defaultInstance()
		}
		if c.Auth.Secret == config.DevSecret {
			log.Warn("auth.secret is the public dev secret: anyone can mint tokens; set CAUSEWAY_AUTH_SECRET")
		}
		s, err := edge.New(edgeConfig(c, id, c.Edge.HTTPAddr, log))
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "edge %s listening on ws://%s/v1/ws\n", id, s.Addr())
		return s.Run(cmd.Context())
	}
	return cmd
}
