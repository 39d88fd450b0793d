// Command loadgen is Causeway's load generator: G groups of S members, one
// WebSocket per member, a fixed-rate publisher per group, and end-to-end
// latency from each message's intended send time to its receipt by every
// member (coordinated-omission aware). See benchmarks/README.md.
//
// It either starts an in-process cluster (embedded broker, sequencer, N
// edges; the default) or drives an existing one given -url and -secret.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/causeway/causeway/benchmarks/internal/machine"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/causeway/causeway/benchmarks/internal/kafkacount"
	"github.com/causeway/causeway/benchmarks/internal/procs"
	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
	"github.com/causeway/causeway/pipeline/devcluster"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var (
	groups    = flag.Int("groups", 10, "number of groups")
	members   = flag.Int("members", 100, "members per group; each member is its own connection")
	senders   = flag.Int("senders", 1, "publishing members per group (the group's first members); they share -rate")
	rate      = flag.Float64("rate", 50, "messages per second per group, all of its senders together")
	bodyBytes = flag.Int("body-bytes", 200, "size of each message body (a JSON string) in bytes; at least 24")
	duration  = flag.Duration("duration", 20*time.Second, "measured publishing time")
	warmup    = flag.Duration("warmup", 3*time.Second, "publishing time before the measurement starts (not counted)")
	drain     = flag.Duration("drain", 10*time.Second, "how long to wait after the last send for outstanding deliveries")
	inflight  = flag.Int("inflight", 1024, "maximum unacknowledged sends per sender")
	sendTO    = flag.Duration("send-timeout", 10*time.Second, "timeout of one send (until its ack)")

	edges    = flag.Int("edges", 2, "edges of the in-process cluster (ignored with -url)")
	urls     = flag.String("url", "", "comma-separated edge WebSocket URLs (ws://host:port/v1/ws) of an existing cluster; empty starts one in-process")
	secret   = flag.String("secret", "", "HS256 secret to mint tokens (required with -url; in-process default: a random one)")
	prefix   = flag.String("prefix", "", "group and user ID prefix; groups are bench-<prefix>-g<i> (default: random per run)")
	eventBuf = flag.Int("event-buffer", 256, "capacity of each client's event channel (the reader drains it continuously)")
	dialPar  = flag.Int("dial-concurrency", 64, "connections dialled, and joins/subscribes outstanding, at once")

	out        = flag.String("out", "benchmarks/results/latest.json", "write the JSON report here (empty: do not write)")
	cpuProfile = flag.String("cpuprofile", "", "write a CPU profile of the measured window to this file")
	progress   = flag.Duration("progress", time.Second, "interval of progress lines (0: none)")
	verbose    = flag.Bool("v", false, "show the cluster's info logs")
	quick      = flag.Bool("quick", false, "smoke test: 2 groups x 10 members, 20 msgs/s, 1s warmup, 5s (explicit flags win)")
	check      = flag.Bool("check", true, "exit 1 if a delivery is lost, duplicated or out of order, a send fails or a member is disconnected")
	maxP99     = flag.Duration("max-p99", 0, "with -check, also exit 1 if p99 latency exceeds this (0: no latency check)")
	withRollup = flag.Bool("rollup", true, "in-process cluster: run the rollup (read receipts) too, as `causeway dev` does; false leaves it out")
	serverPID  = flag.Int("pid", 0, "PID of the server process on this machine (causeway dev, the floor): its CPU and RSS during the window go into the report")
	label      = flag.String("label", "", "name of the target (e.g. causeway, floor), recorded in the report")
	pids       = flag.String("pids", "", "name=pid,... of the cluster's processes on this machine (a split cluster): each one's CPU and RSS during the window go into the report (processes)")
	metricsURL = flag.String("metrics", "", "comma-separated http://host:port of other /metrics to scrape with the edges' (sequencers, rollup)")
	readEvery  = flag.Int("read-every", 0, "every member sends `read` with the seq of every Nth message it receives (0: no reads): read receipts for the rollup")
	kafka      = flag.String("kafka", "", "the cluster's Kafka brokers: count what each topic took during the window (high-watermark deltas, read back by kind) into the report (kafka)")
)

// member is one connection: a user that joined one group and subscribed.
type member struct {
	group, idx int
	user       string
	c          *client.Client
	shard      *shard

	// Written by the member's reader goroutine only.
	lastSeq    uint64
	subscribed bool
	dups, gaps int64
	measured   int64 // deliveries of measured messages
	unexpected int64 // malformed bodies
	live       atomic.Bool
	// reads carries the seq to mark read (-read-every) to the member's
	// reader-of-reads goroutine, coalesced: only the latest waits.
	reads chan uint64
}

// shard is a slice of the latency histogram; members record into
// shard[idx % n] so readers rarely contend.
type shard struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
	// up and down split h at the event's "ts" (the sender's edge clock,
	// whole milliseconds): intended send -> ts, ts -> member receive.
	up, down *hdrhistogram.Histogram
}

// Latencies are recorded in microseconds, 1 us .. 10 min, 3 digits.
func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3)
}

