package replay

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// mergeQueue bounds the records held per partition while a merge waits
// for another partition's next record: the partition stops being fetched
// until half of them went out.
const mergeQueue = 4096

// merger merges the committed records of the partitions a reader reads
// into one stream in timestamp order (ties: lower partition first). Each
// partition keeps its own order. A record goes out once every partition
// not read to its end has a record waiting: none of them can still bring
// an earlier one (records within a partition are in time order, up to
// producers' clocks).
type merger struct {
	rd     *reader
	prog   Progress
	queues map[int32][]*kgo.Record
	limit  int // mergeQueue, or less in tests
}

func newMerger(rd *reader, prog Progress) *merger {
	return &merger{rd: rd, prog: prog, queues: make(map[int32][]*kgo.Record, len(rd.parts)), limit: mergeQueue}
}

// next returns the next record, or nil once every partition was read to
// its end and merged.
func (m *merger) next(ctx context.Context) (*kgo.Record, error) {
	for {
		if r := m.pop(); r != nil {
			return r, nil
		}
		if m.rd.Done() && m.empty() {
			return nil, nil
		}
		recs, advanced, err := m.rd.Next(ctx)
		if err != nil {
			return nil, err
		}
		m.prog.Add(advanced)
		for _, r := range recs {
			m.queues[r.Partition] = append(m.queues[r.Partition], r)
			if pr := m.rd.parts[r.Partition]; len(m.queues[r.Partition]) >= m.limit && !pr.done && !pr.paused {
				m.rd.pause(r.Partition)
			}
		}
	}
}

func (m *merger) pop() *kgo.Record {
	best := int32(-1)
	for p, pr := range m.rd.parts {
		q := m.queues[p]
		if len(q) == 0 {
			if !pr.done {
				return nil // it may still bring an earlier record
			}
			continue
		}
		if best < 0 || earlier(q[0], m.queues[best][0]) {
			best = p
		}
	}
	if best < 0 {
		return nil
	}
	q := m.queues[best]
	r := q[0]
	q[0] = nil
	m.queues[best] = q[1:]
	if pr := m.rd.parts[best]; pr.paused && len(q)-1 <= m.limit/2 {
		m.rd.resume(best)
	}
	return r
}

func earlier(a, b *kgo.Record) bool {
	if !a.Timestamp.Equal(b.Timestamp) {
		return a.Timestamp.Before(b.Timestamp)
	}
	return a.Partition < b.Partition
}

func (m *merger) empty() bool {
	for _, q := range m.queues {
		if len(q) > 0 {
			return false
		}
	}
	return true
}
