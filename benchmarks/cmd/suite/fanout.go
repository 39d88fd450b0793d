package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/causeway/causeway/benchmarks/internal/kafkacount"
	"github.com/causeway/causeway/benchmarks/internal/machine"
	"github.com/causeway/causeway/benchmarks/internal/procs"
)

// Fanout is the fan-out ramp: every point of every target, the saturation
// point of each, and Causeway's figures as ratios to the floor's.
type Fanout struct {
	Config struct {
		Groups, Members, BodyBytes, Edges int
		WarmupSec, DurationSec            float64
		SatP99Ms, SatDelivered            float64
		Rates                             []int
		Targets                           []string
		Causeway                          string
		Floor                             string
	} `json:"config"`
	Points     []Point                `json:"points"`
	Saturation map[string]*Saturation `json:"saturation"`
	Ratios     []Ratio                `json:"ratios_to_floor"`
	// Sizes are the other group sizes (-sizes): -size-conns connections
	// in groups of each size, floor then Causeway at each of -size-rates
	// (offered deliveries/s), a target leaving a size at its first rate
	// whose throughput fails. Their points are in Points too (Members
	// tells them apart), their ratios in Ratios.
	Sizes *SizesConfig `json:"sizes,omitempty"`
	// TargetRuns are every run of each target at 50,000 deliveries/s in
	// the main shape: the ramp's point and -target-repeats more,
	// interleaved floor, Causeway, floor... One run's p99 on a shared
	// 2-core machine varies by tens of percent; TargetMedian is what the
	// targets are judged by.
	TargetRuns   map[string][]TargetRun `json:"target_runs,omitempty"`
	TargetMedian map[string]TargetRun   `json:"target_median,omitempty"`
	Failures     []string               `json:"failures,omitempty"`
}

// TargetRun is one run at the target rate.
type TargetRun struct {
	P50, P99, P999, ServerCores, DeliveredFraction float64
	Lost                                           int64
	File                                           string `json:",omitempty"`
}

// targetRate is issue 8's fan-out target: 50,000 deliveries/s.
const targetRate = 50000

// SizesConfig is how the other group sizes were run.
type SizesConfig struct {
	Sizes       []int   `json:"sizes"`
	Conns       int     `json:"connections"`
	Rates       []int   `json:"rates"`
	WarmupSec   float64 `json:"warmup_sec"`
	DurationSec float64 `json:"duration_sec"`
}

// Point is one loadgen run.
type Point struct {
	Target string `json:"target"`
	// Groups x Members is the point's shape (zero in reports from before
	// the group sizes: the ramp's -groups x -members).
	Groups            int                `json:"groups,omitempty"`
	Members           int                `json:"members,omitempty"`
	Offered           float64            `json:"offered_deliveries_per_sec"`
	RatePerGroup      float64            `json:"rate_per_group"`
	File              string             `json:"file"`
	Delivered         float64            `json:"delivered_per_sec"`
	DeliveredFraction float64            `json:"delivered_fraction"`
	LatencyMs         map[string]float64 `json:"latency_ms"`
	Lost              int64              `json:"lost"`
	SendErrors        int64              `json:"send_errors"`
	Disconnects       int64              `json:"disconnects"`
	ServerCores       float64            `json:"server_cpu_cores"`
	ServerCPUPer1000  float64            `json:"server_cpu_sec_per_1000_deliveries"`
	ServerRSSMiB      float64            `json:"server_rss_mib"`
	GeneratorCores    float64            `json:"generator_cpu_cores"`
	OtherCores        float64            `json:"other_cpu_cores"` // besides the server and the generator: softirq, other processes
	IRQCores          float64            `json:"irq_cpu_cores"`
	// ForeignCores is the CPU other processes (not the server, not the
	// generator, not interrupts) took during the window: other work on a
	// shared machine. Attempts counts runs of this point (a noisy one is
	// run again, -retries); QuietWaitSec is how long the suite waited for
	// the machine to be quiet before the kept attempt.
	ForeignCores   float64 `json:"foreign_cpu_cores"`
	Attempts       int     `json:"attempts"`
	QuietWaitSec   float64 `json:"quiet_wait_sec"`
	Noisy          bool    `json:"noisy,omitempty"`
	FramesPerWrite float64 `json:"frames_per_write,omitempty"`
	// Saturated: a criterion failed (Why); ThroughputFailed: one of the
	// throughput ones (not only the p99 bound).
	Saturated        bool     `json:"saturated"`
	ThroughputFailed bool     `json:"throughput_failed,omitempty"`
	Why              string   `json:"why,omitempty"`
	Failures         []string `json:"loadgen_failures,omitempty"`
	Error            string   `json:"error,omitempty"`
}