type run struct {
	groupIDs []string
	members  []*member

	// Unix nanos; set before any sender starts.
	measureStart, measureEnd atomic.Int64
	stopping                 atomic.Bool

	delivered   atomic.Int64 // bench msg deliveries received (any time)
	inWindow    atomic.Int64 // deliveries received during the measured window
	sent        atomic.Int64 // sends acknowledged (measured messages only)
	sentAll     atomic.Int64 // sends issued (any)
	reads       atomic.Int64 // reads acked (any time)
	readsWin    atomic.Int64 // reads acked during the measured window
	readErrs    atomic.Int64
	sendErrs    atomic.Int64
	outstanding atomic.Int64
	disconnects atomic.Int64
	intervalMax atomic.Int64 // largest latency (us) since the last progress line

	ackMu  sync.Mutex
	ackH   *hdrhistogram.Histogram
	errMu  sync.Mutex
	errMsg map[string]int
}

// Report is the JSON written to -out.
type Report struct {
	Time    time.Time `json:"time"`
	Mode    string    `json:"mode"`
	Target  string    `json:"target,omitempty"`
	Command string    `json:"command"`
	Machine struct {
		CPUs       int    `json:"cpus"`
		GOMAXPROCS int    `json:"gomaxprocs"`
		CPUModel   string `json:"cpu_model"`
		GoVersion  string `json:"go_version"`
		MemTotal   string `json:"mem_total"`
	} `json:"machine"`
	Config struct {
		Groups      int     `json:"groups"`
		Members     int     `json:"members"`
		Senders     int     `json:"senders_per_group"`
		Rate        float64 `json:"rate_per_group"`
		BodyBytes   int     `json:"body_bytes"`
		Edges       int     `json:"edges"`
		DurationSec float64 `json:"duration_sec"`
		WarmupSec   float64 `json:"warmup_sec"`
	} `json:"config"`
	OfferedDeliveriesPerSec float64        `json:"offered_deliveries_per_sec"`
	SentMsgsPerSec          float64        `json:"sent_msgs_per_sec"`
	DeliveredPerSec         float64        `json:"delivered_per_sec"`
	Sent                    int64          `json:"sent"`
	ExpectedDeliveries      int64          `json:"expected_deliveries"`
	ReceivedDeliveries      int64          `json:"received_deliveries"`
	Lost                    int64          `json:"lost"`
	Duplicates              int64          `json:"duplicates"`
	Gaps                    int64          `json:"gaps"`
	SendErrors              int64          `json:"send_errors"`
	SendErrorKinds          map[string]int `json:"send_error_kinds,omitempty"`
	Disconnects             int64          `json:"disconnects"`
	// Reads: read frames acked (-read-every), ReadsPerSec those acked
	// during the window per second, ReadErrors failed ones.
	Reads        int64              `json:"reads,omitempty"`
	ReadsPerSec  float64            `json:"reads_per_sec,omitempty"`
	ReadErrors   int64              `json:"read_errors,omitempty"`
	LatencyMs    map[string]float64 `json:"latency_ms"`
	AckLatencyMs map[string]float64 `json:"ack_latency_ms"`
	// LatencyUpMs and LatencyDownMs split LatencyMs at the event's ts,
	// stamped by the sender's edge in whole milliseconds (so each side
	// is off by up to 1 ms): up is the sender's side (intended send ->
	// edge read it), down the pipeline, fan-out and the member's read.
	LatencyUpMs             map[string]float64 `json:"latency_up_ms,omitempty"`
	LatencyDownMs           map[string]float64 `json:"latency_down_ms,omitempty"`
	CPUSeconds              float64            `json:"cpu_seconds"`
	CPUCores                float64            `json:"cpu_cores"`
	CPUSecPer1000Deliveries float64            `json:"cpu_sec_per_1000_deliveries"`
	SetupSec                float64            `json:"setup_sec"`
	Pass                    bool               `json:"pass"`
	Failures                []string           `json:"failures,omitempty"`
	MaxRSSMiB               float64            `json:"max_rss_mib"`
	CPUProfile              string             `json:"cpu_profile,omitempty"`
	ReceivedInWindow        int64              `json:"received_in_window"`
	// ClusterPerSec are the cluster's counters (edges' /metrics summed
	// over edges; the sequencer's when in-process) per second of the
	// measured window.
	ClusterPerSec map[string]float64 `json:"cluster_per_sec,omitempty"`
	RecordsPerTxn float64            `json:"sequencer_records_per_txn,omitempty"`
	// OtherCPUCores is the machine's busy CPU during the window not used
	// by this process (other processes competing with the benchmark).
	OtherCPUCores float64 `json:"other_cpu_cores"`
	// IRQCPUCores is the part of OtherCPUCores spent in interrupts and
	// softirqs (loopback networking, mostly), from /proc/stat.
	IRQCPUCores              float64 `json:"irq_cpu_cores"`
	LoadAvg                  string  `json:"loadavg_at_end"`
	OutstandingSendsAtFinish int64   `json:"outstanding_sends_at_finish"`
	// Server is the -pid process during the measured window.
	Server *ServerUsage `json:"server,omitempty"`
	// Processes are the -pids processes during the window.
	Processes []ServerUsage `json:"processes,omitempty"`
	// Kafka is what the window wrote to each topic (-kafka).
	Kafka *kafkacount.Report `json:"kafka,omitempty"`
}

// ServerUsage is what the server process (-pid, or one of -pids) used
// during the window.
type ServerUsage struct {
	Name                    string  `json:"name,omitempty"`
	PID                     int     `json:"pid"`
	CPUSeconds              float64 `json:"cpu_seconds"`
	CPUCores                float64 `json:"cpu_cores"`
	CPUSecPer1000Deliveries float64 `json:"cpu_sec_per_1000_deliveries"`
	RSSMiBEnd               float64 `json:"rss_mib_end"`
	HWMMiB                  float64 `json:"rss_hwm_mib"`
	Threads                 int     `json:"threads_end"`
}

