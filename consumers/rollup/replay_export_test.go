package rollup

import (
	"reflect"
	"testing"
	"time"
)

// MarkOwed sets each message's pending mark from what the summaries
// carried: Flush then emits exactly the owed counts, and the changed
// marks are changelogged.
func TestMarkOwed(t *testing.T) {
	t.Parallel()
	s := NewState(Limits{Window: 500 * time.Millisecond})
	f := feed{t, s}
	f.join("g", "ann", 1, 1000)
	f.join("g", "ben", 2, 1000)
	f.join("g", "cid", 3, 1000)
	f.msg("g", "ann", 4, 3, 1100)
	f.msg("g", "ann", 5, 3, 1100)
	f.msg("g", "ann", 6, 3, 1100)
	f.read("g", "ben", 2, 6, 1200)
	f.read("g", "cid", 3, 4, 1300)
	s.TakeWrites()
	// A summary carried 4 read by 2 and 5 read by 1 (still right), 6 read
	// by 0 (ben's read came after it).
	reported := map[uint64]uint32{4: 2, 5: 1, 6: 0}
	s.MarkOwed(func(group string, seq uint64, count uint32) bool {
		c, ok := reported[seq]
		return group != "g" || !ok || c != count
	})
	w := s.TakeWrites()
	if len(w) != 2 || w[0].Key != "g\x00x\x0000000000000000000004" || w[1].Key != "g\x00x\x0000000000000000000005" {
		t.Errorf("changelogged marks: %v, want messages 4 and 5 (no longer owed)", w)
	}
	sums := s.Flush(5000)
	if got := counts(sums, "g"); !reflect.DeepEqual(got, map[uint64]uint32{6: 1}) {
		t.Errorf("summary after MarkOwed: %v, want only 6 read by 1", got)
	}
	if s.Pending() {
		t.Error("still pending after the flush")
	}
	// Nothing owed: nothing pending, nothing emitted.
	s.MarkOwed(func(string, uint64, uint32) bool { return false })
	if s.Pending() || len(s.Flush(10000)) != 0 {
		t.Error("a summary with nothing owed")
	}
}
