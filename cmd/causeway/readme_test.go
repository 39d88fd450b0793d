package main

import (
	"os"
	"strings"
	"testing"

	"github.com/causeway/causeway/cmd/causeway/internal/config"
)

// The README's configuration reference lists every key the binary reads.
func TestReadmeListsEveryConfigKey(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for k := range config.Defaults {
		if !strings.Contains(string(b), "| `"+k+"` |") {
			t.Errorf("README.md configuration table lacks %s", k)
		}
	}
}

// Every subcommand's flags are documented by --help and bad flags fail.
func TestCLIFlagsValidated(t *testing.T) {
	t.Parallel()
	cases := [][]string{
		{"edge", "--brokers", "not-a-host-port", "--http-addr", "127.0.0.1:0", "--id", "e"},
		{"edge", "--no-such-flag"},
		{"edge", "--id", "bad id!", "--http-addr", "127.0.0.1:0"},
		{"sequencer", "extra-arg"},
		{"token"},
		{"token", "--user", "bad user!"},
		{"token", "--user", "ann", "--ttl", "-1h"},
		{"token", "--user", "ann", "--groups", "[bad"},
		{"dev", "--edges", "0"},
		{"dev", "--http-addr", "nonsense"},
		{"broker", "--listen", "127.0.0.1:99999"},
		{"client", "--url", "ws://127.0.0.1:1/v1/ws"},
	}
	for _, args := range cases {
		err := run(t.Context(), args)
		if err == nil {
			t.Errorf("causeway %s: no error", strings.Join(args, " "))
		}
	}
}