func main() {
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		def := func(name string, v string) {
			if !set[name] {
				_ = flag.Set(name, v)
			}
		}
		def("groups", "2")
		def("members", "10")
		def("rate", "20")
		def("warmup", "1s")
		def("duration", "5s")
		def("drain", "5s")
		def("out", "benchmarks/results/quick.json")
	}
	if err := validate(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	if *out != "" {
		if err := writeJSON(*out, rep); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
		fmt.Printf("report written to %s\n", *out)
	}
	if *check && !rep.Pass {
		fmt.Printf("FAIL: %s\n", strings.Join(rep.Failures, "; "))
		os.Exit(1)
	}
}

func validate() error {
	switch {
	case *groups < 1 || *members < 1:
		return errors.New("-groups and -members must be at least 1")
	case *senders < 1 || *senders > *members:
		return errors.New("-senders must be between 1 and -members")
	case *rate <= 0:
		return errors.New("-rate must be positive")
	case *bodyBytes < 24:
		return errors.New("-body-bytes must be at least 24")
	case *duration <= 0 || *warmup < 0 || *drain < 0:
		return errors.New("-duration must be positive, -warmup and -drain not negative")
	case *inflight < 1 || *dialPar < 1:
		return errors.New("-inflight and -dial-concurrency must be at least 1")
	case *pids != "" && parsePIDs(*pids) == nil:
		return errors.New("-pids must be name=pid,...")
	case *urls != "" && *secret == "":
		return errors.New("-url needs -secret to mint tokens")
	case *urls == "" && *edges < 1:
		return errors.New("-edges must be at least 1")
	}
	return nil
}

// raiseNoFile lifts the soft open-files limit to the hard limit.
func raiseNoFile() (uint64, error) { return machine.RaiseNoFile() }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func maxRSSMiB() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Maxrss) / 1024 // Linux: KiB
}