// Saturation of one target. The ramp stops for a target at the first
// point whose throughput fails (delivered < -sat-delivered of offered, or
// anything lost, failed or disconnected): Saturated is that offered rate,
// Throughput the highest offered rate below it that passed. Latency alone
// does not stop the ramp, because on this machine p99 is not monotonic in
// the load (a busier server coalesces more frames per write and gets
// cheaper per delivery); Sustained is the highest offered rate that met
// every criterion, the p99 bound included.
type Saturation struct {
	Throughput    float64 `json:"throughput_sustained_offered"`
	Saturated     float64 `json:"saturated_at_offered,omitempty"`
	Why           string  `json:"why,omitempty"`
	Sustained     float64 `json:"sustained_within_p99_bound_offered"`
	PeakDelivered float64 `json:"peak_delivered_per_sec"`
	// Ratios to the floor's figures (Causeway only).
	ThroughputRatio  float64 `json:"throughput_ratio_to_floor,omitempty"`
	SustainedRatio   float64 `json:"sustained_ratio_to_floor,omitempty"`
	PeakRatioToFloor float64 `json:"peak_ratio_to_floor,omitempty"`
	// NotReached: the throughput held at every rate of the ramp; the
	// figures are lower bounds.
	NotReached bool `json:"not_reached,omitempty"`
}

// Ratio is Causeway / floor at one offered rate and group size.
type Ratio struct {
	Members   int     `json:"members,omitempty"`
	Offered   float64 `json:"offered_deliveries_per_sec"`
	Delivered float64 `json:"delivered"`
	P50       float64 `json:"p50"`
	P99       float64 `json:"p99"`
	P999      float64 `json:"p999"`
	ServerCPU float64 `json:"server_cpu_per_delivery"`
}

// loadgenReport is the part of loadgen's JSON the suite reads.
type loadgenReport struct {
	OfferedDeliveriesPerSec float64            `json:"offered_deliveries_per_sec"`
	DeliveredPerSec         float64            `json:"delivered_per_sec"`
	Lost                    int64              `json:"lost"`
	SendErrors              int64              `json:"send_errors"`
	Disconnects             int64              `json:"disconnects"`
	LatencyMs               map[string]float64 `json:"latency_ms"`
	CPUCores                float64            `json:"cpu_cores"`
	OtherCPUCores           float64            `json:"other_cpu_cores"`
	IRQCPUCores             float64            `json:"irq_cpu_cores"`
	Failures                []string           `json:"failures"`
	ClusterPerSec           map[string]float64 `json:"cluster_per_sec"`
	SentMsgsPerSec          float64            `json:"sent_msgs_per_sec"`
	Duplicates              int64              `json:"duplicates"`
	ReadsPerSec             float64            `json:"reads_per_sec"`
	Gaps                    int64              `json:"gaps"`
	Processes               []struct {
		Name                    string  `json:"name"`
		CPUCores                float64 `json:"cpu_cores"`
		CPUSecPer1000Deliveries float64 `json:"cpu_sec_per_1000_deliveries"`
		RSSMiBEnd               float64 `json:"rss_mib_end"`
	} `json:"processes"`
	Kafka  *kafkacount.Report `json:"kafka"`
	Server *struct {
		CPUCores                float64 `json:"cpu_cores"`
		CPUSecPer1000Deliveries float64 `json:"cpu_sec_per_1000_deliveries"`
		RSSMiBEnd               float64 `json:"rss_mib_end"`
	} `json:"server"`
}

