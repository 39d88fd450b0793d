package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/causeway/causeway/benchmarks/internal/kafkacount"
	"github.com/causeway/causeway/benchmarks/internal/procs"
	"github.com/causeway/causeway/pipeline"
)

// Scaling is the scale-out scenario: the same fan-out workload on split
// clusters of 1, 2, 4 edges and 1, 2, 4 sequencers (every role its own
// `causeway` process on loopback), and at group sizes 10, 100, 1,000 on
// the same edges; per-process CPU per 1,000 deliveries, and Kafka records
// per delivered message per topic.
type Scaling struct {
	Config struct {
		Offered            int     `json:"offered_deliveries_per_sec"`
		Conns              int     `json:"connections"`
		Members            int     `json:"members"`
		BodyBytes          int     `json:"body_bytes"`
		WarmupSec          float64 `json:"warmup_sec"`
		DurationSec        float64 `json:"duration_sec"`
		Edges              []int   `json:"edges_axis"`
		Seqs               []int   `json:"sequencers_axis"`
		SeqEdges           int     `json:"sequencers_axis_edges"`
		Sizes              []int   `json:"sizes_axis"`
		SizeEdges          int     `json:"sizes_axis_edges"`
		ReadEvery          int     `json:"reads_point_read_every"`
		GroupPartitions    int32   `json:"group_partitions"`
		DeliveryPartitions int32   `json:"delivery_partitions"`
		HeartbeatSec       float64 `json:"edge_heartbeat_sec"`
		Env                string  `json:"env,omitempty"`
		Cluster            string  `json:"cluster"`
	} `json:"config"`
	Points   []ScalePoint `json:"points"`
	Failures []string     `json:"failures,omitempty"`
}

// ScalePoint is one cluster shape under the workload.
type ScalePoint struct {
	Axes       []string `json:"axes"`
	Edges      int      `json:"edges"`
	Sequencers int      `json:"sequencers"`
	Groups     int      `json:"groups"`
	Members    int      `json:"members"`
	// ReadEvery: every member sends `read` for every Nth message it gets
	// (loadgen -read-every; 0: no reads). ReadsPerSec: reads acked in the
	// window per second.
	ReadEvery   int     `json:"read_every,omitempty"`
	ReadsPerSec float64 `json:"reads_per_sec,omitempty"`
	// EdgesHolding is how many edges hold members of each group: loadgen
	// spreads a group's members round-robin over the edges.
	EdgesHolding      int                `json:"edges_holding_members"`
	Offered           float64            `json:"offered_deliveries_per_sec"`
	File              string             `json:"file"`
	Delivered         float64            `json:"delivered_per_sec"`
	DeliveredFraction float64            `json:"delivered_fraction"`
	SentMsgsPerSec    float64            `json:"sent_msgs_per_sec"`
	LatencyMs         map[string]float64 `json:"latency_ms"`
	Lost              int64              `json:"lost"`
	Duplicates        int64              `json:"duplicates"`
	Gaps              int64              `json:"gaps"`
	SendErrors        int64              `json:"send_errors"`
	Disconnects       int64              `json:"disconnects"`
	// Roles: CPU of each role's processes together (edge, sequencer,
	// broker, rollup) and of the generator (loadgen), during the window.
	Roles        []RoleUsage `json:"roles"`
	IRQCores     float64     `json:"irq_cpu_cores"`
	ForeignCores float64     `json:"foreign_cpu_cores"`
	// Kafka is the window's count (benchmarks/internal/kafkacount);
	// Topics its per-message figures.
	Kafka  *kafkacount.Report `json:"kafka,omitempty"`
	Topics []TopicPer         `json:"per_message"`
	// MsgDeliveriesPerMessage: delivery records carrying a msg event per
	// group-log send, the figure that must not exceed EdgesHolding.
	MsgDeliveriesPerMessage   float64 `json:"msg_delivery_records_per_message"`
	OtherDeliveriesPerMessage float64 `json:"other_delivery_records_per_message"`
	HeartbeatsPerMessage      float64 `json:"heartbeats_per_message"`
	RecipientsPerRecord       float64 `json:"recipients_per_delivery_record"`
	// SeqTxns: sequencer transactions ended in the window (metrics);
	// DeliveryMarkerBound = the transactions that wrote deliveries (their
	// markers' distinct producer ID and epoch) x the delivery slots in use
	// (DeliverySlots), the most control markers they can leave there.
	SeqTxns             float64 `json:"sequencer_transactions"`
	DeliverySlots       int     `json:"delivery_slots_in_use"`
	SeqRecordsPerTxn    float64 `json:"sequencer_records_per_txn"`
	DeliveryMarkerBound float64 `json:"delivery_marker_bound"`
	// Sequencer memory: Go heap in use after a GC, summed over the
	// sequencers, before loadgen connected and after it finished (its
	// connections closed: memberships and history stay, sessions go);
	// groups in memory at the end (causeway_sequencer_groups, personal
	// streams included).
	SeqHeapBaseMiB float64 `json:"sequencer_heap_before_mib"`
	SeqHeapEndMiB  float64 `json:"sequencer_heap_after_mib"`
	SeqGroups      float64 `json:"sequencer_groups"`
	// CH rows per message the analytics sink would write (see kafkacount).
	RowsPerMessage map[string]float64 `json:"clickhouse_rows_per_message"`
	Attempts       int                `json:"attempts"`
	QuietWaitSec   float64            `json:"quiet_wait_sec"`
	Noisy          bool               `json:"noisy,omitempty"`
	Checks         []string           `json:"checks"`
	Failures       []string           `json:"failures,omitempty"`
	Error          string             `json:"error,omitempty"`
}