func bench(ctx context.Context) (*Report, error) {
	nofile, err := raiseNoFile()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: raising RLIMIT_NOFILE:", err)
	}
	total := *groups * *members
	// Each connection needs one fd here, plus one on the edge when the
	// cluster is in-process.
	need := uint64(total) + 256
	if *urls == "" {
		need += uint64(total)
	}
	if nofile != 0 && need > nofile {
		return nil, fmt.Errorf("%d connections need about %d open files; the limit is %d", total, need, nofile)
	}

	rep := &Report{Time: time.Now().UTC(), Target: *label, Command: strings.Join(os.Args, " ")}
	setupStart := time.Now()

	var edgeURLs []string
	var seqMetrics func() map[string]float64
	sec := []byte(*secret)
	nEdges := *edges
	if *urls != "" {
		rep.Mode = "external"
		for _, u := range strings.Split(*urls, ",") {
			if u = strings.TrimSpace(u); u != "" {
				edgeURLs = append(edgeURLs, u)
			}
		}
		nEdges = len(edgeURLs)
	} else {
		rep.Mode = "in-process"
		if len(sec) == 0 {
			sec = []byte(fmt.Sprintf("bench-%016x", rand.Uint64()))
		}
		sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		cfg := devcluster.DefaultConfig(nEdges, sec)
		if !*withRollup {
			cfg.Rollup.GroupID = "" // devcluster starts no rollup
		}
		seqReg := prometheus.NewRegistry()
		cfg.Sequencer.Registerer = seqReg
		seqMetrics = func() map[string]float64 { return gatherText(promhttp.HandlerFor(seqReg, promhttp.HandlerOpts{})) }
		cl, err := devcluster.Start(sctx, cfg)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("start cluster: %w", err)
		}
		defer func() {
			if err := cl.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "loadgen: cluster close:", err)
			}
		}()
		for i := range cl.Edges {
			edgeURLs = append(edgeURLs, cl.URL(i))
		}
	}
	fmt.Printf("loadgen: %s cluster, %d edge(s); %d groups x %d members = %d connections; %.4g msgs/s per group, %d-byte bodies\n",
		rep.Mode, nEdges, *groups, *members, total, *rate, *bodyBytes)

	pfx := *prefix
	if pfx == "" {
		pfx = fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	}
	r := &run{ackH: newHist(), errMsg: map[string]int{}}
	for g := 0; g < *groups; g++ {
		r.groupIDs = append(r.groupIDs, fmt.Sprintf("bench-%s-g%d", pfx, g))
	}
	shards := make([]*shard, 64)
	for i := range shards {
		shards[i] = &shard{h: newHist(), up: newHist(), down: newHist()}
	}
	for i := 0; i < total; i++ {
		g, m := i%*groups, i / *groups
		r.members = append(r.members, &member{
			group: g, idx: m,
			user:  fmt.Sprintf("bench-%s-g%d-m%d", pfx, g, m),
			shard: shards[i%len(shards)],
		})
	}
	defer r.closeAll()

	if err := r.connect(ctx, edgeURLs, sec); err != nil {
		return nil, err
	}
	rep.SetupSec = time.Since(setupStart).Seconds()
	fmt.Printf("setup: %d members connected, joined and subscribed in %.1fs\n", total, rep.SetupSec)

	// Publish: warmup, then the measured window.
	t0 := time.Now().Add(50 * time.Millisecond)
	mStart := t0.Add(*warmup)
	mEnd := mStart.Add(*duration)
	r.measureStart.Store(mStart.UnixNano())
	r.measureEnd.Store(mEnd.UnixNano())

	var swg sync.WaitGroup
	sctx, cancelSend := context.WithCancel(ctx)
	defer cancelSend()
	nSenders := *groups * *senders
	for g := 0; g < *groups; g++ {
		for s := 0; s < *senders; s++ {
			m := r.members[s**groups+g] // member s of group g
			phase := time.Duration(float64(time.Second) / *rate * float64(*senders) * float64(g**senders+s) / float64(nSenders))
			swg.Add(1)
			go func() { defer swg.Done(); r.publish(sctx, m, t0.Add(phase), mStart, mEnd) }()
		}
	}

	var cpu0, cpu1, srv0, srv1 time.Duration
	var m0, m1 map[string]float64
	procList := parsePIDs(*pids)
	proc0, proc1 := make([]time.Duration, len(procList)), make([]time.Duration, len(procList))
	var kafka0, kafka1 kafkacount.Offsets
	var kafkaErr error
	var lister *kafkacount.Lister
	if *kafka != "" {
		if lister, kafkaErr = kafkacount.NewLister(*kafka); kafkaErr == nil {
			defer lister.Close()
			_, kafkaErr = lister.EndOffsets(ctx) // connect before the window
		}
	}
	metricBases := httpBases(edgeURLs, *metricsURL)
	var busy0, busy1, irq0, irq1 time.Duration
	var profFile *os.File
	windowDone := make(chan struct{})
	go func() {
		defer close(windowDone)
		sleepUntil(ctx, mStart)
		if *cpuProfile != "" {
			f, err := os.Create(*cpuProfile)
			if err == nil {
				err = pprof.StartCPUProfile(f)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "loadgen: cpu profile:", err)
			} else {
				profFile = f
			}
		}
		cpu0, srv0 = cpuTime(), machine.ProcCPU(*serverPID)
		busy0, irq0 = machine.Busy()
		for i, p := range procList {
			proc0[i] = machine.ProcCPU(p.PID)
		}
		// The same order at both edges: metrics, then the Kafka snapshot.
		m0 = clusterMetrics(metricBases, seqMetrics)
		if lister != nil && kafkaErr == nil {
			kafka0, kafkaErr = lister.EndOffsets(ctx)
		}
		sleepUntil(ctx, mEnd)
		cpu1, srv1 = cpuTime(), machine.ProcCPU(*serverPID)
		busy1, irq1 = machine.Busy()
		for i, p := range procList {
			proc1[i] = machine.ProcCPU(p.PID)
		}
		m1 = clusterMetrics(metricBases, seqMetrics)
		if lister != nil && kafkaErr == nil {
			kafka1, kafkaErr = lister.EndOffsets(ctx)
		}
		if profFile != nil {
			pprof.StopCPUProfile()
			_ = profFile.Close()
		}
	}()
	stopProgress := r.progressLoop(t0, mStart)

	<-windowDone
	swg.Wait() // senders stop at mEnd; their acks may still be outstanding
	stopProgress()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	// Drain: wait for outstanding acks and deliveries.
	deadline := time.Now().Add(*drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if r.outstanding.Load() == 0 && r.received() >= r.sent.Load()*int64(*members) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.stopping.Store(true)
	rep.OutstandingSendsAtFinish = r.outstanding.Load()

	// Results.
	h, up, down := newHist(), newHist(), newHist()
	for _, s := range shards {
		s.mu.Lock()
		h.Merge(s.h)
		up.Merge(s.up)
		down.Merge(s.down)
		s.mu.Unlock()
	}
	var dups, gaps, bad int64
	for _, m := range r.members {
		dups += atomic.LoadInt64(&m.dups)
		gaps += atomic.LoadInt64(&m.gaps)
		bad += atomic.LoadInt64(&m.unexpected)
	}
	dur := duration.Seconds()
	rep.Config.Groups, rep.Config.Members, rep.Config.Senders = *groups, *members, *senders
	rep.Config.Rate, rep.Config.BodyBytes, rep.Config.Edges = *rate, *bodyBytes, nEdges
	rep.Config.DurationSec, rep.Config.WarmupSec = dur, warmup.Seconds()
	rep.Sent = r.sent.Load()
	rep.OfferedDeliveriesPerSec = *rate * float64(*groups) * float64(*members)
	rep.SentMsgsPerSec = float64(rep.Sent) / dur
	rep.ExpectedDeliveries = rep.Sent * int64(*members)
	rep.ReceivedDeliveries = r.received()
	rep.ReceivedInWindow = r.inWindow.Load()
	rep.DeliveredPerSec = float64(rep.ReceivedInWindow) / dur
	rep.Lost = max(0, rep.ExpectedDeliveries-rep.ReceivedDeliveries)
	rep.Duplicates, rep.Gaps = dups, gaps
	rep.SendErrors = r.sendErrs.Load()
	r.errMu.Lock()
	if len(r.errMsg) > 0 {
		rep.SendErrorKinds = r.errMsg
	}
	r.errMu.Unlock()
	rep.Disconnects = r.disconnects.Load()
	rep.Reads, rep.ReadErrors, rep.ReadsPerSec = r.reads.Load(), r.readErrs.Load(), float64(r.readsWin.Load())/dur
	if rep.ReadErrors > 0 {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%d read errors", rep.ReadErrors))
	}
	rep.LatencyMs = quantiles(h)
	rep.LatencyUpMs, rep.LatencyDownMs = quantiles(up), quantiles(down)
	r.ackMu.Lock()
	rep.AckLatencyMs = quantiles(r.ackH)
	r.ackMu.Unlock()
	cpu := cpu1 - cpu0
	rep.CPUSeconds = cpu.Seconds()
	rep.CPUCores = cpu.Seconds() / dur
	if busy0 > 0 && busy1 > 0 {
		rep.OtherCPUCores = max(0, (busy1-busy0-cpu).Seconds()/dur)
		rep.IRQCPUCores = (irq1 - irq0).Seconds() / dur
	}
	rep.LoadAvg = loadAvg()
	if rep.ReceivedInWindow > 0 {
		rep.CPUSecPer1000Deliveries = cpu.Seconds() / (float64(rep.ReceivedInWindow) / 1000)
	}
	if *serverPID > 0 && srv1 > 0 {
		su := usage("", *serverPID, srv1-srv0, dur, rep.ReceivedInWindow)
		rep.Server = &su
	}
	for i, p := range procList {
		rep.Processes = append(rep.Processes, usage(p.Name, p.PID, proc1[i]-proc0[i], dur, rep.ReceivedInWindow))
	}
	if *kafka != "" {
		if kafkaErr == nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			rep.Kafka, kafkaErr = kafkacount.Count(cctx, *kafka, kafka0, kafka1)
			cancel()
		}
		if kafkaErr != nil {
			rep.Failures = append(rep.Failures, "counting Kafka records: "+kafkaErr.Error())
		}
	}
	rep.MaxRSSMiB = maxRSSMiB()
	rep.ClusterPerSec = map[string]float64{}
	for k, v := range m1 {
		if d := v - m0[k]; d != 0 {
			rep.ClusterPerSec[k] = d / dur
		}
	}
	if tx := rep.ClusterPerSec[`causeway_sequencer_transactions_total{outcome="committed"}`]; tx > 0 {
		rep.RecordsPerTxn = rep.ClusterPerSec["causeway_sequencer_records_total"] / tx
	}
	if final := clusterMetrics(httpBases(edgeURLs, ""), nil); final["causeway_edge_slow_consumer_disconnects_total"]+final["floor_slow_consumer_disconnects_total"] > 0 {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%.0f slow-consumer disconnects on the edges",
			final["causeway_edge_slow_consumer_disconnects_total"]+final["floor_slow_consumer_disconnects_total"]))
	}
	rep.CPUProfile = *cpuProfile
	fillMachine(rep)

	if rep.Lost > 0 {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%d deliveries lost", rep.Lost))
	}
	if rep.ReceivedDeliveries == 0 {
		rep.Failures = append(rep.Failures, "nothing delivered")
	}
	if dups > 0 || gaps > 0 {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%d duplicate and %d out-of-order/gap events", dups, gaps))
	}
	if bad > 0 {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%d messages with unreadable bodies", bad))
	}
	if rep.SendErrors > 0 {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%d send errors", rep.SendErrors))
	}
	if rep.Disconnects > 0 {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%d members disconnected", rep.Disconnects))
	}
	if *maxP99 > 0 && rep.LatencyMs["p99"] > float64(*maxP99)/float64(time.Millisecond) {
		rep.Failures = append(rep.Failures, fmt.Sprintf("p99 %.1f ms over -max-p99 %s", rep.LatencyMs["p99"], *maxP99))
	}
	rep.Pass = len(rep.Failures) == 0
	printSummary(rep)
	return rep, nil
}

