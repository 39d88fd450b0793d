package rollup

import "github.com/twmb/franz-go/pkg/kgo"

// What `causeway replay --into clickhouse` (pipeline/replay) needs to
// derive the analytics rows exactly as the sink and the rollup do.

// RowsOf adds to b the rows one record of the sequencer's changelog stands
// for: the analytics sink's own derivation (messages, member events, read
// watermarks, presence events), a pure function of the record.
func RowsOf(b *Batch, r *kgo.Record) { rowsOf(b, r) }

// AllReceiptRows returns the receipt aggregate of every message the state
// tracks, as the rollup queues them for the sink after a restore. The
// tables keep the latest version of each, so writing them again is
// harmless.
func (s *State) AllReceiptRows() []ReceiptRow {
	s.markAllRows()
	return s.TakeReceiptRows()
}
