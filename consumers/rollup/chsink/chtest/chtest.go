// Package chtest gives tests a real ClickHouse: the project-local server
// of scripts/clickhouse.sh (started idempotently, installed if missing),
// or the one named by $CAUSEWAY_TEST_CLICKHOUSE, and a fresh database per
// test. Tests that need ClickHouse fail when it cannot start; they are
// never skipped.
package chtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// EnvAddr names a ClickHouse (HOST:PORT, native protocol) to test against
// instead of starting the project-local one, e.g. a current release to
// check compatibility.
const EnvAddr = "CAUSEWAY_TEST_CLICKHOUSE"

// Start returns the address of the ClickHouse for tests: $EnvAddr if set,
// else the project-local server, started with scripts/clickhouse.sh start
// (a no-op when it runs). The error carries the script's output.
func Start() (string, error) {
	if a := os.Getenv(EnvAddr); a != "" {
		return a, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "clickhouse.sh"), "start")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("scripts/clickhouse.sh start: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	words := strings.Fields(stdout.String())
	if len(words) == 0 {
		return "", fmt.Errorf("scripts/clickhouse.sh start printed no address; stderr:\n%s", stderr.String())
	}
	return words[len(words)-1], nil
}

// LocalTLS returns the project-local server's TLS address and the path of
// the certificate that verifies it (scripts/clickhouse.sh tls-addr,
// tls-ca). Call it after Start.
func LocalTLS() (addr, caFile string, err error) {
	root, err := RepoRoot()
	if err != nil {
		return "", "", err
	}
	run := func(arg string) (string, error) {
		out, err := exec.Command(filepath.Join(root, "scripts", "clickhouse.sh"), arg).Output()
		if err != nil {
			return "", fmt.Errorf("scripts/clickhouse.sh %s: %w", arg, err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	if addr, err = run("tls-addr"); err != nil {
		return "", "", err
	}
	caFile, err = run("tls-ca")
	return addr, caFile, err
}

// Local reports whether the tests use the project-local server (whose
// users scripts/clickhouse.sh defines).
func Local() bool { return os.Getenv(EnvAddr) == "" }

// RepoRoot is the nearest folder above the working directory with go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
		dir = parent
	}
}

// Database names a database unique to this test (it does not create it).
// It is dropped when the test passes and kept, named in the log, when it
// fails.
func Database(t testing.TB, addr string) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	db := fmt.Sprintf("causeway_test_%d_%s", time.Now().Unix(), hex.EncodeToString(b))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept ClickHouse database %s on %s for inspection", db, addr)
			return
		}
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Logf("drop %s: %v", db, err)
			return
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS `"+db+"`"); err != nil {
			t.Logf("drop %s: %v", db, err)
		}
	})
	return db
}