func (r *run) received() int64 {
	var n int64
	for _, m := range r.members {
		n += atomic.LoadInt64(&m.measured)
	}
	return n
}

func sleepUntil(ctx context.Context, t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-tm.C:
	}
}

// connect dials every member (round-robin over the edges), starts its
// reader, then joins and subscribes it.
func (r *run) connect(ctx context.Context, urls []string, secret []byte) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, *dialPar)
	var wg sync.WaitGroup
	for _, m := range r.members {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		// Round-robin within the group, so every group spans the edges.
		url := urls[(m.idx+m.group)%len(urls)]
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := r.setup(ctx, m, url, secret); err != nil {
				cancel(fmt.Errorf("member %s: %w", m.user, err))
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}

func (r *run) setup(ctx context.Context, m *member, url string, secret []byte) error {
	tok, err := edge.Mint(secret, m.user, []string{"bench-*"}, 24*time.Hour, time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	m.live.Store(true)
	c, err := client.Dial(ctx, url, tok, &client.Options{EventBuffer: *eventBuf, Tap: func(line []byte) bool { return r.tap(m, line) }})
	if err != nil {
		return err
	}
	m.c = c
	go r.read(m)
	group := r.groupIDs[m.group]
	if *readEvery > 0 {
		m.reads = make(chan uint64, 1)
		go r.markRead(m, group)
	}
	if err := c.Join(ctx, group); err != nil {
		return fmt.Errorf("join %s: %w", group, err)
	}
	if _, err := c.Subscribe(ctx, group, nil); err != nil {
		return fmt.Errorf("subscribe %s: %w", group, err)
	}
	return nil
}

// tap runs on the member's client reader goroutine for every frame: it
// checks seq order of timeline events and records the latency of msg
// frames without decoding them (the edge writes "type" first and "seq"
// before "body"). Everything but msg frames also goes on to Events.
func (r *run) tap(m *member, line []byte) bool {
	now := time.Now().UnixNano()
	isMsg := bytes.HasPrefix(line, []byte(`{"type":"msg"`))
	switch {
	case bytes.HasPrefix(line, []byte(`{"type":"subscribed"`)):
		m.lastSeq, m.subscribed = fieldUint(line, `"seq":`), true
		return false
	case isMsg, bytes.HasPrefix(line, []byte(`{"type":"member"`)):
	default:
		return false
	}
	if seq := fieldUint(line, `"seq":`); m.subscribed && seq != 0 {
		switch {
		case seq <= m.lastSeq:
			atomic.AddInt64(&m.dups, 1)
			return isMsg
		case seq != m.lastSeq+1:
			atomic.AddInt64(&m.gaps, 1)
		}
		m.lastSeq = seq
	}
	if !isMsg {
		return false
	}
	if m.reads != nil && m.lastSeq%uint64(*readEvery) == 0 {
		select { // coalesce: a newer seq replaces one not sent yet
		case <-m.reads:
		default:
		}
		select {
		case m.reads <- m.lastSeq:
		default:
		}
	}
	i := bytes.Index(line, []byte(`"body":`))
	if i < 0 {
		atomic.AddInt64(&m.unexpected, 1)
		return true
	}
	sent, ok := parseBody(line[i+len(`"body":`):])
	if !ok {
		atomic.AddInt64(&m.unexpected, 1)
		return true
	}
	r.delivered.Add(1)
	ms, me := r.measureStart.Load(), r.measureEnd.Load()
	if now >= ms && now < me {
		r.inWindow.Add(1)
	}
	if sent < ms || sent >= me {
		return true // warmup message
	}
	atomic.AddInt64(&m.measured, 1)
	lat := max((now-sent)/1000, 1)
	for cur := r.intervalMax.Load(); lat > cur && !r.intervalMax.CompareAndSwap(cur, lat); cur = r.intervalMax.Load() {
	}
	// Recorded at once (not batched) so the summary never misses a
	// sample still held by a reader; shards keep the lock uncontended.
	ts := int64(fieldUint(line, `"ts":`)) * int64(time.Millisecond)
	m.shard.mu.Lock()
	_ = m.shard.h.RecordValue(lat)
	if ts > 0 {
		_ = m.shard.up.RecordValue(max((ts-sent)/1000, 1))
		_ = m.shard.down.RecordValue(max((now-ts)/1000, 1))
	}
	m.shard.mu.Unlock()
	return true
}

// fieldUint parses the unsigned number after key in line (0 if absent).
func fieldUint(line []byte, key string) uint64 {
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return 0
	}
	var v uint64
	for _, c := range line[i+len(key):] {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + uint64(c-'0')
	}
	return v
}

// markRead sends `read` for the seqs tap hands it (-read-every), one at
// a time, until the connection ends.
func (r *run) markRead(m *member, group string) {
	for {
		select {
		case seq := <-m.reads:
			ctx, cancel := context.WithTimeout(context.Background(), *sendTO)
			err := m.c.Read(ctx, group, seq)
			cancel()
			if err != nil {
				if !r.stopping.Load() {
					r.readErrs.Add(1)
				}
				continue
			}
			r.reads.Add(1)
			if now := time.Now().UnixNano(); now >= r.measureStart.Load() && now < r.measureEnd.Load() {
				r.readsWin.Add(1)
			}
		case <-m.c.Done():
			return
		}
	}
}

// read drains the member's remaining events (everything tap passes on)
// and notices the disconnect.
func (r *run) read(m *member) {
	for range m.c.Events() {
	}
	<-m.c.Done()
	m.live.Store(false)
	if !r.stopping.Load() {
		r.disconnects.Add(1)
		fmt.Fprintf(os.Stderr, "loadgen: member %s disconnected: %v\n", m.user, m.c.Err())
	}
}

// makeBody is a JSON string of exactly n bytes: the intended send time in
// Unix nanos, a space, then padding.
func makeBody(intended int64, n int) json.RawMessage {
	b := make([]byte, 0, n)
	b = append(b, '"')
	b = strconv.AppendInt(b, intended, 10)
	b = append(b, ' ')
	for len(b) < n-1 {
		b = append(b, 'x')
	}
	return append(b, '"')
}

func parseBody(b []byte) (int64, bool) {
	if len(b) < 3 || b[0] != '"' {
		return 0, false
	}
	var v int64
	i := 1
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		v = v*10 + int64(b[i]-'0')
	}
	return v, i > 1 && i < len(b) && b[i] == ' '
}

