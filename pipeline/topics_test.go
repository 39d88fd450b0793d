package pipeline_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/causeway/causeway/pipeline"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// admin connects a kadm client to a real Kafka-protocol cluster over TCP:
// kfake with n brokers, so replication factors above 1 mean something.
func admin(t *testing.T, brokers int) *kadm.Client {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(brokers))
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	// A short metadata age, as the topics command uses: kadm caches
	// topic metadata for that long, and the tests create topics behind
	// the checks' backs.
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func testLayout(rf int16) pipeline.Layout {
	l := pipeline.DefaultLayout()
	l.GroupPartitions, l.DeliveryPartitions, l.ReplicationFactor = 6, 4, rf
	return l
}

func TestCreateTopicsThenCheck(t *testing.T) {
	t.Parallel()
	adm := admin(t, 3)
	l := testLayout(3)
	res, err := pipeline.CreateTopics(ctx(t), adm, l)
	if err != nil {
		t.Fatalf("CreateTopics on an empty cluster: %v", err)
	}
	for _, r := range res {
		if !r.Created {
			t.Errorf("%s: Created false on an empty cluster", r.Topic)
		}
	}
	states, err := pipeline.CheckLayout(ctx(t), adm, l)
	if err != nil {
		t.Fatalf("CheckLayout after CreateTopics: %v", err)
	}
	want := map[string]struct {
		parts  int
		policy string
	}{
		l.GroupTopic:       {6, "delete"},
		l.StateTopic:       {6, "compact"},
		l.RollupStateTopic: {6, "compact"},
		l.DeliveryTopic:    {4, "delete"},
	}
	if len(states) != 4 {
		t.Fatalf("CheckLayout described %d topics, want 4", len(states))
	}
	for _, s := range states {
		w := want[s.Name]
		if len(s.Partitions) != w.parts || s.ReplicationFactor != 3 {
			t.Errorf("%s: %d partitions, replication %d; want %d, 3", s.Name, len(s.Partitions), s.ReplicationFactor, w.parts)
		}
		if p, _ := s.Config("cleanup.policy"); p != w.policy {
			t.Errorf("%s: cleanup.policy %q, want %q", s.Name, p, w.policy)
		}
		for _, p := range s.Partitions {
			if len(p.Replicas) != 3 || p.Leader < 0 {
				t.Errorf("%s/%d: replicas %v leader %d", s.Name, p.Partition, p.Replicas, p.Leader)
			}
		}
	}
	if r, _ := states[0].Config("retention.ms"); r != "604800000" {
		t.Errorf("group log retention.ms %q, want 604800000 (7 days)", r)
	}
	if r, _ := states[3].Config("retention.ms"); r != "3600000" {
		t.Errorf("deliveries retention.ms %q, want 3600000 (1 hour)", r)
	}

	// Running it again is harmless: nothing created, still consistent.
	res, err = pipeline.CreateTopics(ctx(t), adm, l)
	if err != nil {
		t.Fatalf("second CreateTopics: %v", err)
	}
	for _, r := range res {
		if r.Created {
			t.Errorf("%s: created again", r.Topic)
		}
	}
}