func runFanout(ctx context.Context, b *bins, tmp string) (*Fanout, error) {
	rs, err := parseInts(*rates)
	if err != nil {
		return nil, fmt.Errorf("-rates: %w", err)
	}
	f := &Fanout{Saturation: map[string]*Saturation{}}
	c := &f.Config
	c.Groups, c.Members, c.BodyBytes, c.Edges = *groups, *members, *bodyBytes, *edges
	c.WarmupSec, c.DurationSec = warmup.Seconds(), duration.Seconds()
	c.SatP99Ms, c.SatDelivered = float64(*satP99)/float64(time.Millisecond), *satDeliv
	c.Rates = rs
	c.Causeway = fmt.Sprintf("causeway dev --edges %d (own process; embedded broker with its data dir on disk, one sequencer, the rollup; edge abuse limits off)", *edges)
	c.Floor = "benchmarks/cmd/floor (own process)"
	for _, t := range strings.Split(*targets, ",") {
		if t = strings.TrimSpace(t); t != "" {
			if t != "floor" && t != "causeway" {
				return nil, fmt.Errorf("-targets: unknown %q", t)
			}
			c.Targets = append(c.Targets, t)
			f.Saturation[t] = &Saturation{}
		}
	}
	main := shape{groups: *groups, members: *members, warmup: *warmup, duration: *duration}
	done := map[string]bool{}
	for _, r := range rs {
		for _, t := range c.Targets {
			if done[t] {
				continue
			}
			if ctx.Err() != nil {
				return f, ctx.Err()
			}
			p := runQuietPoint(ctx, b, tmp, t, r, main)
			f.Points = append(f.Points, p)
			sat := f.Saturation[t]
			sat.PeakDelivered = math.Max(sat.PeakDelivered, p.Delivered)
			switch {
			case p.ThroughputFailed:
				sat.Saturated, sat.Why = p.Offered, p.Why
				done[t] = true
			case !p.Saturated:
				sat.Throughput, sat.Sustained = p.Offered, p.Offered
			default:
				sat.Throughput = p.Offered
			}
		}
		if len(done) == len(c.Targets) {
			break
		}
	}
	for t, sat := range f.Saturation {
		sat.NotReached = !done[t]
	}
	f.repeatTarget(ctx, b, tmp, main)
	if err := f.runSizes(ctx, b, tmp); err != nil {
		return f, err
	}
	f.computeRatios()
	// The suite fails only when the target rate itself (the first of the
	// ramp at or above 50,000/s) loses or breaks something on Causeway;
	// saturation at higher rates is what the ramp looks for.
	for _, p := range f.Points {
		if p.Target == "causeway" && p.Offered <= 50000 && f.isMain(p) && (p.Error != "" || p.Lost > 0 || p.SendErrors > 0 || p.Disconnects > 0) {
			f.Failures = append(f.Failures, fmt.Sprintf("fanout causeway at %.0f/s: %s", p.Offered, firstNonEmpty(p.Error, strings.Join(p.Failures, "; "))))
		}
		if p.Target == "floor" && p.Error != "" {
			f.Failures = append(f.Failures, fmt.Sprintf("fanout floor at %.0f/s: %s", p.Offered, p.Error))
		}
	}
	return f, nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func satText(p Point) string {
	if p.Error != "" {
		return "  ERROR " + p.Error
	}
	if p.Saturated {
		return "  SATURATED (" + p.Why + ")"
	}
	return ""
}

// shape is a fan-out point's groups x members and its timing; tag
// names a repeated run's files.
type shape struct {
	groups, members  int
	warmup, duration time.Duration
	tag              string
}

// repeatTarget runs every target -target-repeats more times at the target
// rate, interleaved, and keeps each run's figures and the medians.
func (f *Fanout) repeatTarget(ctx context.Context, b *bins, tmp string, main shape) {
	f.TargetRuns = map[string][]TargetRun{}
	add := func(p Point) {
		l := p.LatencyMs
		f.TargetRuns[p.Target] = append(f.TargetRuns[p.Target], TargetRun{P50: l["p50"], P99: l["p99"], P999: l["p999"],
			ServerCores: p.ServerCores, DeliveredFraction: p.DeliveredFraction, Lost: p.Lost, File: p.File})
	}
	for _, p := range f.Points {
		if p.Offered == targetRate && f.isMain(p) && p.Error == "" {
			add(p)
		}
	}
	if len(f.TargetRuns) == 0 {
		return // the ramp did not include the target rate
	}
	for i := 2; i <= *targetRepeats && ctx.Err() == nil; i++ {
		for _, t := range f.Config.Targets {
			sh := main
			sh.tag = fmt.Sprintf("-run%d", i)
			if p := runQuietPoint(ctx, b, tmp, t, targetRate, sh); p.Error == "" {
				add(p)
			}
		}
	}
	f.TargetMedian = map[string]TargetRun{}
	for t, runs := range f.TargetRuns {
		med := func(get func(TargetRun) float64) float64 {
			v := make([]float64, len(runs))
			for i, r := range runs {
				v[i] = get(r)
			}
			sort.Float64s(v)
			if n := len(v); n%2 == 1 {
				return v[n/2]
			} else {
				return (v[n/2-1] + v[n/2]) / 2
			}
		}
		f.TargetMedian[t] = TargetRun{P50: med(func(r TargetRun) float64 { return r.P50 }), P99: med(func(r TargetRun) float64 { return r.P99 }),
			P999: med(func(r TargetRun) float64 { return r.P999 }), ServerCores: med(func(r TargetRun) float64 { return r.ServerCores }),
			DeliveredFraction: med(func(r TargetRun) float64 { return r.DeliveredFraction })}
	}
}

// runQuietPoint runs a point, again while it is noisy (-retries), and
// keeps the quietest attempt.
func runQuietPoint(ctx context.Context, b *bins, tmp, target string, rate int, sh shape) Point {
	p := quietest(ctx, fmt.Sprintf("fanout %-8s offered %7d/s", target, rate),
		func(wait time.Duration) (Point, string, float64) {
			q := runPoint(ctx, b, tmp, target, rate, sh)
			q.QuietWaitSec, q.Noisy = wait.Seconds(), q.ForeignCores > *maxForeign
			return q, q.File, q.ForeignCores
		},
		func(q *Point, attempts int) { q.Attempts = attempts })
	size := ""
	if sh.members != *members {
		size = fmt.Sprintf(" (%d x %d)", sh.groups, sh.members)
	}
	fmt.Printf("  fanout %-8s offered %7.0f/s%s: delivered %7.0f/s (%.3f)  p50 %7.1f  p99 %7.1f  p99.9 %7.1f ms  server %.2f cores (%.4f cpu-s/1k)  gen %.2f  irq %.2f  foreign %.2f%s\n",
		target, p.Offered, size, p.Delivered, p.DeliveredFraction, p.LatencyMs["p50"], p.LatencyMs["p99"], p.LatencyMs["p999"],
		p.ServerCores, p.ServerCPUPer1000, p.GeneratorCores, p.IRQCores, p.ForeignCores, satText(p))
	return p
}

// quietest runs a point after waiting for a quiet machine (run gets the
// wait and returns the point, its report file and the foreign CPU during
// its window), and again while other processes took more than
// -max-foreign cores, up to -retries more times; it keeps the quietest
// attempt (and its files) and records the attempts with setAttempts.
func quietest[P any](ctx context.Context, label string, run func(wait time.Duration) (P, string, float64), setAttempts func(p *P, attempts int)) P {
	var best P
	var bestForeign float64
	var file string
	for a := 1; ; a++ {
		q, f, foreign := run(waitQuiet(ctx))
		if a == 1 || foreign < bestForeign {
			best, bestForeign, file = q, foreign, f
			keepAttempt(file)
		}
		setAttempts(&best, a)
		if foreign <= *maxForeign || a > *retries || ctx.Err() != nil {
			break
		}
		fmt.Printf("  %s: other processes took %.2f cores during the window; running it again\n", label, foreign)
	}
	restoreKept(file)
	return best
}

// loadgenArgs are the flags of one loadgen run against urls: groups x
// members at offered deliveries/s, no -check (the caller judges).
func loadgenArgs(urls []string, secret string, sh shape, offered int, out string) []string {
	perGroup := float64(offered) / float64(sh.groups*sh.members)
	args := []string{"-url", strings.Join(urls, ","), "-secret", secret,
		"-groups", strconv.Itoa(sh.groups), "-members", strconv.Itoa(sh.members), "-body-bytes", strconv.Itoa(*bodyBytes),
		"-rate", strconv.FormatFloat(perGroup, 'f', -1, 64),
		"-warmup", sh.warmup.String(), "-duration", sh.duration.String(), "-drain", drain.String(),
		"-progress", "0", "-check=false", "-out", out}
	if *loadgenArg != "" {
		args = append(args, strings.Fields(*loadgenArg)...)
	}
	return args
}

// readLoadgen runs loadgen (its log in name.log) and reads its report.
func readLoadgen(ctx context.Context, b *bins, name string, args []string, out string) (*loadgenReport, error) {
	rerr := runTool(ctx, name, b.loadgen, args)
	raw, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("loadgen: %v: %s", rerr, procs.Tail(filepath.Join(*outDir, name+".log")))
	}
	var r loadgenReport
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return &r, nil
}

