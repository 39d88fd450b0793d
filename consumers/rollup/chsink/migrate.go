package chsink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	chddl "github.com/causeway/causeway/schemas/clickhouse"
)

// MigrationsTable records the applied migrations in the migrated database.
const MigrationsTable = "schema_migrations"

// ErrUnknownMigration: the database has a migration this binary does not
// know (written by a newer causeway), or one whose file has changed since
// it was applied. Migrate refuses to touch such a database.
var ErrUnknownMigration = errors.New("unknown migration in the database")

// MigrateResult says what Migrate did.
type MigrateResult struct {
	Database string
	// Applied are the migrations this run applied, in order; empty when
	// the database was up to date.
	Applied []chddl.Migration
	// Version is the highest version applied now.
	Version uint32
}

// Migrate creates cfg.Database if needed and applies the embedded
// migrations (schemas/clickhouse) that it has not recorded yet, in version
// order, recording each one in schema_migrations after all its statements
// succeeded. A second run does nothing. Every statement is idempotent, so
// a run that failed half way (or two runs at once) is safe to repeat.
//
// It refuses (ErrUnknownMigration) a database that records a version this
// binary does not have, or a different checksum for one it has.
func Migrate(ctx context.Context, cfg Config) (MigrateResult, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return MigrateResult{}, err
	}
	res := MigrateResult{Database: cfg.Database}
	migrations, err := chddl.Migrations()
	if err != nil {
		return res, err
	}

	// The database may not exist yet: create it on a connection to the
	// user's default database.
	cfg.MaxOpenConns = 1
	boot, err := cfg.open("")
	if err != nil {
		return res, err
	}
	err = boot.Exec(ctx, "CREATE DATABASE IF NOT EXISTS `"+cfg.Database+"`")
	boot.Close()
	if err != nil {
		return res, fmt.Errorf("create clickhouse database %s on %s: %w", cfg.Database, cfg.Addr, err)
	}

	conn, err := cfg.open(cfg.Database)
	if err != nil {
		return res, err
	}
	defer conn.Close()
	err = conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+MigrationsTable+` (
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime('UTC')
) ENGINE = ReplacingMergeTree() ORDER BY version`)
	if err != nil {
		return res, fmt.Errorf("create %s.%s: %w", cfg.Database, MigrationsTable, err)
	}

	applied, err := appliedMigrations(ctx, conn, cfg.Database)
	if err != nil {
		return res, err
	}
	known := map[uint32]chddl.Migration{}
	var latest uint32
	for _, m := range migrations {
		known[m.Version] = m
		latest = max(latest, m.Version)
	}
	for _, a := range applied {
		m, ok := known[a.version]
		switch {
		case !ok:
			return res, fmt.Errorf("%w: database %s on %s has migration %d (%s), but this causeway knows versions up to %d: it was migrated by a newer causeway; use that one",
				ErrUnknownMigration, cfg.Database, cfg.Addr, a.version, a.name, latest)
		case m.Checksum != a.checksum:
			return res, fmt.Errorf("%w: migration %d (%s) in database %s on %s was applied from a different file than this causeway's %s (checksum %.12s, file %.12s): applied migrations must never change",
				ErrUnknownMigration, a.version, a.name, cfg.Database, cfg.Addr, m.File, a.checksum, m.Checksum)
		}
		res.Version = max(res.Version, a.version)
	}

	done := map[uint32]bool{}
	for _, a := range applied {
		done[a.version] = true
	}
	for _, m := range migrations {
		if done[m.Version] {
			continue
		}
		for i, stmt := range m.Statements {
			if err := conn.Exec(ctx, stmt); err != nil {
				return res, fmt.Errorf("migration %s, statement %d of %d, on database %s: %w", m.File, i+1, len(m.Statements), cfg.Database, err)
			}
		}
		if err := record(ctx, conn, m, time.Now()); err != nil {
			return res, fmt.Errorf("record migration %s in %s.%s: %w", m.File, cfg.Database, MigrationsTable, err)
		}
		res.Applied = append(res.Applied, m)
		res.Version = max(res.Version, m.Version)
	}
	return res, nil
}

// record notes m as applied. A batch, not Exec of INSERT ... VALUES: over
// the native protocol 18.16 then waits for a data block that clickhouse-go
// never sends.
func record(ctx context.Context, conn driver.Conn, m chddl.Migration, at time.Time) error {
	bt, err := conn.PrepareBatch(ctx, "INSERT INTO "+MigrationsTable+" (version, name, checksum, applied_at)")
	if err != nil {
		return err
	}
	defer func() { _ = bt.Abort() }()
	if err := bt.Append(m.Version, m.Name, m.Checksum, at.UTC().Truncate(time.Second)); err != nil {
		return err
	}
	return bt.Send()
}

type appliedMigration struct {
	version        uint32
	name, checksum string
}

func appliedMigrations(ctx context.Context, conn driver.Conn, db string) ([]appliedMigration, error) {
	rows, err := conn.Query(ctx, "SELECT version, argMax(name, applied_at), argMax(checksum, applied_at) FROM "+MigrationsTable+" GROUP BY version ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("read %s.%s: %w", db, MigrationsTable, err)
	}
	defer rows.Close()
	var out []appliedMigration
	for rows.Next() {
		var a appliedMigration
		if err := rows.Scan(&a.version, &a.name, &a.checksum); err != nil {
			return nil, fmt.Errorf("read %s.%s: %w", db, MigrationsTable, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s.%s: %w", db, MigrationsTable, err)
	}
	return out, nil
}