// A cluster whose group log has another partition count is refused by
// check, create and the roles' EnsureTopics alike, with a pointer to the
// growth procedure.
func TestChangedPartitionCountRefused(t *testing.T) {
	t.Parallel()
	adm := admin(t, 1)
	l := testLayout(-1)
	if _, err := adm.CreateTopic(ctx(t), 4, -1, nil, l.GroupTopic); err != nil {
		t.Fatal(err)
	}
	_, err := pipeline.CreateTopics(ctx(t), adm, l)
	if !errors.Is(err, pipeline.ErrLayoutMismatch) {
		t.Fatalf("CreateTopics over a 4-partition group log: %v, want ErrLayoutMismatch", err)
	}
	_, err = pipeline.CheckLayout(ctx(t), adm, l)
	if !errors.Is(err, pipeline.ErrLayoutMismatch) {
		t.Fatalf("CheckLayout: %v, want ErrLayoutMismatch", err)
	}
	for _, s := range []string{"causeway.groups has 4 partitions, layout says 6", "docs/operations.md"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
	// Only the group log differs: the state and delivery topics, created
	// by CreateTopics, are fine and not reported.
	if strings.Contains(err.Error(), l.StateTopic) || strings.Contains(err.Error(), l.DeliveryTopic) {
		t.Errorf("error reports topics that match: %v", err)
	}
	if err := pipeline.EnsureTopics(ctx(t), adm, l); !errors.Is(err, pipeline.ErrLayoutMismatch) {
		t.Errorf("EnsureTopics: %v, want ErrLayoutMismatch", err)
	}
}

func TestCheckCleanupPolicyAndMissing(t *testing.T) {
	t.Parallel()
	adm := admin(t, 1)
	l := testLayout(-1)
	_, err := pipeline.CheckLayout(ctx(t), adm, l)
	if !errors.Is(err, pipeline.ErrTopicMissing) || errors.Is(err, pipeline.ErrLayoutMismatch) {
		t.Fatalf("CheckLayout on an empty cluster: %v, want ErrTopicMissing only", err)
	}
	if n := strings.Count(err.Error(), "topic missing"); n != 4 {
		t.Errorf("%d missing topics reported, want 4: %v", n, err)
	}
	// A state topic that deletes: a quiet group would lose its state.
	del := "delete"
	if _, err := adm.CreateTopic(ctx(t), 6, -1, map[string]*string{"cleanup.policy": &del}, l.StateTopic); err != nil {
		t.Fatal(err)
	}
	_, err = pipeline.CreateTopics(ctx(t), adm, l)
	if !errors.Is(err, pipeline.ErrTopicConfigMismatch) || errors.Is(err, pipeline.ErrLayoutMismatch) {
		t.Fatalf("CreateTopics over a deleting state topic: %v, want ErrTopicConfigMismatch only", err)
	}
	if !strings.Contains(err.Error(), `causeway.sequencer-state has cleanup.policy "delete", layout says "compact"`) {
		t.Errorf("error does not name the policy: %v", err)
	}
}

func TestReplicationFactor(t *testing.T) {
	t.Parallel()
	adm := admin(t, 1)
	_, err := pipeline.CreateTopics(ctx(t), adm, testLayout(3))
	if !errors.Is(err, kerr.InvalidReplicationFactor) || !strings.Contains(err.Error(), "the cluster has 1 broker(s)") {
		t.Fatalf("replication 3 on one broker: %v, want InvalidReplicationFactor naming the broker count", err)
	}
	if _, err := pipeline.CreateTopics(ctx(t), adm, testLayout(-1)); err != nil {
		t.Fatalf("replication -1 (broker default): %v", err)
	}
	// What exists has 1 replica: a layout asking for 3 reports it.
	_, err = pipeline.CheckLayout(ctx(t), adm, testLayout(3))
	if !errors.Is(err, pipeline.ErrTopicConfigMismatch) || !strings.Contains(err.Error(), "replication factor 1, layout says 3") {
		t.Fatalf("CheckLayout with replication 3 over 1 replica: %v", err)
	}
}

func TestVerifyPolicyOrder(t *testing.T) {
	t.Parallel()
	l := testLayout(-1)
	state := func(name string, parts int, policy string) pipeline.TopicState {
		s := pipeline.TopicState{Name: name, Exists: true, ReplicationFactor: 1,
			Configs: []pipeline.TopicConfig{{Key: "cleanup.policy", Value: policy}}}
		for i := range parts {
			s.Partitions = append(s.Partitions, pipeline.PartitionState{Partition: int32(i)})
		}
		return s
	}
	ok := []pipeline.TopicState{state(l.GroupTopic, 6, "delete"), state(l.StateTopic, 6, "compact"), state(l.RollupStateTopic, 6, "compact"), state(l.DeliveryTopic, 4, "delete")}
	if err := l.Verify(ok); err != nil {
		t.Fatalf("Verify of a matching layout: %v", err)
	}
	bad := []pipeline.TopicState{state(l.GroupTopic, 6, "delete"), state(l.StateTopic, 6, "delete, compact"), state(l.RollupStateTopic, 6, "compact"), state(l.DeliveryTopic, 4, "delete")}
	if err := l.Verify(bad); !errors.Is(err, pipeline.ErrTopicConfigMismatch) {
		t.Fatalf("Verify of a compact+delete state topic: %v", err)
	}
}
