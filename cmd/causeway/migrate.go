package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/causeway/causeway/cmd/causeway/internal/config"
	"github.com/causeway/causeway/consumers/rollup/chsink"
	"github.com/spf13/cobra"
)

// migrateTimeout bounds one migrate run: an unreachable server is an
// error to report, not a wait.
const migrateTimeout = 2 * time.Minute

func newMigrateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the ClickHouse schema (clickhouse.* config keys); a second run does nothing",
		Long: `Applies the ClickHouse migrations built into this binary (schemas/clickhouse)
that the database has not recorded yet, in version order, and records each
in its schema_migrations table. It creates the database if needed. It
refuses a database migrated by a newer causeway (a version it does not
know) or whose applied migrations differ from its own.`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().String("clickhouse", "", "ClickHouse native protocol HOST:PORT (default 127.0.0.1:19000, scripts/clickhouse.sh)")
	cmd.Flags().String("database", "", "database to migrate (default causeway)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := load(cmd, flagKeys{"clickhouse": "clickhouse.addr", "database": "clickhouse.database"})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), migrateTimeout)
		defer cancel()
		cfg, err := clickhouseConfig(c)
		if err != nil {
			return err
		}
		res, err := chsink.Migrate(ctx, cfg)
		out := cmd.OutOrStdout()
		for _, m := range res.Applied {
			fmt.Fprintf(out, "applied %s\n", m.File)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no answer from clickhouse %s within %s: %w", cfg.Addr, migrateTimeout, err)
		}
		if err != nil {
			return err
		}
		if len(res.Applied) == 0 {
			fmt.Fprintf(out, "database %s on %s is up to date (version %d)\n", res.Database, cfg.Addr, res.Version)
		} else {
			fmt.Fprintf(out, "database %s on %s migrated to version %d\n", res.Database, cfg.Addr, res.Version)
		}
		return nil
	}
	return cmd
}

// clickhouseConfig is the sink's configuration from the clickhouse.* keys.
func clickhouseConfig(c config.Config) (chsink.Config, error) {
	cfg := chsink.Config{
		Addr:     c.ClickHouse.Addr,
		Database: c.ClickHouse.Database,
		Username: c.ClickHouse.Username,
		Password: c.ClickHouse.Password,
	}
	if !c.ClickHouse.TLS {
		return cfg, nil
	}
	// The server's certificate is verified for the address's host, against
	// clickhouse.tls_ca_file or the system's roots.
	host, _, _ := net.SplitHostPort(c.ClickHouse.Addr)
	cfg.TLS = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if f := c.ClickHouse.TLSCAFile; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return cfg, fmt.Errorf("clickhouse.tls_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return cfg, fmt.Errorf("clickhouse.tls_ca_file %s: no PEM certificate in it", f)
		}
		cfg.TLS.RootCAs = pool
	}
	return cfg, nil
}
