// Package report holds the JSON reports of the benchmark programs that the
// suite (benchmarks/cmd/suite) reads back: receipts and idle.
package report

import "time"

// Machine describes where a report was taken.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	GoVersion string `json:"go_version"`
	MemTotal  string `json:"mem_total"`
	NoFile    uint64 `json:"rlimit_nofile"`
}

// Receipts is benchmarks/cmd/receipts' report.
type Receipts struct {
	Time    time.Time `json:"time"`
	Command string    `json:"command"`
	Machine Machine   `json:"machine"`
	Cluster string    `json:"cluster"`
	Config  struct {
		Sizes        []int   `json:"sizes"`
		Messages     int     `json:"messages"`
		RatePerGroup float64 `json:"rate_per_group"`
		BodyBytes    int     `json:"body_bytes"`
		Edges        int     `json:"edges"`
		// The rollup's settings (its defaults unless the environment set
		// them): window, and the size levels.
		Window          string `json:"rollup_window"`
		CountsOnlyAbove int    `json:"rollup_counts_only_above"`
		SenderOnlyAbove int    `json:"rollup_sender_only_above"`
		SlowFactor      int    `json:"rollup_slow_factor"`
	} `json:"config"`
	Levels   []ReceiptsLevel `json:"levels"`
	Summary  []string        `json:"summary"`
	Pass     bool            `json:"pass"`
	Failures []string        `json:"failures,omitempty"`
}

// ReceiptsLevel is one group size.
type ReceiptsLevel struct {
	Members  int    `json:"members"`
	Group    string `json:"group"`
	Messages int    `json:"messages"` // sent and acked
	// Reads: read frames acked (every member reads every message once,
	// the sender included); ReadErrors failed.
	Reads      int64 `json:"reads"`
	ReadErrors int64 `json:"read_errors"`
	// ReceiptFrames is every `receipts` frame delivered to any member from
	// the first send until the end of the level; ReceiptBytes their size.
	ReceiptFrames    int64   `json:"receipt_frames"`
	ReceiptBytes     int64   `json:"receipt_bytes"`
	FramesPerMessage float64 `json:"receipt_frames_per_message"`
	// Naive is N*(N-1): one receipt per reader per other member, per
	// message; NaiveRatio = Naive / FramesPerMessage.
	Naive      float64 `json:"naive_frames_per_message"`
	NaiveRatio float64 `json:"naive_ratio"`
	// MembersWithFrames is how many members got at least one receipts
	// frame; MaxFramesPerMember the most any one got.
	MembersWithFrames  int   `json:"members_with_frames"`
	MaxFramesPerMember int64 `json:"max_frames_per_member"`
	// Complete: the last summary seen counted N-1 readers for every
	// message (all reads rolled up). FinalCounts is the lowest final count
	// seen over the messages.
	Complete    bool   `json:"complete"`
	FinalCounts uint32 `json:"min_final_count"`
	// ActiveSec is from the first send to the last receipts frame;
	// Windows = ActiveSec / the level's effective window, and
	// LinearBound = members x ceil(Windows): the chattiness budget.
	ActiveSec       float64 `json:"active_sec"`
	EffectiveWindow float64 `json:"effective_window_sec"`
	Windows         float64 `json:"windows"`
	LinearBound     float64 `json:"linear_bound_frames"`
	// LastReadToFinalMs: from the last read's ack to the first summary
	// with every count final (how long a receipt takes to show).
	LastReadToFinalMs float64 `json:"last_read_to_final_ms"`
	SetupSec          float64 `json:"setup_sec"`
	// OtherFrames counts frames other than msg and receipts after setup
	// (own-watermark `read` syncs, member events ...), by type.
	OtherFrames map[string]int64 `json:"other_frames,omitempty"`
}

// Idle is benchmarks/cmd/idle's report.
type Idle struct {
	Time    time.Time `json:"time"`
	Command string    `json:"command"`
	Machine Machine   `json:"machine"`
	Config  struct {
		Levels    []int   `json:"levels"`
		Procs     int     `json:"client_procs_per_step"`
		SettleSec float64 `json:"settle_sec"`
		GroupSize int     `json:"group_size"`
		Sources   int     `json:"source_addresses"`
	} `json:"config"`
	Targets  []IdleTarget `json:"targets"`
	Summary  []string     `json:"summary"`
	Pass     bool         `json:"pass"`
	Failures []string     `json:"failures,omitempty"`
}

// IdleTarget is one server measured at every level.
type IdleTarget struct {
	Name        string      `json:"name"`
	Description string      `json:"description"`
	Baseline    IdleSample  `json:"baseline"`
	Levels      []IdleLevel `json:"levels"`
	// Others are the RSS of the cluster's other processes (broker,
	// sequencer) at each level, KiB, for information.
	Others map[string][]int64 `json:"others_rss_kib,omitempty"`
}

// IdleSample is one reading of the server process.
type IdleSample struct {
	Conns int `json:"conns"`
	// RSSKiB as it is (VmRSS), RSSAfterGCKiB after a forced GC that also
	// returned free memory to the OS.
	RSSKiB        int64  `json:"rss_kib"`
	RSSAfterGCKiB int64  `json:"rss_after_gc_kib"`
	HeapInuse     uint64 `json:"heap_inuse_bytes"`
	StackInuse    uint64 `json:"stack_inuse_bytes"`
	Goroutines    int    `json:"goroutines"`
	Threads       int    `json:"threads"`
}

// IdleLevel is a sample at a level and its per-connection figures
// (difference to the baseline / connections).
type IdleLevel struct {
	IdleSample
	SetupSec            float64 `json:"setup_sec"`
	RSSPerConnKB        float64 `json:"rss_per_conn_kb"`
	RSSAfterGCPerConnKB float64 `json:"rss_after_gc_per_conn_kb"`
	HeapPerConnKB       float64 `json:"heap_per_conn_kb"`
	StackPerConnKB      float64 `json:"stack_per_conn_kb"`
	GoroutinesPerConn   float64 `json:"goroutines_per_conn"`
}