// publish sends on a fixed schedule from start until end, never waiting for
// an ack before the next send (at most -inflight outstanding). Sends that
// fall behind schedule keep their intended time, so the delay counts.
func (r *run) publish(ctx context.Context, m *member, start, mStart, mEnd time.Time) {
	interval := time.Duration(float64(time.Second) * float64(*senders) / *rate)
	sem := make(chan struct{}, *inflight)
	var wg sync.WaitGroup
	defer wg.Wait()
	group := r.groupIDs[m.group]
	for k := 0; ; k++ {
		intended := start.Add(time.Duration(k) * interval)
		if !intended.Before(mEnd) || ctx.Err() != nil {
			return
		}
		sleepUntil(ctx, intended)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		measured := !intended.Before(mStart)
		body := makeBody(intended.UnixNano(), *bodyBytes)
		id := "c" + strconv.Itoa(k)
		r.outstanding.Add(1)
		r.sentAll.Add(1)
		wg.Add(1)
		go func() {
			defer func() { <-sem; r.outstanding.Add(-1); wg.Done() }()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *sendTO)
			defer cancel()
			_, err := m.c.Send(sctx, group, id, body)
			if err != nil {
				r.sendErrs.Add(1)
				r.errMu.Lock()
				r.errMsg[errKind(err)]++
				r.errMu.Unlock()
				return
			}
			if measured {
				r.sent.Add(1)
				lat := max(time.Since(intended).Microseconds(), 1)
				r.ackMu.Lock()
				_ = r.ackH.RecordValue(lat)
				r.ackMu.Unlock()
			}
		}()
	}
}

