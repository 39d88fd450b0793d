package rollup

import "time"

// The rows the rollup hands to its analytics sink (ClickHouse). Every row
// has a deterministic identity (its key fields) so that writing it twice,
// after a retry or a replay, cannot double-count: the tables deduplicate
// by that key (see schemas/clickhouse and docs/analytics.md). Message
// bodies are never part of a row.

// MessageRow is one timeline message, as sequenced.
type MessageRow struct {
	Group         string
	Seq           uint64
	Sender        string
	SentAt        time.Time
	MembersAtSend uint32
}

// ReadRow is one move of a member's read watermark in a group.
type ReadRow struct {
	Group     string
	User      string
	Watermark uint64 // "read everything up to this seq"
	ReadAt    time.Time
}

// MemberRow is a join or leave (a timeline event with its seq).
type MemberRow struct {
	Group  string
	Seq    uint64
	User   string
	Joined bool // false: left
	At     time.Time
}

// ReceiptRow is the per-message receipt aggregate as the rollup last
// computed it; Version grows with every update of the same (Group, Seq),
// and the latest version wins.
type ReceiptRow struct {
	Group         string
	Seq           uint64
	Sender        string
	SentAt        time.Time
	MembersAtSend uint32
	ReadCount     uint32
	FirstReadAt   time.Time // zero: unread
	LastReadAt    time.Time
	// Time-to-read quantiles over the readers so far, in milliseconds.
	TTRp50, TTRp90, TTRp99 float64
	Version                uint64
}

// PresenceRow is what one changelog record says about a session of a
// user: it went online on Edge at OnlineAt (an attachment record), or
// offline at OfflineAt (its tombstone). Each record stands alone, so an
// offline row has only OfflineAt: when and where the session began is in
// an earlier record (or, after compaction, nowhere). Times that are zero
// are not set. The sink stores each set time as an event
// (presence_events), and queries pair a session's events
// (docs/analytics.md).
type PresenceRow struct {
	User      string
	Session   string
	Edge      string // set on an online row; may be empty on an offline one
	OnlineAt  time.Time
	OfflineAt time.Time
	// Version is the record's timestamp in Unix milliseconds. Unused for
	// presence: events are never updated, so nothing needs ordering.
	Version uint64
}

// Batch is what the rollup writes to the sink at once.
type Batch struct {
	Messages []MessageRow
	Reads    []ReadRow
	Members  []MemberRow
	Receipts []ReceiptRow
	Presence []PresenceRow
}

// Len is the number of rows in the batch.
func (b *Batch) Len() int {
	return len(b.Messages) + len(b.Reads) + len(b.Members) + len(b.Receipts) + len(b.Presence)
}
