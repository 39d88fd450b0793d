package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/causeway/causeway/benchmarks/internal/kafkacount"
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
	if s.Recovery != nil {
		s.Recovery.computeRatios()
	}
	if s.Signaling != nil {
		s.Signaling.computeRatios()
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
	if sc := s.Scaling; sc != nil {
		scalingMD(&md, sc)
		if err := scalingPlots(dir, sc); err != nil {
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
	if s.Recovery != nil {
		recoveryMD(&md, s.Recovery)
	}
	if s.Signaling != nil {
		signalingMD(&md, s.Signaling)
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

// count is n with 1,000s separators.
func count(n int) string {
	if n >= 1000 {
		return num(float64(n))
	}
	return strconv.Itoa(n)
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
		if !f.isMain(p) {
			continue
		}
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
			if p.Target == t && p.Saturated && !p.ThroughputFailed && f.isMain(p) {
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
			if r.Members != 0 {
				continue
			}
			fmt.Fprintf(md, "| %s | %s | %s | %s | %s | %s |\n", num(r.Offered), ratio(r.Delivered), ratio(r.P50), ratio(r.P99), ratio(r.P999), ratio(r.ServerCPU))
		}
	}
	md.WriteString("\n![throughput](fanout-throughput.png)\n\n![latency](fanout-latency.png)\n\n")
	targetRunsMD(md, f)
	if f.Sizes != nil {
		sizesMD(md, f)
	}
}

// sizesMD is the other group sizes, each point next to the floor's at the
// same offered rate.
func sizesMD(md *strings.Builder, f *Fanout) {
	z := f.Sizes
	fmt.Fprintf(md, "## Fan-out by group size\n\n%d connections in groups of each size (groups = %d / size), 1 sender per group, %d-byte bodies; each point: server started afresh, %.0f s warmup, %.0f s measured; floor then Causeway at each offered rate, a target leaving a size at its first rate whose throughput fails. Messages/s into the server = offered deliveries/s / group size.\n\n",
		z.Conns, z.Conns, f.Config.BodyBytes, z.WarmupSec, z.DurationSec)
	fmt.Fprintf(md, "| group size | groups | offered deliveries/s | msgs/s | floor delivered/s | Causeway delivered/s (/ floor) | floor p50 / p99 ms | Causeway p50 / p99 ms | p99 / floor | server CPU-s per 1,000: floor / Causeway (ratio) | foreign cores | Causeway criteria |\n| ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | --- | --- | --- |\n")
	for _, size := range z.Sizes {
		for _, r := range z.Rates {
			fl, cw := f.point("floor", size, float64(r)), f.point("causeway", size, float64(r))
			if fl == nil && cw == nil {
				continue
			}
			get := func(p *Point, v func(*Point) string) string {
				if p == nil {
					return "-"
				}
				return v(p)
			}
			ratioOf := func(a, b float64) string {
				if b == 0 {
					return "-"
				}
				return ratio(a / b)
			}
			var dRatio, p99Ratio, cpuRatio, groupsN string
			if fl != nil && cw != nil {
				dRatio, p99Ratio, cpuRatio = " ("+ratioOf(cw.Delivered, fl.Delivered)+")", ratioOf(cw.LatencyMs["p99"], fl.LatencyMs["p99"]), " ("+ratioOf(cw.ServerCPUPer1000, fl.ServerCPUPer1000)+")"
			}
			for _, p := range []*Point{fl, cw} {
				if p != nil {
					groupsN = strconv.Itoa(p.Groups)
				}
			}
			crit := get(cw, func(p *Point) string {
				switch {
				case p.ThroughputFailed:
					return "**throughput failed**: " + firstNonEmpty(p.Error, p.Why)
				case p.Saturated:
					return "over the p99 bound: " + p.Why
				}
				return "met"
			})
			fmt.Fprintf(md, "| %s | %s | %s | %s | %s | %s%s | %s | %s | %s | %s / %s%s | %s / %s | %s |\n", count(size), groupsN, num(float64(r)), num(float64(r)/float64(size)),
				get(fl, func(p *Point) string { return num(p.Delivered) }), get(cw, func(p *Point) string { return num(p.Delivered) }), dRatio,
				get(fl, func(p *Point) string { return num(p.LatencyMs["p50"]) + " / " + num(p.LatencyMs["p99"]) }),
				get(cw, func(p *Point) string { return num(p.LatencyMs["p50"]) + " / " + num(p.LatencyMs["p99"]) }), p99Ratio,
				get(fl, func(p *Point) string { return fmt.Sprintf("%.4f", p.ServerCPUPer1000) }), get(cw, func(p *Point) string { return fmt.Sprintf("%.4f", p.ServerCPUPer1000) }), cpuRatio,
				get(fl, func(p *Point) string { return num(p.ForeignCores) }), get(cw, func(p *Point) string { return num(p.ForeignCores) }), crit)
		}
	}
	md.WriteString("\n")
}

func scalingMD(md *strings.Builder, sc *Scaling) {
	c := sc.Config
	fmt.Fprintf(md, "## Scaling: split processes\n\nThe fan-out workload at a fixed offered %s deliveries/s (%d connections, %d-byte bodies, 1 sender per group, loadgen spreading each group's members round-robin over the edges), %.0f s warmup, %.0f s measured, on %s. Axes: edges %v (1 sequencer, groups of %d), sequencers %v (%d edges, groups of %d), group size %v (%d edges, 1 sequencer). Layout: %d group-log partitions, %d delivery slots; edges heartbeat every %.0f s into every group-log partition.\n\n",
		num(float64(c.Offered)), c.Conns, c.BodyBytes, c.WarmupSec, c.DurationSec, c.Cluster, c.Edges, c.Members, c.Seqs, c.SeqEdges, c.Members, c.Sizes, c.SizeEdges, c.GroupPartitions, c.DeliveryPartitions, c.HeartbeatSec)
	if c.Env != "" {
		fmt.Fprintf(md, "Settings changed for every process: `%s`.\n\n", c.Env)
	}
	md.WriteString("### CPU per role\n\nCPU-seconds per 1,000 deliveries (cores in parentheses) of each role's processes together during the window, from /proc/<pid>/stat; generator is loadgen; foreign is every other process on the machine (a point with more than 0.15 is run again and the quieter attempt kept).\n\n")
	md.WriteString("| edges | sequencers | groups x members | delivered/s | p50 / p99 ms | edges | sequencers | broker | rollup | generator | irq cores | foreign cores | lost |\n| ---: | ---: | --- | ---: | --- | --- | --- | --- | --- | --- | ---: | ---: | ---: |\n")
	for _, p := range sc.Points {
		cell := map[string]string{}
		for _, r := range p.Roles {
			cell[r.Role] = fmt.Sprintf("%.4f (%.2f)", r.CPUPer1000, r.Cores)
		}
		for _, ro := range roleOrder {
			if cell[ro] == "" {
				cell[ro] = "-"
			}
		}
		fmt.Fprintf(md, "| %d | %d | %s | %s | %s / %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", p.Edges, p.Sequencers, shapeText(p), num(p.Delivered),
			num(p.LatencyMs["p50"]), num(p.LatencyMs["p99"]), cell["edge"], cell["sequencer"], cell["broker"], cell["rollup"], cell["generator"], num(p.IRQCores), num(p.ForeignCores), p.Lost)
	}
	md.WriteString("\n### Kafka per delivered message\n\nPer group-log send in the window (messages): high-watermark delta of each topic between the window's edges (offsets = data records + transaction control markers), read back and split by kind (benchmarks/internal/kafkacount). Delivery records with the message: records of the deliveries topic carrying the msg event; max: the most any one message took (exact). Bytes: key + value of the data records.\n\n")
	md.WriteString("| edges | seqs | groups x members | messages | edges holding members | **msg delivery records / msg** (max one msg) | recipients per record | deliveries offsets / msg = msg + other records + markers | group log offsets / msg (heartbeats) | sequencer state records / msg | rollup state records / msg | bytes / msg: log, deliveries, state, rollup | seq txns/s (records per txn) | check |\n| ---: | ---: | --- | ---: | ---: | --- | ---: | --- | --- | ---: | ---: | --- | --- | --- |\n")
	for _, p := range sc.Points {
		if p.Kafka == nil {
			fmt.Fprintf(md, "| %d | %d | %s | - | %d | - | - | - | - | - | - | - | - | %s |\n", p.Edges, p.Sequencers, shapeText(p), p.EdgesHolding, strings.Join(p.Failures, "; "))
			continue
		}
		per := map[string]TopicPer{}
		for _, t := range p.Topics {
			per[t.Role] = t
		}
		d, g := per[kafkacount.RoleDeliveries], per[kafkacount.RoleGroups]
		chk := "pass"
		if len(p.Failures) > 0 {
			chk = "**FAIL**: " + strings.Join(p.Failures, "; ")
		}
		fmt.Fprintf(md, "| %d | %d | %s | %d | %d | **%.3f** (%d) | %.1f | %.2f = %.2f + %.3f + %.2f | %.2f (%.3f) | %.2f | %.2f | %.0f, %.0f, %.0f, %.0f | %.0f (%.1f) | %s |\n",
			p.Edges, p.Sequencers, shapeText(p), p.Kafka.Messages, p.EdgesHolding, p.MsgDeliveriesPerMessage, p.Kafka.MaxDeliveriesPerMessage,
			p.RecipientsPerRecord, d.Offsets, p.MsgDeliveriesPerMessage, p.OtherDeliveriesPerMessage, d.Markers, g.Offsets, p.HeartbeatsPerMessage,
			per[kafkacount.RoleState].Records, per[kafkacount.RoleRollupState].Records,
			g.Bytes, d.Bytes, per[kafkacount.RoleState].Bytes, per[kafkacount.RoleRollupState].Bytes, p.SeqTxns/c.DurationSec, p.SeqRecordsPerTxn, chk)
	}
	md.WriteString("\n### Sequencer memory and ClickHouse rows\n\n| edges | seqs | groups x members | sequencer heap after GC before / after MiB | groups in memory (personal streams included) | ClickHouse rows per message (messages, receipts <=, reads, member events, presence) |\n| ---: | ---: | --- | --- | ---: | --- |\n")
	for _, p := range sc.Points {
		r := p.RowsPerMessage
		fmt.Fprintf(md, "| %d | %d | %s | %.1f / %.1f | %s | %.2f, %.2f, %.2f, %.2f, %.2f |\n", p.Edges, p.Sequencers, shapeText(p),
			p.SeqHeapBaseMiB, p.SeqHeapEndMiB, num(p.SeqGroups), r["messages"], r["receipts"], r["reads"], r["member_events"], r["presence_events"])
	}
	readsMD(md, sc)
	md.WriteString("\n![delivery records per message vs edges](scaling-records-edges.png)\n\n![delivery records per message vs group size](scaling-records-size.png)\n\n![CPU per role](scaling-cpu.png)\n\n")
}

// scalingPlots draws delivery records per message against edges and
// against group size, and CPU per role against edges.
func scalingPlots(dir string, sc *Scaling) error {
	on := func(axis string) (pts []ScalePoint) {
		for _, p := range sc.Points {
			if slices.Contains(p.Axes, axis) && p.Kafka != nil {
				pts = append(pts, p)
			}
		}
		return
	}
	var errs []string
	if pts := on("edges"); len(pts) > 0 {
		var xs, recs, offs, ideal []float64
		for _, p := range pts {
			xs, recs, ideal = append(xs, float64(p.Edges)), append(recs, p.MsgDeliveriesPerMessage), append(ideal, float64(p.EdgesHolding))
			for _, t := range p.Topics {
				if t.Role == kafkacount.RoleDeliveries {
					offs = append(offs, t.Offsets)
				}
			}
		}
		ch := plots.Chart{Title: fmt.Sprintf("Delivery records per message vs edges (groups of %d)", sc.Config.Members), XLabel: "edges", YLabel: "Kafka records per message", YMin: 0, Headroom: 0.3,
			Lines: []plots.Line{
				{Name: "edges holding members (the bound)", X: xs, Y: ideal, Color: 6, Dash: 2},
				{Name: "delivery records with the msg", X: xs, Y: recs, Color: 0, Glyph: 0, Points: true},
				{Name: "deliveries topic offsets (with markers, acks)", X: xs, Y: offs, Color: 1, Dash: 1, Glyph: 1, Points: true},
			}}
		if err := ch.Save(filepath.Join(dir, "scaling-records-edges.png")); err != nil {
			errs = append(errs, err.Error())
		}
		cpu := plots.Chart{Title: "CPU-seconds per 1,000 deliveries by role vs edges", XLabel: "edges (1 sequencer)", YLabel: "CPU-s per 1,000 deliveries", YMin: 0, Headroom: 0.7}
		for i, ro := range roleOrder {
			var ys []float64
			for _, p := range pts {
				v := math.NaN()
				for _, r := range p.Roles {
					if r.Role == ro {
						v = r.CPUPer1000
					}
				}
				ys = append(ys, v)
			}
			cpu.Lines = append(cpu.Lines, plots.Line{Name: ro, X: xs, Y: ys, Color: i, Glyph: i, Points: true})
		}
		if err := cpu.Save(filepath.Join(dir, "scaling-cpu.png")); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if pts := on("group size"); len(pts) > 0 {
		var xs, recs, naive, state []float64
		for _, p := range pts {
			xs, recs, naive = append(xs, float64(p.Members)), append(recs, p.MsgDeliveriesPerMessage), append(naive, float64(p.Members))
			var st float64
			for _, t := range p.Topics {
				if t.Role == kafkacount.RoleState {
					st = t.Records
				}
			}
			state = append(state, st)
		}
		ch := plots.Chart{Title: fmt.Sprintf("Kafka records per message vs group size (%d edges)", sc.Config.SizeEdges), XLabel: "group members (log)", YLabel: "records per message (log)", LogX: true, LogY: true, Headroom: 0.5,
			Lines: []plots.Line{
				{Name: "one record per member (per-member fan-out)", X: xs, Y: naive, Color: 3, Dash: 1},
				{Name: "delivery records with the msg (measured)", X: xs, Y: recs, Color: 0, Glyph: 0, Points: true},
				{Name: "sequencer state records (measured)", X: xs, Y: state, Color: 2, Glyph: 2, Points: true},
			}}
		if err := ch.Save(filepath.Join(dir, "scaling-records-size.png")); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("scaling plots: %s", strings.Join(errs, "; "))
	}
	return nil
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

// shapeText is a scaling point's groups x members, and its reads.
func shapeText(p ScalePoint) string {
	if p.ReadEvery > 0 {
		return fmt.Sprintf("%d x %d, read every %d", p.Groups, p.Members, p.ReadEvery)
	}
	return fmt.Sprintf("%d x %d", p.Groups, p.Members)
}

// readsMD is the point with read receipts next to the same shape
// without: what the reads add, per read.
func readsMD(md *strings.Builder, sc *Scaling) {
	for _, p := range sc.Points {
		if p.ReadEvery == 0 || p.Kafka == nil {
			continue
		}
		var base *ScalePoint
		for i, q := range sc.Points {
			if q.ReadEvery == 0 && q.Edges == p.Edges && q.Sequencers == p.Sequencers && q.Members == p.Members && q.Kafka != nil {
				base = &sc.Points[i]
			}
		}
		dur := sc.Config.DurationSec
		k := p.Kafka
		kind := func(role, kind string) float64 {
			if t := k.Find(role); t != nil {
				return float64(t.Kinds[kind])
			}
			return 0
		}
		reads := kind(kafkacount.RoleGroups, "read")
		per := func(v float64) string {
			if reads == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f", v/reads)
		}
		fmt.Fprintf(md, "\n### Read receipts\n\n%d edges, %d sequencer, %d x %d, every member sends `read` for every %dth message it gets: %s reads/s acked in the window (%s group-log `read` records/s).\n\n",
			p.Edges, p.Sequencers, p.Groups, p.Members, p.ReadEvery, num(p.ReadsPerSec), num(reads/dur))
		fmt.Fprintf(md, "| per read | sequencer-state membership records | rollup-state member records | rollup-state message records (receipt aggregates) | ClickHouse `reads` rows | group-log `receipts` summaries per second | delivery records of summaries and own-read syncs per second |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		fmt.Fprintf(md, "| | %s | %s | %s | %s | %.1f | %.1f |\n\n", per(kind(kafkacount.RoleState, "member")), per(kind(kafkacount.RoleRollupState, "member")),
			per(kind(kafkacount.RoleRollupState, "message")), per(float64(k.Rows["reads"])), kind(kafkacount.RoleGroups, "receipts")/dur,
			(kind(kafkacount.RoleDeliveries, "ephemeral:receipts")+kind(kafkacount.RoleDeliveries, "ephemeral:read"))/dur)
		if base == nil {
			continue
		}
		md.WriteString("A negative figure is a role that got cheaper per delivery with the reads: their records share the messages' transactions, which then carry more records each.\n\n| role | CPU-s per 1,000 deliveries without reads | with reads | added CPU-ms per read |\n| --- | ---: | ---: | ---: |\n")
		for _, r := range p.Roles {
			for _, b := range base.Roles {
				if b.Role != r.Role {
					continue
				}
				added := "-"
				if p.ReadsPerSec > 0 {
					added = fmt.Sprintf("%.3f", 1000*(r.Cores-b.Cores)/p.ReadsPerSec)
				}
				fmt.Fprintf(md, "| %s | %.4f | %.4f | %s |\n", r.Role, b.CPUPer1000, r.CPUPer1000, added)
			}
		}
		md.WriteString("\n")
	}
}

// recoveryMD is the recovery scenario, floor and Causeway side by side.
func recoveryMD(md *strings.Builder, p *RecoveryPair) {
	var c *report.Recovery
	for _, r := range []*report.Recovery{p.Floor, p.Causeway} {
		if r != nil {
			c = r
		}
	}
	if c == nil {
		return
	}
	fmt.Fprintf(md, "## Recovery after SIGKILL\n\n%d client Sessions (edge/client) in groups of %d, all joined and subscribed; one publisher Session per group sends every %.0f ms; %.0f s of publishing, then the kill. "+
		"**Causeway**: broker, sequencer and 3 edges, each its own process; edge 1 is SIGKILLed; the clients that were on it (about a third) reconnect to the other edges and resubscribe with `since`; publishers are on edges 2 and 3. "+
		"**Floor**: two floor processes; floors share nothing, so each group lives on one (every third group on the first: about a third of the clients, as on Causeway's edge 1), its members and publisher preferring it; the first is SIGKILLed and its clients and publishers reconnect to the second, already listening, and resubscribe. The floor has no history: a moved group starts again from seq 0 there, so its clients are live at their first message sent after the kill, gap or not, where Causeway's must also have every seq in between. "+
		"Times from the kill: connection seen lost, reconnected, live (first message sent after the kill received).\n\n",
		c.Config.Clients, c.Config.GroupSize, c.Config.IntervalMs, c.Config.WarmupSec)
	md.WriteString("| server | clients affected | seen lost p50 / p99 ms | reconnected p50 / p99 / max ms | **live p50 / p99** / max ms | all live after s | unrecoverable subscribes | gaps, duplicates | result |\n| --- | ---: | --- | --- | --- | ---: | ---: | --- | --- |\n")
	for _, r := range []*report.Recovery{p.Floor, p.Causeway} {
		if r == nil {
			continue
		}
		res := "pass"
		if !r.Pass {
			res = "**FAIL**: " + strings.Join(r.Failures, "; ")
		}
		fmt.Fprintf(md, "| %s | %d of %d | %s / %s | %s / %s / %s | **%s / %s** / %s | %.2f | %d | %d, %d | %s |\n", r.Target, r.Affected, r.Config.Clients,
			num(r.DetectMs.P50), num(r.DetectMs.P99), num(r.ReconnectMs.P50), num(r.ReconnectMs.P99), num(r.ReconnectMs.Max),
			num(r.LiveMs.P50), num(r.LiveMs.P99), num(r.LiveMs.Max), r.AllRecoveredSec, r.Unrecoverable, r.Gaps, r.Duplicates, res)
	}
	if q := p.Ratios; q != nil {
		fmt.Fprintf(md, "| **Causeway / floor** | | | %s / %s | **%s / %s** / %s | %s | | | |\n",
			ratio(q["reconnect_p50"]), ratio(q["reconnect_p99"]), ratio(q["live_p50"]), ratio(q["live_p99"]), ratio(q["live_max"]), ratio(q["all_recovered"]))
	}
	md.WriteString("\n")
}

// signalingMD is the signaling scenario, floor and Causeway side by side.
func signalingMD(md *strings.Builder, p *SignalingPair) {
	var c *report.CallSetup
	for _, r := range []*report.CallSetup{p.Floor, p.Causeway} {
		if r != nil && r.Call != nil {
			c = r
		}
	}
	if c == nil {
		return
	}
	cf := c.Call.Config
	fmt.Fprintf(md, "## Signaling: call setup under load\n\n%d caller/callee pairs, %.4g calls/s in all, %d-byte offer and answer payloads, %.0f s warmup, %.0f s measured; the callee answers each offer at once, to the caller's session. Call setup: the offer's intended send time -> the answer received by the caller (coordinated omission counted). Background: benchmarks/cmd/loadgen (group fan-out) against the same server, in its own process, during the whole window. "+
		"**Causeway**: `causeway dev --edges 3`, caller and callee always on different edges. **Floor**: one floor process relaying the signal frames; caller and callee are both on it (there is no second floor to put the callee on), so its figure is the relay alone.\n\n",
		cf.Pairs, cf.CallsPerSec, cf.PayloadBytes, cf.WarmupSec, cf.DurationSec)
	md.WriteString("| server | placement | calls (answered) | **setup p50 / p99** / p99.9 / max ms | offer -> callee p50 / p99 ms | answer leg p50 / p99 ms | server cores | generator, loadgen cores | irq, foreign cores | background delivered/s (offered), p99 ms, lost | result |\n| --- | --- | ---: | --- | --- | --- | ---: | --- | --- | --- | --- |\n")
	for _, r := range []*report.CallSetup{p.Floor, p.Causeway} {
		if r == nil || r.Call == nil {
			continue
		}
		k := r.Call
		bg := "-"
		if b := k.Background; b != nil {
			bg = fmt.Sprintf("%s (%s), %s, %d", num(b.DeliveredPerSec), num(b.OfferedDeliveriesPerSec), num(b.LatencyMs["p99"]), b.Lost)
		}
		res := "pass"
		if !r.Pass {
			res = "**FAIL**: " + strings.Join(r.Failures, "; ")
		}
		fmt.Fprintf(md, "| %s | %s | %d (%d) | **%s / %s** / %s / %s | %s / %s | %s / %s | %s | %s, %s | %s, %s | %s | %s |\n", r.Target, k.Config.Placement, k.Calls, k.Answered,
			num(k.SetupMs["p50"]), num(k.SetupMs["p99"]), num(k.SetupMs["p999"]), num(k.SetupMs["max"]), num(k.OfferMs["p50"]), num(k.OfferMs["p99"]),
			num(k.LegMs["p50"]), num(k.LegMs["p99"]), num(k.ServerCores), num(k.GeneratorCores), num(k.LoadgenCores), num(k.IRQCores), num(k.OtherCores), bg, res)
	}
	if q := p.Ratios; q != nil {
		fmt.Fprintf(md, "| **Causeway / floor** | | | **%s / %s** | %s / %s | | | | | | |\n", ratio(q["setup_p50"]), ratio(q["setup_p99"]), ratio(q["offer_p50"]), ratio(q["offer_p99"]))
	}
	md.WriteString("\n")
}

// targetRunsMD is every run at the target rate and the medians judged.
func targetRunsMD(md *strings.Builder, f *Fanout) {
	if len(f.TargetRuns) == 0 {
		return
	}
	fmt.Fprintf(md, "### At %s deliveries/s: every run, interleaved\n\nThe ramp's point and the repeats (-target-repeats), floor and Causeway alternating, each target started afresh. One run's p99 here varies by tens of percent from run to run; the median is what issue 8's target (p99 <= %.0f ms) is judged by.\n\n", num(targetRate), float64(*targetP99)/float64(time.Millisecond))
	md.WriteString("| target | runs | p99 of each run, ms | **median p50 / p99** / p99.9 ms | median server cores | lost |\n| --- | ---: | --- | --- | ---: | ---: |\n")
	for _, t := range f.Config.Targets {
		runs := f.TargetRuns[t]
		if len(runs) == 0 {
			continue
		}
		var p99s []string
		var lost int64
		for _, r := range runs {
			p99s = append(p99s, num(r.P99))
			lost += r.Lost
		}
		m := f.TargetMedian[t]
		fmt.Fprintf(md, "| %s | %d | %s | **%s / %s** / %s | %s | %d |\n", t, len(runs), strings.Join(p99s, ", "), num(m.P50), num(m.P99), num(m.P999), num(m.ServerCores), lost)
	}
	if c, fl := f.TargetMedian["causeway"], f.TargetMedian["floor"]; c.P99 > 0 && fl.P99 > 0 {
		met := "no"
		if c.P99 <= float64(*targetP99)/float64(time.Millisecond) {
			met = "yes"
		}
		fmt.Fprintf(md, "| **Causeway / floor** | | | **%s / %s** / %s | %s | |\n\nTarget p99 <= %.0f ms (median): **%s**.\n\n", ratio(c.P50/fl.P50), ratio(c.P99/fl.P99), ratio(c.P999/fl.P999), ratio(c.ServerCores/fl.ServerCores), float64(*targetP99)/float64(time.Millisecond), met)
	}
}