// runPoint starts the target afresh, runs loadgen against it at rate
// deliveries/s and judges the point.
func runPoint(ctx context.Context, b *bins, tmp, target string, rate int, sh shape) Point {
	perGroup := float64(rate) / float64(sh.groups*sh.members)
	p := Point{Target: target, Offered: float64(rate), RatePerGroup: perGroup, Groups: sh.groups, Members: sh.members}
	name := fmt.Sprintf("fanout-%s-%d", target, rate)
	if sh.members != *members {
		name = fmt.Sprintf("fanout-%s-m%d-%d", target, sh.members, rate)
	}
	name += sh.tag
	p.File = name + ".json"
	dir := filepath.Join(tmp, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.Error, p.Saturated, p.ThroughputFailed, p.Why = err.Error(), true, true, "error"
		return p
	}
	var srv *procs.Server
	var err error
	switch target {
	case "floor":
		srv, err = procs.StartFloor(ctx, b.floor, dir, nil)
	default:
		srv, err = procs.StartDev(ctx, b.causeway, dir, *edges, nil)
	}
	if err != nil {
		p.Error, p.Saturated, p.ThroughputFailed, p.Why = "start: "+err.Error(), true, true, "error"
		return p
	}
	defer srv.Stop(20 * time.Second)
	out := filepath.Join(*outDir, p.File)
	_ = os.Remove(out)
	args := append(loadgenArgs(srv.URLs, srv.Secret, sh, rate, out), "-pid", strconv.Itoa(srv.PID()), "-label", target)
	r, err := readLoadgen(ctx, b, name, args, out)
	if err != nil {
		p.Error, p.Saturated, p.ThroughputFailed, p.Why = err.Error(), true, true, "error"
		return p
	}
	p.Delivered = r.DeliveredPerSec
	p.DeliveredFraction = r.DeliveredPerSec / p.Offered
	p.LatencyMs = r.LatencyMs
	p.Lost, p.SendErrors, p.Disconnects, p.Failures = r.Lost, r.SendErrors, r.Disconnects, r.Failures
	p.GeneratorCores = r.CPUCores
	if r.Server != nil {
		p.ServerCores, p.ServerCPUPer1000, p.ServerRSSMiB = r.Server.CPUCores, r.Server.CPUSecPer1000Deliveries, r.Server.RSSMiBEnd
	}
	p.OtherCores = math.Max(0, r.OtherCPUCores-p.ServerCores)
	p.IRQCores = r.IRQCPUCores
	p.ForeignCores = math.Max(0, p.OtherCores-p.IRQCores)
	if w := r.ClusterPerSec["floor_writes_total"]; w > 0 {
		p.FramesPerWrite = r.ClusterPerSec["floor_frames_out_total"] / w
	}
	var why []string
	if p.DeliveredFraction < *satDeliv {
		why = append(why, fmt.Sprintf("delivered %.1f%% of offered", 100*p.DeliveredFraction))
		p.ThroughputFailed = true
	}
	if p.Lost > 0 || p.SendErrors > 0 || p.Disconnects > 0 {
		why = append(why, fmt.Sprintf("lost %d, send errors %d, disconnects %d", p.Lost, p.SendErrors, p.Disconnects))
		p.ThroughputFailed = true
	}
	if p99 := p.LatencyMs["p99"]; p99 > float64(*satP99)/float64(time.Millisecond) {
		why = append(why, fmt.Sprintf("p99 %.0f ms > %s", p99, *satP99))
	}
	if len(why) > 0 {
		p.Saturated, p.Why = true, strings.Join(why, "; ")
	}
	return p
}

