package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/causeway/causeway/benchmarks/internal/plots"
	"github.com/causeway/causeway/benchmarks/internal/report"
)

// redraw rewrites summary.md and the plots from dir/suite.json.
func redraw(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "suite.json"))
	if err != nil {
		return err
	}
	var s Suite
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if s.Fanout != nil {
		s.Fanout.computeRatios()
	}
	return writeOutputs(dir, &s)
}

// writeOutputs writes summary.md and the PNG plots of what s holds.
func writeOutputs(dir string, s *Suite) error {
	var md strings.Builder
	var errs []string
	fmt.Fprintf(&md, "# Benchmark suite %s\n\n", s.Time.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&md, "`%s`: %v CPUs (%v), %v, Go %v, wall time %.0f s.\n\n", s.Command, s.Machine["cpus"], s.Machine["cpu_model"], s.Machine["mem_total"], s.Machine["go_version"], s.WallSec)
	if f := s.Fanout; f != nil {
		fanoutMD(&md, f)
		if err := fanoutPlots(dir, f); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(s.Receipts) > 0 {
		var r report.Receipts
		if err := json.Unmarshal(s.Receipts, &r); err != nil {
			errs = append(errs, "receipts: "+err.Error())
		} else {
			receiptsMD(&md, &r)
			if err := receiptsPlot(dir, &r); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(s.Idle) > 0 {
		var r report.Idle
		if err := json.Unmarshal(s.Idle, &r); err != nil {
			errs = append(errs, "idle: "+err.Error())
		} else {
			idleMD(&md, &r)
			if err := idlePlot(dir, &r); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(s.Failures) > 0 {
		fmt.Fprintf(&md, "## Failures\n\n")
		for _, f := range s.Failures {
			fmt.Fprintf(&md, "- %s\n", f)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.md"), []byte(md.String()), 0o644); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("outputs: %s", strings.Join(errs, "; "))
	}
	return nil
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case math.Abs(v) >= 1000:
		s := fmt.Sprintf("%.0f", v)
		var out []byte
		for i := range s {
			if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
				out = append(out, ',')
			}
			out = append(out, s[i])
		}
		return string(out)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func ratio(v float64) string {
	if v == 0 || math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v)
}

func fanoutMD(md *strings.Builder, f *Fanout) {
	c := f.Config
	fmt.Fprintf(md, "## Fan-out ramp\n\n%d groups x %d members, %d-byte bodies, 1 sender per group; each point: target started afresh, %.0f s warmup, %.0f s measured. Saturated: delivered < %.0f%% of offered, or p99 > %.0f ms, or anything lost, failed or disconnected. Causeway: %s. Floor: %s.\n\n",
		c.Groups, c.Members, c.BodyBytes, c.WarmupSec, c.DurationSec, 100*c.SatDelivered, c.SatP99Ms, c.Causeway, c.Floor)
	fmt.Fprintf(md, "CPU in cores during the measured window: the server process, the generator, interrupts and softirqs (loopback networking), and foreign (every other process on the machine: a point with more than 0.15 is run again and the quietest attempt kept; attempts in the last column).\n\n")
	fmt.Fprintf(md, "| target | offered/s | delivered/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | server cores | server CPU-s per 1,000 | generator cores | irq cores | foreign cores | lost | criteria | attempts |\n")
	fmt.Fprintf(md, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n")
	for _, p := range f.Points {
		l := p.LatencyMs
		sat := "met"
		switch {
		case p.ThroughputFailed:
			sat = "**throughput failed**: " + firstNonEmpty(p.Error, p.Why)
		case p.Saturated:
			sat = "**over the p99 bound**: " + p.Why
		}
		fmt.Fprintf(md, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %.4f | %s | %s | %s | %d | %s | %d |\n",
			p.Target, num(p.Offered), num(p.Delivered), num(l["p50"]), num(l["p90"]), num(l["p99"]), num(l["p999"]), num(l["max"]),
			num(p.ServerCores), p.ServerCPUPer1000, num(p.GeneratorCores), num(p.IRQCores), num(p.ForeignCores), p.Lost, sat, p.Attempts)
	}
	fmt.Fprintf(md, "\n### Saturation\n\nThe ramp stops for a target at the first rate whose throughput fails (delivered < %.0f%% of offered, or anything lost, failed or disconnected); a p99 over %.0f ms alone does not stop it.\n\n", 100*c.SatDelivered, c.SatP99Ms)
	fmt.Fprintf(md, "| target | throughput held up to (offered/s) | saturated at | why | highest rate meeting every criterion | over the p99 bound at | peak delivered/s | throughput / floor | every-criterion / floor | peak / floor |\n| --- | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |\n")
	floorOpen := f.Saturation["floor"] != nil && f.Saturation["floor"].NotReached
	for _, t := range c.Targets {
		s := f.Saturation[t]
		if s == nil {
			continue
		}
		at := num(s.Saturated)
		if s.NotReached {
			at = "not reached"
		}
		var over []string
		for _, p := range f.Points {
			if p.Target == t && p.Saturated && !p.ThroughputFailed {
				over = append(over, num(p.Offered))
			}
		}
		tr, pr := ratio(s.ThroughputRatio), ratio(s.PeakRatioToFloor)
		if floorOpen && t != "floor" && tr != "-" {
			tr = "<= " + tr // the floor's own saturation lies beyond the ramp
		}
		fmt.Fprintf(md, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", t, num(s.Throughput), at, s.Why, num(s.Sustained), strings.Join(over, ", "), num(s.PeakDelivered), tr, ratio(s.SustainedRatio), pr)
	}
	if len(f.Ratios) > 0 {
		fmt.Fprintf(md, "\n### Causeway / floor at the same offered rate\n\n| offered/s | delivered | p50 | p99 | p99.9 | server CPU per delivery |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for _, r := range f.Ratios {
			fmt.Fprintf(md, "| %s | %s | %s | %s | %s | %s |\n", num(r.Offered), ratio(r.Delivered), ratio(r.P50), ratio(r.P99), ratio(r.P999), ratio(r.ServerCPU))
		}
	}
	md.WriteString("\n![throughput](fanout-throughput.png)\n\n![latency](fanout-latency.png)\n\n")
}

func fanoutPlots(dir string, f *Fanout) error {
	series := func(t string, y func(Point) float64) (xs, ys []float64) {
		for _, p := range f.Points {
			if p.Target == t && p.Error == "" {
				xs, ys = append(xs, p.Offered), append(ys, y(p))
			}
		}
		return
	}
	var maxX float64
	for _, p := range f.Points {
		maxX = math.Max(maxX, p.Offered)
	}
	th := plots.Chart{Title: "Fan-out throughput (10 groups x 100 members, 200-byte bodies)", XLabel: "offered deliveries/s", YLabel: "delivered deliveries/s", YMin: 0, Headroom: 0.1,
		Lines: []plots.Line{{Name: "offered (ideal)", X: []float64{0, maxX}, Y: []float64{0, maxX}, Color: 6, Dash: 2}}}
	lat := plots.Chart{Title: "Fan-out latency, intended send -> receipt (coordinated omission counted)", XLabel: "offered deliveries/s (log scale)", YLabel: "latency (ms, log scale)", LogX: true, LogY: true, Headroom: 1.3}
	for _, t := range f.Config.Targets {
		i := colorOf(t)
		xs, ys := series(t, func(p Point) float64 { return p.Delivered })
		th.Lines = append(th.Lines, plots.Line{Name: t, X: xs, Y: ys, Color: i, Glyph: i, Points: true})
		for j, q := range []string{"p50", "p99", "p999"} {
			xs, ys := series(t, func(p Point) float64 { return p.LatencyMs[q] })
			name := t + " " + strings.Replace(q, "p999", "p99.9", 1)
			lat.Lines = append(lat.Lines, plots.Line{Name: name, X: xs, Y: ys, Color: i, Dash: j, Glyph: i, Points: true})
		}
	}
	if f.Config.SatP99Ms > 0 && maxX > 0 {
		lat.Lines = append(lat.Lines, plots.Line{Name: fmt.Sprintf("saturation bound (p99 %.0f ms)", f.Config.SatP99Ms), X: []float64{float64(f.Config.Rates[0]), maxX}, Y: []float64{f.Config.SatP99Ms, f.Config.SatP99Ms}, Color: 6, Dash: 2})
	}
	if err := th.Save(filepath.Join(dir, "fanout-throughput.png")); err != nil {
		return err
	}
	return lat.Save(filepath.Join(dir, "fanout-latency.png"))
}

func receiptsMD(md *strings.Builder, r *report.Receipts) {
	c := r.Config
	fmt.Fprintf(md, "## Receipts\n\n%s. One group per size; every member joins, then subscribes; member 0 sends %d messages at %.0f/s; every member sends `read` for every message it receives (the sender too). Rollup: window %s, counts only above %d members, sender only above %d, slow factor %d.\n\n",
		r.Cluster, c.Messages, c.RatePerGroup, c.Window, c.CountsOnlyAbove, c.SenderOnlyAbove, c.SlowFactor)
	fmt.Fprintf(md, "| members N | messages | reads acked | receipts frames | **per message** | naive N*(N-1) per message | naive / Causeway | active s | windows | bound N x windows | all counts final | last read -> final count ms |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n")
	for _, l := range r.Levels {
		fmt.Fprintf(md, "| %d | %d | %d | %d | **%s** | %s | %s | %.1f | %.1f | %s | %v | %s |\n", l.Members, l.Messages, l.Reads, l.ReceiptFrames, num(l.FramesPerMessage),
			num(l.Naive), num(l.NaiveRatio), l.ActiveSec, l.Windows, num(l.LinearBound), l.Complete, num(l.LastReadToFinalMs))
	}
	md.WriteString("\n![receipts](receipts.png)\n\n")
}

func receiptsPlot(dir string, r *report.Receipts) error {
	var xs, cw, naive []float64
	for _, l := range r.Levels {
		xs = append(xs, float64(l.Members))
		cw = append(cw, l.FramesPerMessage)
		naive = append(naive, l.Naive)
	}
	ch := plots.Chart{Title: "Receipt frames per message vs group size", XLabel: "group members N (log)", YLabel: "receipts frames delivered per message (log)", LogX: true, LogY: true, Headroom: 0.3,
		Lines: []plots.Line{
			{Name: "naive: N*(N-1)", X: xs, Y: naive, Color: 3, Dash: 1, Glyph: 3, Points: true},
			{Name: "Causeway (rollup summaries, measured)", X: xs, Y: cw, Color: 0, Glyph: 0, Points: true},
		}}
	return ch.Save(filepath.Join(dir, "receipts.png"))
}

func idleMD(md *strings.Builder, r *report.Idle) {
	fmt.Fprintf(md, "## Idle connections\n\nEach connection: hello, join a group of %d, subscribe; then nothing. Clients in %d process(es) per step on %d 127.0.0.x source addresses; measured %.0f s after each level is reached. Per connection = (level - baseline) / connections.\n\n",
		r.Config.GroupSize, r.Config.Procs, r.Config.Sources, r.Config.SettleSec)
	fmt.Fprintf(md, "| server | connections | setup s | RSS MiB | RSS after GC MiB | **RSS after GC per conn KB** | RSS per conn KB (no forced GC) | heap per conn KB | stacks per conn KB | goroutines | goroutines per conn |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, t := range r.Targets {
		b := t.Baseline
		fmt.Fprintf(md, "| %s (baseline) | 0 | | %.1f | %.1f | | | | | %d | |\n", t.Name, float64(b.RSSKiB)/1024, float64(b.RSSAfterGCKiB)/1024, b.Goroutines)
		for _, l := range t.Levels {
			fmt.Fprintf(md, "| %s | %s | %.1f | %.1f | %.1f | **%.1f** | %.1f | %.1f | %.1f | %d | %.2f |\n", t.Name, num(float64(l.Conns)), l.SetupSec,
				float64(l.RSSKiB)/1024, float64(l.RSSAfterGCKiB)/1024, l.RSSAfterGCPerConnKB, l.RSSPerConnKB, l.HeapPerConnKB, l.StackPerConnKB, l.Goroutines, l.GoroutinesPerConn)
		}
	}
	var fl *report.IdleTarget
	for i := range r.Targets {
		if r.Targets[i].Name == "floor" {
			fl = &r.Targets[i]
		}
	}
	if fl != nil {
		fmt.Fprintf(md, "\n| server / floor | connections | RSS after GC per conn | heap per conn | stacks per conn | goroutines per conn |\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
		for _, t := range r.Targets {
			if t.Name == "floor" {
				continue
			}
			for _, l := range t.Levels {
				for _, f := range fl.Levels {
					if f.Conns != l.Conns {
						continue
					}
					d := func(a, b float64) string {
						if b == 0 {
							return "-"
						}
						return ratio(a / b)
					}
					fmt.Fprintf(md, "| %s | %s | %s | %s | %s | %s |\n", t.Name, num(float64(l.Conns)), d(l.RSSAfterGCPerConnKB, f.RSSAfterGCPerConnKB),
						d(l.HeapPerConnKB, f.HeapPerConnKB), d(l.StackPerConnKB, f.StackPerConnKB), d(l.GoroutinesPerConn, f.GoroutinesPerConn))
				}
			}
		}
	}
	md.WriteString("\n![idle memory](idle-memory.png)\n\n")
}

func idlePlot(dir string, r *report.Idle) error {
	ch := plots.Chart{Title: "Server memory vs idle subscribed connections", XLabel: "connections", YLabel: "RSS above baseline (MiB)", YMin: 0, Headroom: 0.25}
	var maxN float64
	for _, t := range r.Targets {
		for _, l := range t.Levels {
			maxN = math.Max(maxN, float64(l.Conns))
		}
	}
	ch.Lines = append(ch.Lines, plots.Line{Name: "issue 8 target: 16 KB per connection", X: []float64{0, maxN}, Y: []float64{0, maxN * 16 * 1000 / (1 << 20)}, Color: 6, Dash: 2})
	for _, t := range r.Targets {
		i := colorOf(t.Name)
		xs, after, before := []float64{0}, []float64{0}, []float64{0}
		for _, l := range t.Levels {
			xs = append(xs, float64(l.Conns))
			after = append(after, float64(l.RSSAfterGCKiB-t.Baseline.RSSAfterGCKiB)/1024)
			before = append(before, float64(l.RSSKiB-t.Baseline.RSSKiB)/1024)
		}
		ch.Lines = append(ch.Lines,
			plots.Line{Name: t.Name + ", after GC", X: xs, Y: after, Color: i, Glyph: i, Points: true},
			plots.Line{Name: t.Name + ", as running (no forced GC)", X: xs, Y: before, Color: i, Dash: 1, Glyph: i, Points: true})
	}
	return ch.Save(filepath.Join(dir, "idle-memory.png"))
}

// colorOf keeps a server's color the same in every plot.
func colorOf(target string) int {
	switch target {
	case "causeway":
		return 0
	case "floor":
		return 2
	}
	return 4
}