// RoleUsage is one role's processes during the window.
type RoleUsage struct {
	Role         string  `json:"role"`
	Procs        int     `json:"processes"`
	Cores        float64 `json:"cpu_cores"`
	CPUPer1000   float64 `json:"cpu_sec_per_1000_deliveries"`
	RSSMiB       float64 `json:"rss_mib_end"`
	MaxProcCores float64 `json:"max_process_cores"`
}

// TopicPer is one topic per delivered message.
type TopicPer struct {
	Role    string  `json:"role"`
	Offsets float64 `json:"offsets"`
	Records float64 `json:"records"`
	Markers float64 `json:"control_markers"`
	Bytes   float64 `json:"bytes"`
}

// roleOrder is the report order of the roles.
var roleOrder = []string{"edge", "sequencer", "broker", "rollup", "generator"}

func roleOf(proc string) string {
	switch {
	case strings.HasPrefix(proc, "edge-"):
		return "edge"
	case strings.HasPrefix(proc, "seq-"):
		return "sequencer"
	}
	return proc
}

// scalingShapes lists the points: the edges axis (1 sequencer, -members),
// the sequencers axis (-scaling-seq-edges edges), the group-size axis
// (-scaling-size-edges edges, 1 sequencer); a shape on several axes runs
// once.
func scalingShapes(s *Scaling) ([]ScalePoint, error) {
	c := &s.Config
	var err error
	list := func(flagName, v string) []int {
		if strings.TrimSpace(v) == "" || err != nil {
			return nil
		}
		var xs []int
		if xs, err = parseInts(v); err != nil {
			err = fmt.Errorf("-%s: %w", flagName, err)
		}
		return xs
	}
	c.Edges = list("scaling-edges", *scEdges)
	c.Seqs = list("scaling-seqs", *scSeqs)
	c.Sizes = list("scaling-sizes", *scSizes)
	if err != nil {
		return nil, err
	}
	var pts []ScalePoint
	add := func(axis string, e, q, size, reads int) {
		for i := range pts {
			if pts[i].Edges == e && pts[i].Sequencers == q && pts[i].Members == size && pts[i].ReadEvery == reads {
				pts[i].Axes = append(pts[i].Axes, axis)
				return
			}
		}
		pts = append(pts, ScalePoint{Axes: []string{axis}, Edges: e, Sequencers: q, Members: size, ReadEvery: reads, Groups: max(1, c.Conns/size), EdgesHolding: min(e, size)})
	}
	for _, e := range c.Edges {
		add("edges", e, 1, c.Members, 0)
	}
	for _, q := range c.Seqs {
		add("sequencers", c.SeqEdges, q, c.Members, 0)
	}
	for _, m := range c.Sizes {
		add("group size", c.SizeEdges, 1, m, 0)
	}
	if c.ReadEvery > 0 {
		add("reads", c.SizeEdges, 1, c.Members, c.ReadEvery)
	}
	return pts, nil
}