// isMain: p is a point of the ramp (-groups x -members), not of -sizes.
func (f *Fanout) isMain(p Point) bool { return p.Members == 0 || p.Members == f.Config.Members }

func (f *Fanout) point(target string, members int, offered float64) *Point {
	for i := range f.Points {
		if f.Points[i].Target == target && f.Points[i].Members == members && f.Points[i].Offered == offered && f.Points[i].Error == "" {
			return &f.Points[i]
		}
	}
	return nil
}

func (f *Fanout) computeRatios() {
	f.Ratios = nil
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	for _, p := range f.Points {
		if p.Target != "causeway" || p.Error != "" {
			continue
		}
		fl := f.point("floor", p.Members, p.Offered)
		if fl == nil {
			continue
		}
		m := p.Members
		if f.isMain(p) {
			m = 0
		}
		f.Ratios = append(f.Ratios, Ratio{
			Members:   m,
			Offered:   p.Offered,
			Delivered: div(p.Delivered, fl.Delivered),
			P50:       div(p.LatencyMs["p50"], fl.LatencyMs["p50"]),
			P99:       div(p.LatencyMs["p99"], fl.LatencyMs["p99"]),
			P999:      div(p.LatencyMs["p999"], fl.LatencyMs["p999"]),
			ServerCPU: div(p.ServerCPUPer1000, fl.ServerCPUPer1000),
		})
	}
	cw, fl := f.Saturation["causeway"], f.Saturation["floor"]
	if cw != nil && fl != nil {
		cw.ThroughputRatio = div(cw.Throughput, fl.Throughput)
		cw.SustainedRatio = div(cw.Sustained, fl.Sustained)
		cw.PeakRatioToFloor = div(cw.PeakDelivered, fl.PeakDelivered)
	}
}