func errKind(err error) string {
	var ce *client.Error
	switch {
	case errors.As(err, &ce):
		return ce.Code
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	default:
		s := err.Error()
		if len(s) > 60 {
			s = s[:60]
		}
		return s
	}
}

// progressLoop prints one line per -progress interval; the returned
// function stops it.
func (r *run) progressLoop(t0, mStart time.Time) func() {
	if *progress <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(*progress)
		defer t.Stop()
		lastSent, lastDel, last := int64(0), int64(0), time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				s, d := r.sentAll.Load(), r.delivered.Load()
				el := now.Sub(last).Seconds()
				phase := "warmup"
				if !now.Before(mStart) {
					phase = "measure"
				}
				fmt.Printf("%6.1fs %-7s sent %7.0f/s  delivered %8.0f/s  unacked %5d  errors %d  max latency %6.1f ms\n",
					now.Sub(t0).Seconds(), phase, float64(s-lastSent)/el, float64(d-lastDel)/el,
					r.outstanding.Load(), r.sendErrs.Load(), float64(r.intervalMax.Swap(0))/1000)
				lastSent, lastDel, last = s, d, now
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func (r *run) closeAll() {
	r.stopping.Store(true)
	sem := make(chan struct{}, 128)
	var wg sync.WaitGroup
	for _, m := range r.members {
		if m.c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			_ = m.c.Close()
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		fmt.Fprintln(os.Stderr, "loadgen: some connections did not close within 15s")
	}
}

func quantiles(h *hdrhistogram.Histogram) map[string]float64 {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	if h.TotalCount() == 0 {
		return map[string]float64{"count": 0}
	}
	return map[string]float64{
		"count": float64(h.TotalCount()),
		"min":   ms(h.Min()),
		"mean":  h.Mean() / 1000,
		"p50":   ms(h.ValueAtQuantile(50)),
		"p90":   ms(h.ValueAtQuantile(90)),
		"p99":   ms(h.ValueAtQuantile(99)),
		"p999":  ms(h.ValueAtQuantile(99.9)),
		"max":   ms(h.Max()),
	}
}

func fillMachine(rep *Report) {
	rep.Machine.CPUs = runtime.NumCPU()
	rep.Machine.GOMAXPROCS = runtime.GOMAXPROCS(0)
	rep.Machine.GoVersion = runtime.Version()
	rep.Machine.CPUModel = machine.CPUModel()
	rep.Machine.MemTotal = machine.MemTotal()
}

func printSummary(rep *Report) {
	l := rep.LatencyMs
	a := rep.AckLatencyMs
	fmt.Printf(`
== loadgen summary (%s, %d edge(s), %d CPUs, %s)
groups x members     %d x %d (%d connections), %d sender(s)/group, %.4g msgs/s/group, %d-byte bodies
measured             %.0fs after %.0fs warmup
offered deliveries/s %.0f
sent msgs/s          %.1f  (%d acked)
delivered/s          %.0f  (received during the window)
deliveries           expected %d, received %d, lost %d, duplicates %d, gaps %d
send errors          %d%s
disconnects          %d
latency (ms)         p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  (intended send -> member receive, %0.f samples)
  split at edge ts   sender -> edge p50 %.2f p99 %.2f; edge -> member p50 %.2f p99 %.2f (ms, edge ts in whole ms)
ack latency (ms)     p50 %.2f  p99 %.2f  max %.2f
cluster              %s
cpu                  %.2f s in window = %.2f cores; %.4f cpu-s per 1,000 deliveries; max RSS %.0f MiB
server (-pid)        %s
other processes      %.2f cores busy during the window (load average %s)%s
result               %s
`,
		rep.Mode, rep.Config.Edges, rep.Machine.CPUs, rep.Machine.GoVersion,
		rep.Config.Groups, rep.Config.Members, rep.Config.Groups*rep.Config.Members, rep.Config.Senders, rep.Config.Rate, rep.Config.BodyBytes,
		rep.Config.DurationSec, rep.Config.WarmupSec,
		rep.OfferedDeliveriesPerSec,
		rep.SentMsgsPerSec, rep.Sent,
		rep.DeliveredPerSec,
		rep.ExpectedDeliveries, rep.ReceivedDeliveries, rep.Lost, rep.Duplicates, rep.Gaps,
		rep.SendErrors, errKinds(rep.SendErrorKinds),
		rep.Disconnects,
		l["p50"], l["p90"], l["p99"], l["p999"], l["max"], l["count"],
		rep.LatencyUpMs["p50"], rep.LatencyUpMs["p99"], rep.LatencyDownMs["p50"], rep.LatencyDownMs["p99"],
		a["p50"], a["p99"], a["max"],
		clusterLine(rep),
		rep.CPUSeconds, rep.CPUCores, rep.CPUSecPer1000Deliveries, rep.MaxRSSMiB,
		serverLine(rep.Server),
		rep.OtherCPUCores, rep.LoadAvg, noisy(rep),
		passText(rep))
	for _, u := range rep.Processes {
		fmt.Printf("process %-12s %s\n", u.Name, serverLine(&u))
	}
	if k := rep.Kafka; k != nil {
		fmt.Printf("kafka                %d messages (group-log sends) in the window; delivery records with the msg: %d (max %d for one message)\n",
			k.Messages, k.MsgDeliveries, k.MaxDeliveriesPerMessage)
		for _, t := range k.Topics {
			o, r, m, b := k.Per(t)
			fmt.Printf("  %-16s per message: %.2f offsets = %.2f records + %.2f markers, %.0f bytes\n", t.Role, o, r, m, b)
		}
	}
}

func serverLine(s *ServerUsage) string {
	if s == nil {
		return "(not measured: no -pid)"
	}
	return fmt.Sprintf("pid %d: %.2f cores; %.4f cpu-s per 1,000 deliveries; RSS %.0f MiB (peak %.0f MiB), %d threads",
		s.PID, s.CPUCores, s.CPUSecPer1000Deliveries, s.RSSMiBEnd, s.HWMMiB, s.Threads)
}

func passText(rep *Report) string {
	if rep.Pass {
		return "PASS (no loss, no duplicates, no gaps, no send errors)"
	}
	return "FAIL: " + strings.Join(rep.Failures, "; ")
}

func writeJSON(path string, rep *Report) error { return machine.WriteJSON(path, rep) }

// usage is what process pid used during the window: cpu over dur seconds
// in which received deliveries arrived, and its memory now.
func usage(name string, pid int, cpu time.Duration, dur float64, received int64) ServerUsage {
	st := machine.ProcStatus(pid)
	u := ServerUsage{Name: name, PID: pid, CPUSeconds: cpu.Seconds(), CPUCores: cpu.Seconds() / dur,
		RSSMiBEnd: float64(st.RSSKiB) / 1024, HWMMiB: float64(st.HWMKiB) / 1024, Threads: st.Threads}
	if received > 0 {
		u.CPUSecPer1000Deliveries = u.CPUSeconds / (float64(received) / 1000)
	}
	return u
}

// httpBases are the http(s)://host:port of the edges' WebSocket URLs,
// then the comma-separated extra ones.
func httpBases(wsURLs []string, extra string) []string {
	var out []string
	for _, u := range wsURLs {
		out = append(out, procs.HTTPBase(u))
	}
	for _, u := range strings.Split(extra, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, strings.TrimSuffix(u, "/"))
		}
	}
	return out
}

