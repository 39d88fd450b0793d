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
	cmd.Flags().StringArray("sasl-user", nil, "require SASL: a user as MECHANISM:USER:PASSWORD, mechanism plain, scram-sha-256 or scram-sha-512 (repeatable; the kafka.sasl.* identity, if set, is added)")
	cmd.Flags().String("tls-cert", "", "serve TLS only, with this PEM certificate chain (and --tls-key)")
	cmd.Flags().String("tls-key", "", "PEM private key of --tls-cert")
	cmd.Flags().String("tls-client-ca", "", "with TLS, require client certificates signed by a CA in this PEM file (mTLS)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := load(cmd, flagKeys{"listen": "broker.listen", "data-dir": "broker.data_dir", "sync": "broker.sync"})
		if err != nil {
			return err
		}
		log := newLogger(c.Log)
		bc := pipeline.BrokerConfig{Listen: c.Broker.Listen, DataDir: c.Broker.DataDir, Sync: c.Broker.Sync}
		specs, _ := cmd.Flags().GetStringArray("sasl-user")
		for _, s := range specs {
			u, err := pipeline.ParseBrokerUser(s)
			if err != nil {
				// Not %q of s: it holds a password.
				return fmt.Errorf("--sasl-user: %w", err)
			}
			bc.Users = append(bc.Users, u)
		}
		// The roles' identity: with kafka.sasl.* in a shared config or
		// environment, the broker accepts the roles that read it.
		if k := kafkaConfig(c, "broker").SASL; k.Enabled() {
			if err := k.Validate(); err != nil {
				return err
			}
			u := pipeline.BrokerUser{Mechanism: k.Mechanism, Username: k.Username, Password: k.Password}
			dup := false
			for _, o := range bc.Users {
				dup = dup || (pipeline.KafkaSASL{Mechanism: o.Mechanism}.KafkaName() == k.KafkaName() && o.Username == u.Username)
			}
			if !dup {
				bc.Users = append(bc.Users, u)
			}
		}
		bc.TLSCertFile, _ = cmd.Flags().GetString("tls-cert")
		bc.TLSKeyFile, _ = cmd.Flags().GetString("tls-key")
		bc.TLSClientCAFile, _ = cmd.Flags().GetString("tls-client-ca")
		b, err := pipeline.NewBroker(bc)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "broker listening on %s\n", b.Addr())
		log.Info("broker started", "addr", b.Addr(), "data_dir", c.Broker.DataDir, "sync", c.Broker.Sync,
			"tls", b.TLS(), "mtls", bc.TLSClientCAFile != "", "sasl_users", len(bc.Users))
		return b.Run(cmd.Context())
	}
	return cmd
}
