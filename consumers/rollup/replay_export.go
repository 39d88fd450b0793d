package rollup

// What `causeway replay --into rollup-state` (pipeline/replay) needs to
// rebuild the rollup's changelog as the live rollup has it.

// MarkOwed sets, on every tracked message, whether a receipts summary
// still owes its count: owed reports it for a message of group with seq
// and read count (at least 1; a message nobody read owes nothing). The
// live rollup clears the mark when a summary goes out, by the wall clock
// (Flush); a rebuild, which has no clock of its own, asks instead whether
// the group log holds a summary with that count. Messages whose mark
// changed are changelogged (TakeWrites); Flush then emits what is owed.
func (s *State) MarkOwed(owed func(group string, seq uint64, count uint32) bool) {
	for _, g := range s.groups {
		g.pending = 0
		for _, m := range g.msgs {
			want := m.GetReadCount() > 0 && owed(g.id, m.GetSeq(), m.GetReadCount())
			if m.Pending != want {
				m.Pending = want
				s.put(key(g.id, kindMessage, msgSub(m.GetSeq())), m)
			}
			if want {
				g.pending++
			}
		}
	}
}