// namedPID is one of -pids.
type namedPID struct {
	Name string
	PID  int
}

// parsePIDs parses name=pid,...; nil if malformed.
func parsePIDs(s string) []namedPID {
	var out []namedPID
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, v, ok := strings.Cut(f, "=")
		pid, err := strconv.Atoi(v)
		if !ok || n == "" || err != nil || pid <= 0 {
			return nil
		}
		out = append(out, namedPID{n, pid})
	}
	return out
}

// clusterMetrics scrapes /metrics of every base (the edges', and any
// given with -metrics) and, if given, the in-process sequencer's, summing
// counters by name and labels across processes.
func clusterMetrics(bases []string, seq func() map[string]float64) map[string]float64 {
	sum := procs.ScrapeMetrics(bases...)
	if seq != nil {
		for k, v := range seq() {
			sum[k] += v
		}
	}
	return sum
}

func gatherText(h http.Handler) map[string]float64 {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return procs.ParseMetrics(rec.Body.Bytes())
}

func clusterLine(rep *Report) string {
	c := rep.ClusterPerSec
	if len(c) == 0 {
		return "(no metrics)"
	}
	if f := c["floor_frames_out_total"]; f > 0 {
		return fmt.Sprintf("floor frames out %.0f/s in %.0f writes/s, msgs %.0f/s", f, c["floor_writes_total"], c["floor_msgs_total"])
	}
	s := fmt.Sprintf("edge frames out %.0f/s, edge deliveries consumed %.0f/s",
		c["causeway_edge_frames_out_total"], c["causeway_edge_deliveries_total"])
	if tx := c[`causeway_sequencer_transactions_total{outcome="committed"}`]; tx > 0 {
		s += fmt.Sprintf("; sequencer %.1f txn/s, %.0f records/s (%.1f per txn), %.0f deliveries written/s",
			tx, c["causeway_sequencer_records_total"], rep.RecordsPerTxn, c["causeway_sequencer_deliveries_total"])
	}
	return s
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func noisy(rep *Report) string {
	if rep.OtherCPUCores > 0.2 {
		if rep.Mode == "external" {
			return "\n                     (includes the cluster if it runs on this machine)"
		}
		return "\n                     WARNING: other processes competed for the CPU; these figures understate the system"
	}
	return ""
}

func errKinds(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	return fmt.Sprintf(" %v", m)
}
