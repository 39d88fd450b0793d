package devcluster

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"
)

// StartTest starts an n-edge cluster for a test, logging warnings and
// errors only, and closes it when the test ends. tweak, if not nil, edits
// the config first. It fails the test if the cluster does not start within
// a minute.
func StartTest(tb testing.TB, n int, secret []byte, tweak func(*Config)) *Cluster {
	tb.Helper()
	cfg := DefaultConfig(n, secret)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.Edge.Logger, cfg.Sequencer.Logger, cfg.Rollup.Logger = log, log, log
	if tweak != nil {
		tweak(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := Start(ctx, cfg)
	if err != nil {
		tb.Fatalf("start cluster: %v", err)
	}
	tb.Cleanup(func() {
		if err := cl.Close(); err != nil {
			tb.Errorf("close cluster: %v", err)
		}
	})
	return cl
}
