package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/causeway/causeway/consumers/rollup/chsink"
	"github.com/causeway/causeway/consumers/rollup/chsink/chtest"
	chddl "github.com/causeway/causeway/schemas/clickhouse"
)

// runCmd runs the binary's root command with args and returns its stdout.
func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

// TestMigrate runs `causeway migrate` against a real ClickHouse (the
// project-local server, started if needed; never skipped): a fresh
// database gets every migration, a second run does nothing, the database
// comes from the environment as well as the flag, and a database that
// records an unknown newer version is refused with a clear error.
func TestMigrate(t *testing.T) {
	addr, err := chtest.Start()
	if err != nil {
		t.Fatalf("TestMigrate needs a real ClickHouse and could not start one: %v", err)
	}
	all, err := chddl.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	db := chtest.Database(t, addr)

	out, err := runCmd(t, "migrate", "--clickhouse", addr, "--database", db)
	if err != nil {
		t.Fatalf("first causeway migrate: %v\n%s", err, out)
	}
	for _, m := range all {
		if !strings.Contains(out, "applied "+m.File+"\n") {
			t.Errorf("first run's output lacks %q:\n%s", "applied "+m.File, out)
		}
	}
	last := all[len(all)-1].Version
	if !strings.Contains(out, "migrated to version") {
		t.Errorf("first run's output does not say it migrated:\n%s", out)
	}

	// The second run, with the database from the environment.
	t.Setenv("CAUSEWAY_CLICKHOUSE_DATABASE", db)
	out, err = runCmd(t, "migrate", "--clickhouse", addr)
	if err != nil {
		t.Fatalf("second causeway migrate: %v\n%s", err, out)
	}
	want := "database " + db + " on " + addr + " is up to date (version " + fmt.Sprint(last) + ")\n"
	if out != want {
		t.Errorf("second run printed %q, want only %q", out, want)
	}

	// Over TLS, as the password user of the local server, all from the
	// environment (clickhouse.tls, tls_ca_file, username, password).
	if chtest.Local() {
		tlsAddr, ca, err := chtest.LocalTLS()
		if err != nil {
			t.Fatal(err)
		}
		pw := os.Getenv("CAUSEWAY_CH_PASSWORD")
		if pw == "" {
			pw = "causeway-dev"
		}
		t.Setenv("CAUSEWAY_CLICKHOUSE_ADDR", tlsAddr)
		t.Setenv("CAUSEWAY_CLICKHOUSE_TLS", "true")
		t.Setenv("CAUSEWAY_CLICKHOUSE_TLS_CA_FILE", ca)
		t.Setenv("CAUSEWAY_CLICKHOUSE_USERNAME", "causeway")
		t.Setenv("CAUSEWAY_CLICKHOUSE_PASSWORD", pw)
		out, err = runCmd(t, "migrate")
		if err != nil || !strings.Contains(out, "is up to date") {
			t.Errorf("causeway migrate over TLS as causeway = %v, output %q; want up to date", err, out)
		}
		t.Setenv("CAUSEWAY_CLICKHOUSE_PASSWORD", "wrong")
		if out, err = runCmd(t, "migrate"); err == nil {
			t.Errorf("causeway migrate with a wrong password: no error (output %q)", out)
		}
		t.Setenv("CAUSEWAY_CLICKHOUSE_TLS_CA_FILE", "/nonexistent.pem")
		if _, err = runCmd(t, "migrate"); err == nil || !strings.Contains(err.Error(), "clickhouse.tls_ca_file") {
			t.Errorf("causeway migrate with a missing CA file = %v, want an error naming clickhouse.tls_ca_file", err)
		}
		for _, k := range []string{"ADDR", "TLS", "TLS_CA_FILE", "USERNAME", "PASSWORD"} {
			os.Unsetenv("CAUSEWAY_CLICKHOUSE_" + k)
		}
	}

	// A newer causeway's migration in the database: refused.
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Database: db}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	bt, err := conn.PrepareBatch(t.Context(), "INSERT INTO "+chsink.MigrationsTable+" (version, name, checksum, applied_at)")
	if err != nil {
		t.Fatal(err)
	}
	if err := bt.Append(last+1, "future", "x", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := bt.Send(); err != nil {
		t.Fatal(err)
	}
	out, err = runCmd(t, "migrate", "--clickhouse", addr, "--database", db)
	if err == nil || !strings.Contains(err.Error(), "newer causeway") || !strings.Contains(err.Error(), "future") {
		t.Fatalf("migrate with version %d (future) in the database = %v (output %q), want a refusal naming it", last+1, err, out)
	}

	// Bad flags and keys fail before connecting.
	for _, args := range [][]string{
		{"migrate", "--clickhouse", "no-port"},
		{"migrate", "--clickhouse", addr, "--database", "bad-name"},
		{"migrate", "extra"},
	} {
		if _, err := runCmd(t, args...); err == nil {
			t.Errorf("causeway %s: no error", strings.Join(args, " "))
		}
	}
}
