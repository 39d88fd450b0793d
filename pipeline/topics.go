package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Layout names Causeway's topics and their partition counts. The group log
// and the sequencer changelog are co-partitioned: they must have the same
// partition count, and a group's records live in the same partition number
// of both.
type Layout struct {
	// GroupTopic is the group log, keyed by group ID.
	GroupTopic string
	// StateTopic is the sequencer's compacted changelog.
	StateTopic string
	// RollupStateTopic is the rollup's compacted changelog, co-partitioned
	// with the group log too.
	RollupStateTopic string
	// DeliveryTopic holds the deliveries; each edge consumes one partition.
	DeliveryTopic string
	// GroupPartitions is the partition count of GroupTopic and StateTopic.
	// It is fixed for the life of a deployment: changing it moves groups.
	GroupPartitions int32
	// DeliveryPartitions is the number of delivery slots.
	DeliveryPartitions int32
	// ReplicationFactor for created topics; -1 uses the broker default.
	ReplicationFactor int16
}

// DefaultLayout is the layout `causeway dev` uses.
func DefaultLayout() Layout {
	return Layout{
		GroupTopic:         "causeway.groups",
		StateTopic:         "causeway.sequencer-state",
		RollupStateTopic:   "causeway.rollup-state",
		DeliveryTopic:      "causeway.deliveries",
		GroupPartitions:    8,
		DeliveryPartitions: 16,
		ReplicationFactor:  -1,
	}
}

// Validate reports the first invalid field.
func (l Layout) Validate() error {
	switch {
	case l.GroupTopic == "" || l.StateTopic == "" || l.DeliveryTopic == "" || l.RollupStateTopic == "":
		return errors.New("topic names must not be empty")
	case len(map[string]bool{l.GroupTopic: true, l.StateTopic: true, l.DeliveryTopic: true, l.RollupStateTopic: true}) != 4:
		return errors.New("topic names must be distinct")
	case l.GroupPartitions < 1 || l.GroupPartitions > 10000:
		return fmt.Errorf("group partitions %d: must be between 1 and 10000", l.GroupPartitions)
	case l.DeliveryPartitions < 1 || l.DeliveryPartitions > 10000:
		return fmt.Errorf("delivery partitions %d: must be between 1 and 10000", l.DeliveryPartitions)
	case l.ReplicationFactor == 0 || l.ReplicationFactor < -1:
		return fmt.Errorf("replication factor %d: must be -1 (broker default) or at least 1", l.ReplicationFactor)
	}
	return nil
}

// TopicSpec is what the layout requires of one topic.
type TopicSpec struct {
	Name       string
	Partitions int32
	// Configs are set when Causeway creates the topic. cleanup.policy is
	// also required of an existing topic (CheckLayout); retention is the
	// operator's to tune.
	Configs map[string]string
}

// Retention of the logs Causeway creates: a week of group log is what
// replay and inspect can reach back to; deliveries are only read live (an
// edge starts from the end), so an hour is plenty.
const (
	GroupRetention    = 7 * 24 * time.Hour
	DeliveryRetention = time.Hour
)

// Specs lists the layout's topics: group log, state changelog, deliveries.
func (l Layout) Specs() []TopicSpec {
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	return []TopicSpec{
		{l.GroupTopic, l.GroupPartitions, map[string]string{"cleanup.policy": "delete", "retention.ms": ms(GroupRetention)}},
		// Compact only: "compact,delete" would drop the state of a quiet
		// group once its records pass the retention.
		{l.StateTopic, l.GroupPartitions, map[string]string{"cleanup.policy": "compact"}},
		{l.RollupStateTopic, l.GroupPartitions, map[string]string{"cleanup.policy": "compact"}},
		{l.DeliveryTopic, l.DeliveryPartitions, map[string]string{"cleanup.policy": "delete", "retention.ms": ms(DeliveryRetention)}},
	}
}

func (s TopicSpec) kadmConfigs() map[string]*string {
	m := make(map[string]*string, len(s.Configs))
	for k, v := range s.Configs {
		m[k] = &v
	}
	return m
}

// ErrLayoutMismatch is returned when an existing topic does not match the
// layout (its partition count differs). Causeway refuses to run on such a
// cluster, because a group's partition would move.
var ErrLayoutMismatch = errors.New("topic layout mismatch")

// ErrTopicMissing is returned when a topic of the layout does not exist.
var ErrTopicMissing = errors.New("topic missing")

// ErrTopicConfigMismatch is returned by CheckLayout when an existing topic
// has the wrong cleanup policy or fewer replicas than the layout asks for.
// Unlike a partition count, both can be fixed in place (kafka-configs.sh,
// a partition reassignment).
var ErrTopicConfigMismatch = errors.New("topic config mismatch")