// waitQuiet waits, up to -quiet-wait, until the machine's busy CPU over one
// second is below -max-foreign cores (nothing of the suite's runs between
// points), and returns how long it waited.
func waitQuiet(ctx context.Context) time.Duration {
	start := time.Now()
	for time.Since(start) < *quietWait && ctx.Err() == nil {
		b0, _ := machine.Busy()
		time.Sleep(time.Second)
		b1, _ := machine.Busy()
		if b0 == 0 || (b1-b0).Seconds() < *maxForeign {
			break
		}
	}
	return time.Since(start)
}

// keepAttempt saves the report and log of the attempt of a point that is
// kept, so that they survive the next attempt; restoreKept puts them back.
func keepAttempt(file string) {
	src := filepath.Join(*outDir, file)
	for _, f := range []string{src, strings.TrimSuffix(src, ".json") + ".log"} {
		if b, err := os.ReadFile(f); err == nil {
			_ = os.WriteFile(f+".kept", b, 0o644)
		}
	}
}

// restoreKept puts the kept attempt's files back in place.
func restoreKept(file string) {
	src := filepath.Join(*outDir, file)
	for _, f := range []string{src, strings.TrimSuffix(src, ".json") + ".log"} {
		if b, err := os.ReadFile(f + ".kept"); err == nil {
			_ = os.WriteFile(f, b, 0o644)
			_ = os.Remove(f + ".kept")
		}
	}
}

// runSizes runs the other group sizes (-sizes): -size-conns connections
// in groups of each size, floor then Causeway at each rate of
// -size-rates, a target leaving a size at its first failed throughput.
func (f *Fanout) runSizes(ctx context.Context, b *bins, tmp string) error {
	if strings.TrimSpace(*fsSizes) == "" {
		return nil
	}
	sizes, err := parseInts(*fsSizes)
	if err != nil {
		return fmt.Errorf("-sizes: %w", err)
	}
	rs, err := parseInts(*fsRates)
	if err != nil {
		return fmt.Errorf("-size-rates: %w", err)
	}
	f.Sizes = &SizesConfig{Sizes: sizes, Conns: *fsConns, Rates: rs, WarmupSec: fsWarmup.Seconds(), DurationSec: fsDuration.Seconds()}
	for _, size := range sizes {
		sh := shape{groups: max(1, *fsConns/size), members: size, warmup: *fsWarmup, duration: *fsDuration}
		done := map[string]bool{}
		for _, r := range rs {
			for _, t := range f.Config.Targets {
				if done[t] {
					continue
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				p := runQuietPoint(ctx, b, tmp, t, r, sh)
				f.Points = append(f.Points, p)
				if p.ThroughputFailed {
					done[t] = true
				}
			}
		}
	}
	return nil
}