func runScaling(ctx context.Context, b *bins, tmp string) (*Scaling, error) {
	s := &Scaling{}
	c := &s.Config
	c.Offered, c.Conns, c.Members, c.BodyBytes = *scRate, *scConns, *scMembers, *bodyBytes
	c.WarmupSec, c.DurationSec = scWarmup.Seconds(), scDuration.Seconds()
	c.SeqEdges, c.SizeEdges, c.ReadEvery = *scSeqEdges, *scSizeEdges, *scReads
	l := pipeline.DefaultLayout()
	c.GroupPartitions, c.DeliveryPartitions = l.GroupPartitions, l.DeliveryPartitions
	c.HeartbeatSec = 3 // edge.heartbeat_interval's default
	c.Env = *scEnv
	c.Cluster = "separate causeway processes on loopback: broker (data dir on disk), sequencer --id seq-N, rollup (ClickHouse sink off, as `causeway dev` runs it), edge --id edge-N; default layout and settings, edge abuse limits off"
	pts, err := scalingShapes(s)
	if err != nil {
		return nil, err
	}
	for _, p := range pts {
		if ctx.Err() != nil {
			return s, ctx.Err()
		}
		p := quietest(ctx, fmt.Sprintf("scaling %d edges %d seqs %dx%d", p.Edges, p.Sequencers, p.Groups, p.Members),
			func(wait time.Duration) (ScalePoint, string, float64) {
				q := runScalePoint(ctx, b, tmp, p)
				q.QuietWaitSec, q.Noisy = wait.Seconds(), q.ForeignCores > *maxForeign
				return q, q.File, q.ForeignCores
			},
			func(q *ScalePoint, attempts int) { q.Attempts = attempts })
		s.Points = append(s.Points, p)
		for _, f := range p.Failures {
			s.Failures = append(s.Failures, fmt.Sprintf("scaling %d edges, %d sequencers, %d x %d: %s", p.Edges, p.Sequencers, p.Groups, p.Members, f))
		}
		fmt.Printf("  scaling %d edge(s) %d seq(s) %4d x %-4d: delivered %6.0f/s p99 %6.1f ms; CPU-s/1k: %s; delivery records/msg %.2f (max %d, holding %d); foreign %.2f%s\n",
			p.Edges, p.Sequencers, p.Groups, p.Members, p.Delivered, p.LatencyMs["p99"], rolesText(p), p.MsgDeliveriesPerMessage,
			maxPer(p), p.EdgesHolding, p.ForeignCores, failText(p))
	}
	return s, nil
}

func maxPer(p ScalePoint) int64 {
	if p.Kafka == nil {
		return 0
	}
	return p.Kafka.MaxDeliveriesPerMessage
}

func rolesText(p ScalePoint) string {
	var parts []string
	for _, r := range p.Roles {
		parts = append(parts, fmt.Sprintf("%s %.4f", r.Role, r.CPUPer1000))
	}
	return strings.Join(parts, ", ")
}

func failText(p ScalePoint) string {
	if len(p.Failures) == 0 {
		return ""
	}
	return "  FAIL: " + strings.Join(p.Failures, "; ")
}

