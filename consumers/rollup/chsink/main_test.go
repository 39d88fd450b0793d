package chsink

import (
	"fmt"
	"os"
	"testing"

	"github.com/causeway/causeway/consumers/rollup/chsink/chtest"
)

// chAddr is the ClickHouse every test here uses (chtest.Start): the
// project-local server of scripts/clickhouse.sh, or $CAUSEWAY_TEST_CLICKHOUSE.
// Each test works in its own fresh database.
var chAddr string

// TestMain starts ClickHouse and fails the run, loudly, when it cannot:
// these tests are never skipped.
func TestMain(m *testing.M) {
	addr, err := chtest.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "\nFAIL: the chsink tests need a real ClickHouse and could not start one:\n%v\n\n", err)
		os.Exit(1)
	}
	chAddr = addr
	os.Exit(m.Run())
}

func testDatabase(t *testing.T) string { return chtest.Database(t, chAddr) }

func repoRoot() (string, error) { return chtest.RepoRoot() }
