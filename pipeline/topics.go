package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
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
		DeliveryTopic:      "causeway.deliveries",
		GroupPartitions:    8,
		DeliveryPartitions: 16,
		ReplicationFactor:  -1,
	}
}

// Validate reports the first invalid field.
func (l Layout) Validate() error {
	switch {
	case l.GroupTopic == "" || l.StateTopic == "" || l.DeliveryTopic == "":
		return errors.New("topic names must not be empty")
	case l.GroupTopic == l.StateTopic || l.GroupTopic == l.DeliveryTopic || l.StateTopic == l.DeliveryTopic:
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

type topicSpec struct {
	name       string
	partitions int32
	configs    map[string]*string
}

func strp(s string) *string { return &s }

func (l Layout) specs() []topicSpec {
	return []topicSpec{
		{l.GroupTopic, l.GroupPartitions, map[string]*string{
			"cleanup.policy": strp("delete"),
			"retention.ms":   strp(strconv.Itoa(7 * 24 * 3600 * 1000)),
		}},
		{l.StateTopic, l.GroupPartitions, map[string]*string{
			"cleanup.policy": strp("compact"),
		}},
		{l.DeliveryTopic, l.DeliveryPartitions, map[string]*string{
			"cleanup.policy": strp("delete"),
			"retention.ms":   strp(strconv.Itoa(3600 * 1000)),
		}},
	}
}

// ErrLayoutMismatch is returned when an existing topic does not match the
// layout (its partition count differs). Causeway refuses to run on such a
// cluster, because a group's partition would move.
var ErrLayoutMismatch = errors.New("topic layout mismatch")

// ErrTopicMissing is returned when a topic of the layout does not exist.
var ErrTopicMissing = errors.New("topic missing")

// EnsureTopics creates the layout's missing topics and checks that existing
// ones have the expected partition counts.
func EnsureTopics(ctx context.Context, adm *kadm.Client, l Layout) error {
	if err := l.Validate(); err != nil {
		return fmt.Errorf("ensure topics: %w", err)
	}
	for _, s := range l.specs() {
		resp, err := adm.CreateTopic(ctx, s.partitions, l.ReplicationFactor, s.configs, s.name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", s.name, err)
		}
	}
	return CheckTopics(ctx, adm, l)
}

// CheckTopics verifies that every topic of the layout exists with the
// expected partition count.
func CheckTopics(ctx context.Context, adm *kadm.Client, l Layout) error {
	specs := l.specs()
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.name
	}
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("describe topics: %w", err)
	}
	for _, s := range specs {
		d, ok := details[s.name]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("topic %s: %w", s.name, ErrTopicMissing)
		}
		if d.Err != nil {
			return fmt.Errorf("describe topic %s: %w", s.name, d.Err)
		}
		if got := int32(len(d.Partitions)); got != s.partitions {
			return fmt.Errorf("topic %s has %d partitions, layout says %d (a group's partition would move; see docs/operations.md): %w",
				s.name, got, s.partitions, ErrLayoutMismatch)
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