// runScalePoint starts the split cluster, measures its sequencers' heap,
// runs loadgen against it with every process's PID and the broker, and
// judges the point.
func runScalePoint(ctx context.Context, b *bins, tmp string, p ScalePoint) ScalePoint {
	p.Offered = float64(*scRate)
	name := fmt.Sprintf("scaling-e%d-s%d-m%d", p.Edges, p.Sequencers, p.Members)
	if p.ReadEvery > 0 {
		name += fmt.Sprintf("-r%d", p.ReadEvery)
	}
	p.File = name + ".json"
	fail := func(err error) ScalePoint {
		p.Error = err.Error()
		p.Failures = append(p.Failures, p.Error)
		return p
	}
	dir := filepath.Join(tmp, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	var env []string
	for _, kv := range strings.Split(*scEnv, ",") {
		if kv = strings.TrimSpace(kv); kv != "" {
			env = append(env, kv)
		}
	}
	cl, err := procs.StartCluster(ctx, b.causeway, dir, procs.ClusterConfig{Edges: p.Edges, Sequencers: p.Sequencers, Rollup: true, Env: env})
	if err != nil {
		return fail(fmt.Errorf("start: %w", err))
	}
	defer cl.Stop(20 * time.Second)
	heap := func() float64 {
		var sum int64
		for _, a := range cl.SeqAdmin {
			if h, err := procs.HeapInuse(a); err == nil {
				sum += h
			}
		}
		return float64(sum) / (1 << 20)
	}
	p.SeqHeapBaseMiB = heap()
	out := filepath.Join(*outDir, p.File)
	_ = os.Remove(out)
	sh := shape{groups: p.Groups, members: p.Members, warmup: *scWarmup, duration: *scDuration}
	args := append(loadgenArgs(cl.URLs, cl.Secret, sh, *scRate, out), "-label", "causeway-split",
		"-pids", cl.PIDs(), "-metrics", strings.Join(cl.Metrics, ","), "-kafka", cl.Brokers)
	if p.ReadEvery > 0 {
		args = append(args, "-read-every", fmt.Sprint(p.ReadEvery))
	}
	r, err := readLoadgen(ctx, b, name, args, out)
	if err != nil {
		return fail(err)
	}
	p.SeqHeapEndMiB = heap()
	p.SeqGroups = procs.ScrapeMetrics(cl.SeqAdmin...)["causeway_sequencer_groups"]
	p.judge(r)
	return p
}

// judge fills the point's figures from loadgen's report and checks that
// Kafka traffic per message follows the edges holding members.
func (p *ScalePoint) judge(r *loadgenReport) {
	dur := scDuration.Seconds()
	p.Delivered, p.DeliveredFraction, p.SentMsgsPerSec = r.DeliveredPerSec, r.DeliveredPerSec/p.Offered, r.SentMsgsPerSec
	p.LatencyMs = r.LatencyMs
	p.Lost, p.Duplicates, p.Gaps, p.SendErrors, p.Disconnects = r.Lost, r.Duplicates, r.Gaps, r.SendErrors, r.Disconnects
	p.ReadsPerSec = r.ReadsPerSec
	deliveredK := r.DeliveredPerSec * dur / 1000
	per1000 := func(cores float64) float64 {
		if deliveredK == 0 {
			return 0
		}
		return cores * dur / deliveredK
	}
	roles := map[string]*RoleUsage{}
	var cluster float64
	for _, u := range r.Processes {
		ro := roleOf(u.Name)
		if roles[ro] == nil {
			roles[ro] = &RoleUsage{Role: ro}
		}
		x := roles[ro]
		x.Procs++
		x.Cores += u.CPUCores
		x.RSSMiB += u.RSSMiBEnd
		x.MaxProcCores = math.Max(x.MaxProcCores, u.CPUCores)
		cluster += u.CPUCores
	}
	roles["generator"] = &RoleUsage{Role: "generator", Procs: 1, Cores: r.CPUCores, MaxProcCores: r.CPUCores}
	for _, ro := range roleOrder {
		if x := roles[ro]; x != nil {
			x.CPUPer1000 = per1000(x.Cores)
			p.Roles = append(p.Roles, *x)
		}
	}
	p.IRQCores = r.IRQCPUCores
	p.ForeignCores = math.Max(0, r.OtherCPUCores-cluster-r.IRQCPUCores)

	c := r.ClusterPerSec
	p.SeqTxns = (c[`causeway_sequencer_transactions_total{outcome="committed"}`] + c[`causeway_sequencer_transactions_total{outcome="aborted"}`] +
		c[`causeway_sequencer_transactions_total{outcome="error"}`]) * dur
	if p.SeqTxns > 0 {
		p.SeqRecordsPerTxn = c["causeway_sequencer_records_total"] * dur / p.SeqTxns
	}

	if p.Lost > 0 || p.Duplicates > 0 || p.Gaps > 0 {
		p.Failures = append(p.Failures, fmt.Sprintf("lost %d, duplicates %d, gaps %d", p.Lost, p.Duplicates, p.Gaps))
	}
	for _, f := range r.Failures {
		if strings.HasPrefix(f, "counting Kafka records") || strings.Contains(f, "read errors") {
			p.Failures = append(p.Failures, f)
		}
	}
	k := r.Kafka
	p.Kafka = k
	if k == nil || k.Messages == 0 {
		p.Failures = append(p.Failures, "no Kafka count (no group-log sends in the window)")
		return
	}
	msgs := float64(k.Messages)
	for _, t := range k.Topics {
		o, rec, m, by := k.Per(t)
		p.Topics = append(p.Topics, TopicPer{Role: t.Role, Offsets: o, Records: rec, Markers: m, Bytes: by})
	}
	p.RowsPerMessage = map[string]float64{}
	for tb, n := range k.Rows {
		p.RowsPerMessage[tb] = float64(n) / msgs
	}
	d := k.Find(kafkacount.RoleDeliveries)
	g := k.Find(kafkacount.RoleGroups)
	p.MsgDeliveriesPerMessage = float64(k.MsgDeliveries) / msgs
	p.OtherDeliveriesPerMessage = float64(d.Records-k.MsgDeliveries) / msgs
	p.HeartbeatsPerMessage = float64(g.Kinds["heartbeat"]) / msgs
	if k.MsgDeliveries > 0 {
		p.RecipientsPerRecord = float64(k.Recipients) / float64(k.MsgDeliveries)
	}

	// The checks (issue 8: Kafka traffic per message grows with the edges
	// holding members, not with group size), each overhead accounted:
	h := int64(p.EdgesHolding)
	// 1. exact: no message took more delivery records than edges holding
	//    members (one per edge, whatever the group size);
	if k.MaxDeliveriesPerMessage > h {
		p.Failures = append(p.Failures, fmt.Sprintf("a message took %d delivery records, more than the %d edges holding members", k.MaxDeliveriesPerMessage, h))
	} else {
		p.Checks = append(p.Checks, fmt.Sprintf("max delivery records for one message %d <= %d edges holding members", k.MaxDeliveriesPerMessage, h))
	}
	// 2. per message over the window: msg delivery records <= edges
	//    holding members x (messages + slack for the window's two edges:
	//    up to one message per group in flight at each, plus 2%);
	slack := 2*float64(p.Groups) + 0.02*msgs
	if bound := float64(h) * (msgs + slack); float64(k.MsgDeliveries) > bound {
		p.Failures = append(p.Failures, fmt.Sprintf("%d msg delivery records for %d messages: %.2f per message, over %d edges holding members (bound %.0f with the window-edge slack)",
			k.MsgDeliveries, k.Messages, p.MsgDeliveriesPerMessage, h, bound))
	} else {
		p.Checks = append(p.Checks, fmt.Sprintf("msg delivery records per message %.3f <= %d edges holding members (+%.1f%% window-edge slack)", p.MsgDeliveriesPerMessage, h, 100*slack/msgs))
	}
	// 3. the rest of the deliveries topic is accounted for: other delivery
	//    records are counted by kind (replies, member events, presence:
	//    OtherDeliveriesPerMessage), and its control markers are at most
	//    one per sequencer transaction and delivery slot in use. The
	//    transactions are counted in Kafka itself: the distinct (producer
	//    ID, epoch) of the markers (the epoch is bumped per transaction).
	slots := map[int32]bool{}
	for i := 1; i <= p.Edges; i++ {
		slots[pipeline.PartitionFor(fmt.Sprintf("edge-%d", i), pipeline.DefaultLayout().DeliveryPartitions)] = true
	}
	p.DeliverySlots = len(slots)
	p.DeliveryMarkerBound = float64(d.MarkerTxns) * float64(len(slots))
	if float64(d.Markers) > p.DeliveryMarkerBound {
		p.Failures = append(p.Failures, fmt.Sprintf("%d control markers in the deliveries topic, over %d transactions x %d delivery slots in use", d.Markers, d.MarkerTxns, len(slots)))
	} else {
		p.Checks = append(p.Checks, fmt.Sprintf("deliveries control markers %d <= %d transactions x %d delivery slots in use", d.Markers, d.MarkerTxns, len(slots)))
	}
	if d.AbortMarkers > 0 {
		p.Checks = append(p.Checks, fmt.Sprintf("note: %d aborted transactions' markers in the deliveries topic (their records are counted too)", d.AbortMarkers))
	}
}
