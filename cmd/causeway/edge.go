package main

import (
	"errors"
	"fmt"

	"github.com/causeway/causeway/cmd/causeway/internal/config"
	"github.com/causeway/causeway/edge"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
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
	cmd.Flags().String("admin-addr", "", "operators' host:port for /metrics, /healthz, /readyz and, with admin.pprof, /debug/pprof/ (empty: off)")
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
		ec := edgeConfig(c, id, c.Edge.HTTPAddr, log)
		if c.Auth.Secret == config.DevSecret {
			// The dev secret is public: anyone could mint tokens with it.
			if c.Auth.PublicKeysFile == "" && c.Auth.JWKSURL == "" {
				return errors.New("auth.secret is the public dev secret, only for causeway dev: set CAUSEWAY_AUTH_SECRET to at least 32 random bytes (head -c 32 /dev/urandom | base64), or configure auth.public_keys_file or auth.jwks_url")
			}
			ec.Secret = nil
			log.Info("auth.secret is the public dev secret: HS256 tokens are refused, public-key tokens only")
		}
		if err := ec.ValidateProduction(); err != nil {
			return fmt.Errorf("edge config: %w", err)
		}
		s, err := edge.New(ec)
		if err != nil {
			return err
		}
		scheme := "ws"
		if ec.TLSCert != "" {
			scheme = "wss"
		}
		fmt.Fprintf(cmd.OutOrStdout(), "edge %s listening on %s://%s/v1/ws\n", id, scheme, s.Addr())
		g, ctx := errgroup.WithContext(cmd.Context())
		g.Go(func() error { return checkKafka(ctx, ec.Kafka, log) })
		g.Go(func() error { return s.Run(ctx) })
		addr, _ := cmd.Flags().GetString("admin-addr")
		if err := serveMetrics(ctx, g, addr, ec.Registry, c.Admin.Pprof, s.Ready); err != nil {
			return err
		}
		return g.Wait()
	}
	return cmd
}
