package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/causeway/causeway/pipeline"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// runOut runs the binary's command tree in-process and returns its stdout.
func runOut(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

// TestTopicsCLI drives create, check and describe against a three-broker
// kfake cluster over TCP, with the default replication factor (3).
func TestTopicsCLI(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := strings.Join(c.ListenAddrs(), ",")

	out, err := runOut(t, "topics", "check", "--brokers", brokers)
	if !errors.Is(err, pipeline.ErrTopicMissing) {
		t.Fatalf("check of an empty cluster: %v, want ErrTopicMissing\n%s", err, out)
	}
	out, err = runOut(t, "topics", "create", "--brokers", brokers)
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	for _, want := range []string{"causeway.groups: created", "causeway.sequencer-state: created", "causeway.deliveries: created", "layout ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("create output lacks %q:\n%s", want, out)
		}
	}
	out, err = runOut(t, "topics", "check", "--brokers", brokers)
	if err != nil || !strings.Contains(out, "causeway.groups: 8 partitions, replication factor 3") || !strings.Contains(out, "layout ok") {
		t.Fatalf("check after create: %v\n%s", err, out)
	}
	out, err = runOut(t, "topics", "create", "--brokers", brokers)
	if err != nil || !strings.Contains(out, "causeway.groups: exists, left as it is") {
		t.Fatalf("second create: %v\n%s", err, out)
	}

	out, err = runOut(t, "topics", "describe", "--brokers", brokers)
	if err != nil {
		t.Fatalf("describe: %v", err)
	}
	for _, want := range []string{
		"causeway.groups: 8 partitions (layout: 8), replication factor 3",
		"causeway.sequencer-state: 8 partitions (layout: 8), replication factor 3",
		"causeway.rollup-state: 8 partitions (layout: 8), replication factor 3",
		"causeway.deliveries: 16 partitions (layout: 16), replication factor 3",
		"config cleanup.policy=compact (DYNAMIC_TOPIC_CONFIG)",
		"config retention.ms=604800000 (DYNAMIC_TOPIC_CONFIG)",
		"config retention.ms=3600000 (DYNAMIC_TOPIC_CONFIG)",
		"partition 15: leader ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "  partition "); n != 8+8+8+16 {
		t.Errorf("describe lists %d partitions, want 40:\n%s", n, out)
	}
}

// TestTopicsCLIRefusesChangedPartitionCount: a group log with another
// partition count fails check and create, pointing to the procedure.
func TestTopicsCLIRefusesChangedPartitionCount(t *testing.T) {
	t.Parallel()
	b, err := pipeline.NewBroker(pipeline.BrokerConfig{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 12, -1, nil, "causeway.groups"); err != nil {
		t.Fatal(err)
	}

	// One broker cannot hold three copies: create says so.
	_, err = runOut(t, "topics", "create", "--brokers", b.Addr())
	if err == nil || !strings.Contains(err.Error(), "the cluster has 1 broker(s)") {
		t.Fatalf("create with replication 3 on one broker: %v", err)
	}
	for _, cmd := range []string{"create", "check"} {
		out, err := runOut(t, "topics", cmd, "--brokers", b.Addr(), "--replication-factor", "-1")
		if !errors.Is(err, pipeline.ErrLayoutMismatch) {
			t.Fatalf("%s over a 12-partition group log: %v, want ErrLayoutMismatch\n%s", cmd, err, out)
		}
		for _, want := range []string{"does not match the layout", "causeway.groups has 12 partitions, layout says 8", "docs/operations.md"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s error lacks %q: %v", cmd, want, err)
			}
		}
	}
	// The configured count is what is checked: with a layout of 12 the
	// group log matches, and the state topic create made (8) does not.
	file := filepath.Join(t.TempDir(), "causeway.yaml")
	if err := os.WriteFile(file, []byte("topics:\n  group_partitions: 12\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = runOut(t, "topics", "check", "--config", file, "--brokers", b.Addr(), "--replication-factor", "-1")
	if !errors.Is(err, pipeline.ErrLayoutMismatch) || !strings.Contains(err.Error(), "causeway.sequencer-state has 8 partitions, layout says 12") ||
		strings.Contains(err.Error(), "causeway.groups has") {
		t.Fatalf("check with topics.group_partitions=12: %v", err)
	}
}

func TestTopicsCLIFlags(t *testing.T) {
	for _, args := range [][]string{
		{"topics", "create", "--replication-factor", "0", "--brokers", "127.0.0.1:1"},
		{"topics", "create", "--replication-factor", "-2", "--brokers", "127.0.0.1:1"},
		{"topics", "check", "--brokers", "no-port"},
		{"topics", "describe", "extra"},
		{"topics", "bogus"},
		{"topics"},
	} {
		if _, err := runOut(t, args...); err == nil {
			t.Errorf("causeway %s: no error", strings.Join(args, " "))
		}
	}
	_, err := runOut(t, "topics", "create", "--replication-factor", "0", "--brokers", "127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "--replication-factor") {
		t.Errorf("replication 0: %v, want an error naming the flag", err)
	}
}