func partitionMismatch(s TopicSpec, got int32) error {
	return fmt.Errorf("topic %s has %d partitions, layout says %d: refusing, a changed count moves groups to other partitions "+
		"(to grow, create a new topic generation and replay: see \"Growing partitions\" in docs/operations.md): %w",
		s.Name, got, s.Partitions, ErrLayoutMismatch)
}

// EnsureTopics creates the layout's missing topics and checks that existing
// ones have the expected partition counts.
func EnsureTopics(ctx context.Context, adm *kadm.Client, l Layout) error {
	if err := l.Validate(); err != nil {
		return fmt.Errorf("ensure topics: %w", err)
	}
	for _, s := range l.Specs() {
		resp, err := adm.CreateTopic(ctx, s.Partitions, l.ReplicationFactor, s.kadmConfigs(), s.Name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", s.Name, err)
		}
	}
	return CheckTopics(ctx, adm, l)
}

// CheckTopics verifies that every topic of the layout exists with the
// expected partition count.
func CheckTopics(ctx context.Context, adm *kadm.Client, l Layout) error {
	specs := l.Specs()
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("describe topics: %w", err)
	}
	for _, s := range specs {
		d, ok := details[s.Name]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("topic %s: %w", s.Name, ErrTopicMissing)
		}
		if d.Err != nil {
			return fmt.Errorf("describe topic %s: %w", s.Name, d.Err)
		}
		if got := int32(len(d.Partitions)); got != s.Partitions {
			return partitionMismatch(s, got)
		}
	}
	return nil
}

