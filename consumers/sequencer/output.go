package sequencer

import (
	"fmt"

	"github.com/causeway/causeway/pipeline"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
)

// ForwardRecords returns o.Records as records of the group log, keyed and
// partitioned by their group exactly as edges write them
// (pipeline.PartitionFor), so a forwarded request lands in the partition
// that owns its group or stream. The caller produces them in the
// transaction of the record that caused them: a forward is then written
// exactly when its cause is consumed, never twice, never lost.
func (o Output) ForwardRecords(l pipeline.Layout) ([]*kgo.Record, error) {
	if len(o.Records) == 0 {
		return nil, nil
	}
	out := make([]*kgo.Record, 0, len(o.Records))
	for _, ev := range o.Records {
		v, err := proto.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("marshal forwarded record for %s: %w", ev.GetGroup(), err)
		}
		out = append(out, &kgo.Record{
			Topic:     l.GroupTopic,
			Partition: pipeline.PartitionFor(ev.GetGroup(), l.GroupPartitions),
			Key:       []byte(ev.GetGroup()),
			Value:     v,
		})
	}
	return out, nil
}
