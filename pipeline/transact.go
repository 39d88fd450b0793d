package pipeline

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TransactConfig is a consume-process-produce loop's Kafka side: one input
// topic read by a consumer group, outputs and offsets in one transaction.
type TransactConfig struct {
	Kafka           KafkaConfig
	GroupID, Topic  string
	TransactionalID string
	// SessionTimeout is how long a dead member keeps its partitions;
	// TransactionTimeout how long the broker keeps a dead member's
	// transaction open.
	SessionTimeout, TransactionTimeout time.Duration
	FetchMaxWait                       time.Duration
	// FetchMinBytes above 1 lets the broker hold a fetch until that much
	// is there or FetchMaxWait passed: fewer, larger fetches for a loop
	// that batches by time anyway (the rollup), at no cost to one that
	// must react to every record (the sequencer leaves it 0).
	FetchMinBytes int32
	// HoldProduces keeps a transaction's records in the client until the
	// loop flushes them before ending it (ProduceBatch.Flush): one
	// produce request per broker per transaction, instead of one for
	// each group of records the producer happened to see (fewer requests
	// for the broker and the client to handle). A loop that sets it must
	// flush every transaction.
	HoldProduces bool
}

// heldLinger is the producer linger of a loop with HoldProduces: a bound
// only, the loop's flush sends the records at once.
const heldLinger = 100 * time.Millisecond

// Opts are the options of a kgo.GroupTransactSession for c. Partitions
// the member loses are recorded in lost, for the loop to drop their state
// before its next transaction.
func (c TransactConfig) Opts(lost *LostPartitions) []kgo.Opt {
	return append(c.Kafka.Opts(),
		kgo.ConsumerGroup(c.GroupID),
		kgo.ConsumeTopics(c.Topic),
		kgo.TransactionalID(c.TransactionalID),
		kgo.TransactionTimeout(c.TransactionTimeout),
		kgo.SessionTimeout(c.SessionTimeout),
		kgo.HeartbeatInterval(c.SessionTimeout/6),
		kgo.RebalanceTimeout(c.SessionTimeout*2),
		// Read committed and stable offsets (KIP-447): a partition's new
		// owner starts after every transaction that committed its offsets.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(c.linger()),
		kgo.FetchMaxWait(c.FetchMaxWait),
		kgo.FetchMinBytes(max(1, c.FetchMinBytes)),
		kgo.OnPartitionsRevoked(lost.record),
		kgo.OnPartitionsLost(lost.record),
	)
}

func (c TransactConfig) linger() time.Duration {
	if c.HoldProduces {
		return heldLinger
	}
	return 0
}

// LostPartitions collects the input partitions a group member lost, from
// the group client's callbacks, for the loop that owns their state.
type LostPartitions struct {
	topic string
	mu    sync.Mutex
	lost  map[int32]bool
}

// NewLostPartitions tracks partitions of topic.
func NewLostPartitions(topic string) *LostPartitions {
	return &LostPartitions{topic: topic, lost: make(map[int32]bool)}
}

func (l *LostPartitions) record(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range lost[l.topic] {
		l.lost[p] = true
	}
}

// Forget deletes the partitions lost since the last call from parts.
func Forget[T any](l *LostPartitions, parts map[int32]T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p := range l.lost {
		delete(parts, p)
	}
	clear(l.lost)
}