// WaitTopics ensures the layout's topics exist, retrying while the broker
// is unreachable, until ctx is done; onRetry (if not nil) hears about every
// tenth failed attempt. A layout mismatch is final.
func WaitTopics(ctx context.Context, adm *kadm.Client, l Layout, onRetry func(error)) error {
	for try := 1; ; try++ {
		err := EnsureTopics(ctx, adm, l)
		if err == nil || errors.Is(err, ErrLayoutMismatch) {
			return err
		}
		if onRetry != nil && try%10 == 0 {
			onRetry(err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for topics: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// CreateResult is what CreateTopics did for one topic of the layout.
type CreateResult struct {
	Topic   string
	Created bool // false: it existed already and was left as it was
}

// CreateTopics creates the layout's missing topics with its partition
// counts, replication factor and configs, leaves existing ones untouched,
// then checks the whole layout (CheckLayout): a run against a cluster
// whose topics differ from the layout fails, even if it created nothing.
func CreateTopics(ctx context.Context, adm *kadm.Client, l Layout) ([]CreateResult, error) {
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("create topics: %w", err)
	}
	var out []CreateResult
	for _, s := range l.Specs() {
		resp, err := adm.CreateTopic(ctx, s.Partitions, l.ReplicationFactor, s.kadmConfigs(), s.Name)
		if err == nil {
			err = resp.Err
		}
		switch {
		case err == nil:
			out = append(out, CreateResult{Topic: s.Name, Created: true})
		case errors.Is(err, kerr.TopicAlreadyExists):
			out = append(out, CreateResult{Topic: s.Name})
		case errors.Is(err, kerr.InvalidReplicationFactor):
			brokers := "?"
			if m, merr := adm.BrokerMetadata(ctx); merr == nil {
				brokers = strconv.Itoa(len(m.Brokers))
			}
			return out, fmt.Errorf("create topic %s with replication factor %d: the cluster has %s broker(s); "+
				"use a replication factor it can hold (-1 takes the broker default, as for a single-broker dev cluster): %w",
				s.Name, l.ReplicationFactor, brokers, err)
		default:
			return out, fmt.Errorf("create topic %s: %w", s.Name, err)
		}
	}
	// A new topic can take a moment to appear in every broker's metadata
	// (and in the client's metadata cache, kept for MetadataMinAge):
	// only a missing topic is worth waiting for, and not for long.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := CheckLayout(ctx, adm, l)
		if err == nil || !errors.Is(err, ErrTopicMissing) || time.Now().After(deadline) {
			return out, err
		}
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("wait for created topics: %w (last check: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TopicState is a topic as the cluster describes it.
type TopicState struct {
	Name   string
	Exists bool
	// Partitions are sorted by number.
	Partitions []PartitionState
	// ReplicationFactor is the smallest replica count of its partitions.
	ReplicationFactor int
	// Configs holds the configs that matter to Causeway (describedConfigs)
	// and every config set on the topic itself.
	Configs []TopicConfig
}

// PartitionState is one partition's placement.
type PartitionState struct {
	Partition     int32
	Leader        int32 // -1: none
	Replicas, ISR []int32
	Err           error
}

// TopicConfig is one config value and where it comes from.
type TopicConfig struct {
	Key, Value string
	// Source is Kafka's name for where the value is set, e.g.
	// DYNAMIC_TOPIC_CONFIG (on the topic) or DEFAULT_CONFIG.
	Source string
}

// Config returns the value of key, and whether it was described.
func (t TopicState) Config(key string) (string, bool) {
	for _, c := range t.Configs {
		if c.Key == key {
			return c.Value, true
		}
	}
	return "", false
}

// describedConfigs are shown by describe even when they are broker
// defaults: they decide what Causeway can replay and how safely it writes.
var describedConfigs = map[string]bool{
	"cleanup.policy":      true,
	"retention.ms":        true,
	"retention.bytes":     true,
	"min.insync.replicas": true,
	"max.message.bytes":   true,
	"segment.bytes":       true,
}

// DescribeLayout describes the layout's topics, in layout order; a missing
// topic is returned with Exists false.
func DescribeLayout(ctx context.Context, adm *kadm.Client, l Layout) ([]TopicState, error) {
	specs := l.Specs()
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("describe topics: %w", err)
	}
	out := make([]TopicState, len(specs))
	var present []string
	for i, s := range specs {
		out[i].Name = s.Name
		d, ok := details[s.Name]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			continue
		}
		if d.Err != nil {
			return nil, fmt.Errorf("describe topic %s: %w", s.Name, d.Err)
		}
		out[i].Exists = true
		present = append(present, s.Name)
		for _, p := range d.Partitions.Sorted() {
			out[i].Partitions = append(out[i].Partitions, PartitionState{
				Partition: p.Partition, Leader: p.Leader, Replicas: p.Replicas, ISR: p.ISR, Err: p.Err})
			if n := len(p.Replicas); out[i].ReplicationFactor == 0 || n < out[i].ReplicationFactor {
				out[i].ReplicationFactor = n
			}
		}
	}
	if len(present) == 0 {
		return out, nil
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, present...)
	if err != nil {
		return nil, fmt.Errorf("describe topic configs: %w", err)
	}
	for i := range out {
		if !out[i].Exists {
			continue
		}
		rc, err := rcs.On(out[i].Name, nil)
		if err == nil {
			err = rc.Err
		}
		if err != nil {
			return nil, fmt.Errorf("describe configs of topic %s: %w", out[i].Name, err)
		}
		for _, c := range rc.Configs {
			if describedConfigs[c.Key] || c.Source == kmsg.ConfigSourceDynamicTopicConfig {
				out[i].Configs = append(out[i].Configs, TopicConfig{Key: c.Key, Value: c.MaybeValue(), Source: c.Source.String()})
			}
		}
		sort.Slice(out[i].Configs, func(a, b int) bool { return out[i].Configs[a].Key < out[i].Configs[b].Key })
	}
	return out, nil
}

// Verify compares described topics with the layout and returns every
// difference, joined: each wraps ErrTopicMissing, ErrLayoutMismatch (a
// partition count, which is never fixed in place) or
// ErrTopicConfigMismatch. The replication factor is only checked when the
// layout names one (not -1).
func (l Layout) Verify(states []TopicState) error {
	byName := make(map[string]TopicState, len(states))
	for _, s := range states {
		byName[s.Name] = s
	}
	var errs []error
	for _, spec := range l.Specs() {
		st, ok := byName[spec.Name]
		if !ok || !st.Exists {
			errs = append(errs, fmt.Errorf("topic %s: %w (create it with `causeway topics create`)", spec.Name, ErrTopicMissing))
			continue
		}
		if got := int32(len(st.Partitions)); got != spec.Partitions {
			errs = append(errs, partitionMismatch(spec, got))
		}
		want := spec.Configs["cleanup.policy"]
		got, _ := st.Config("cleanup.policy")
		if normPolicy(got) != want {
			errs = append(errs, fmt.Errorf("topic %s has cleanup.policy %q, layout says %q: %w", spec.Name, got, want, ErrTopicConfigMismatch))
		}
		if rf := int(l.ReplicationFactor); rf > 0 && st.ReplicationFactor < rf {
			errs = append(errs, fmt.Errorf("topic %s has replication factor %d, layout says %d "+
				"(a replication factor of -1 accepts the broker's, as on a single-broker dev cluster): %w",
				spec.Name, st.ReplicationFactor, rf, ErrTopicConfigMismatch))
		}
	}
	return errors.Join(errs...)
}

// normPolicy sorts a cleanup.policy list, so "delete,compact" reads as
// "compact,delete".
func normPolicy(p string) string {
	parts := strings.Split(p, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// CheckLayout describes the layout's topics and verifies them (Verify).
func CheckLayout(ctx context.Context, adm *kadm.Client, l Layout) ([]TopicState, error) {
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("check topics: %w", err)
	}
	states, err := DescribeLayout(ctx, adm, l)
	if err != nil {
		return nil, err
	}
	return states, l.Verify(states)
}
