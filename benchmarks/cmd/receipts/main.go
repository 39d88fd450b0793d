// Command receipts measures read-receipt traffic against group size (issue
// 5, "Measured"): for each size N, one group of N members in which every
// member reads every message; it counts the `receipts` frames the rollup's
// summaries put on the wire, per message, next to the naive N*(N-1).
//
// It starts `causeway dev --edges 2` (which runs the rollup) from a built
// binary in its own process, or drives an existing cluster with -url and
// -secret. Per size: N users join the group (all joins first, so no member
// events are fanned out), then subscribe, spread round-robin over the
// edges; member 0 sends -messages messages at -rate per second; every
// member, the sender included, sends `read` with the seq of each message as
// soon as it receives it (one read per message, in order). The level ends
// when every read is acked and a summary has counted N-1 readers for every
// message (or -timeout), plus -tail for late summaries. See
// benchmarks/RESULTS.md.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/causeway/causeway/benchmarks/internal/machine"
	"github.com/causeway/causeway/benchmarks/internal/procs"
	"github.com/causeway/causeway/benchmarks/internal/report"
	"github.com/causeway/causeway/edge"
	"github.com/causeway/causeway/edge/client"
)

var (
	binPath  = flag.String("causeway", "", "built causeway binary (empty: go build ./cmd/causeway into a temp dir)")
	nEdges   = flag.Int("edges", 2, "edges of the `causeway dev` started here")
	urls     = flag.String("url", "", "comma-separated edge URLs of an existing cluster (empty: start `causeway dev`)")
	secret   = flag.String("secret", "", "token secret of the -url cluster")
	sizes    = flag.String("sizes", "2,10,100,1000", "group sizes, one level each")
	messages = flag.Int("messages", 20, "messages per group")
	rate     = flag.Float64("rate", 10, "messages per second per group")
	bodySize = flag.Int("body-bytes", 200, "message body size")
	timeout  = flag.Duration("timeout", 60*time.Second, "longest wait per level for every count to be final")
	tail     = flag.Duration("tail", 0, "extra wait after the counts are final, for late summaries (0: two effective windows)")
	dialPar  = flag.Int("dial-concurrency", 64, "dials, joins and subscribes in flight")
	out      = flag.String("out", "benchmarks/results/receipts-latest.json", "JSON report (empty: none)")
	keep     = flag.Bool("keep", false, "keep the temp dir")
	check    = flag.Bool("check", true, "exit 1 if a read fails or a level's counts never become final")

	// The rollup's settings in the cluster: defaults of `causeway` unless
	// overridden (they are only reported and used for the bound).
	window          = flag.Duration("rollup-window", 500*time.Millisecond, "the cluster's rollup.window")
	countsOnlyAbove = flag.Int("rollup-counts-only-above", 100, "the cluster's rollup.counts_only_above")
	senderOnlyAbove = flag.Int("rollup-sender-only-above", 1000, "the cluster's rollup.sender_only_above")
	slowFactor      = flag.Int("rollup-slow-factor", 4, "the cluster's rollup.slow_factor")
)

func main() {
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rep, err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "receipts:", err)
		os.Exit(1)
	}
	if *out != "" {
		if err := machine.WriteJSON(*out, rep); err != nil {
			fmt.Fprintln(os.Stderr, "receipts:", err)
			os.Exit(1)
		}
		fmt.Println("report written to", *out)
	}
	if *check && !rep.Pass {
		fmt.Println("FAIL:", strings.Join(rep.Failures, "; "))
		os.Exit(1)
	}
}

func parseSizes() ([]int, error) {
	var ns []int
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			return nil, fmt.Errorf("-sizes: %q is not a number >= 2", f)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

func run(ctx context.Context) (*report.Receipts, error) {
	ns, err := parseSizes()
	if err != nil {
		return nil, err
	}
	if *messages < 1 || *rate <= 0 || *bodySize < 8 {
		return nil, errors.New("-messages and -rate must be positive, -body-bytes at least 8")
	}
	rep := &report.Receipts{Time: time.Now().UTC(), Command: strings.Join(os.Args, " ")}
	rep.Machine = report.Machine{CPUs: runtime.NumCPU(), CPUModel: machine.CPUModel(), GoVersion: runtime.Version(), MemTotal: machine.MemTotal()}
	rep.Machine.NoFile, _ = machine.RaiseNoFile()
	c := &rep.Config
	c.Sizes, c.Messages, c.RatePerGroup, c.BodyBytes = ns, *messages, *rate, *bodySize
	c.Window, c.CountsOnlyAbove, c.SenderOnlyAbove, c.SlowFactor = window.String(), *countsOnlyAbove, *senderOnlyAbove, *slowFactor

	var edgeURLs []string
	sec := *secret
	if *urls != "" {
		rep.Cluster = "external cluster (-url)"
		for _, u := range strings.Split(*urls, ",") {
			if u = strings.TrimSpace(u); u != "" {
				edgeURLs = append(edgeURLs, u)
			}
		}
		if sec == "" {
			return nil, errors.New("-url needs -secret")
		}
	} else {
		dir, err := os.MkdirTemp("", "causeway-receipts-")
		if err != nil {
			return nil, err
		}
		if *keep {
			fmt.Println("temp dir (kept):", dir)
		} else {
			defer os.RemoveAll(dir)
		}
		bin := *binPath
		if bin == "" {
			if bin, err = procs.GoBuild(dir, "causeway", "./cmd/causeway"); err != nil {
				return nil, err
			}
		}
		srv, err := procs.StartDev(ctx, bin, dir, *nEdges, nil)
		if err != nil {
			return nil, err
		}
		defer srv.Stop(20 * time.Second)
		edgeURLs, sec = srv.URLs, srv.Secret
		rep.Cluster = fmt.Sprintf("`causeway dev --edges %d` in its own process (broker, sequencer, rollup, edges; edge abuse limits off)", *nEdges)
	}
	c.Edges = len(edgeURLs)
	prefix := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	for _, n := range ns {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		lv, err := runLevel(ctx, edgeURLs, []byte(sec), prefix, n)
		if err != nil {
			return nil, fmt.Errorf("%d members: %w", n, err)
		}
		rep.Levels = append(rep.Levels, *lv)
		line := fmt.Sprintf("N=%d: %d receipts frames for %d messages = %.2f per message (naive N*(N-1) = %.0f, %.0fx more); %d reads; counts final: %v (%.0f ms after the last read); %.1f s active = %.1f windows, bound N x windows = %.0f",
			n, lv.ReceiptFrames, lv.Messages, lv.FramesPerMessage, lv.Naive, lv.NaiveRatio, lv.Reads, lv.Complete, lv.LastReadToFinalMs, lv.ActiveSec, lv.Windows, lv.LinearBound)
		fmt.Println(line)
		rep.Summary = append(rep.Summary, line)
		if lv.ReadErrors > 0 {
			rep.Failures = append(rep.Failures, fmt.Sprintf("N=%d: %d reads failed", n, lv.ReadErrors))
		}
		if !lv.Complete {
			rep.Failures = append(rep.Failures, fmt.Sprintf("N=%d: counts not final within %s (lowest %d of %d)", n, *timeout, lv.FinalCounts, n-1))
		}
		if lv.ReceiptFrames > int64(lv.LinearBound) {
			rep.Failures = append(rep.Failures, fmt.Sprintf("N=%d: %d receipts frames, over the linear bound %.0f", n, lv.ReceiptFrames, lv.LinearBound))
		}
	}
	rep.Pass = len(rep.Failures) == 0
	return rep, nil
}

// member is one connection.
type member struct {
	c      *client.Client
	frames atomic.Int64 // receipts frames
	reads  chan uint64
}

// level is the shared state of one group size.
type level struct {
	n        int
	group    string
	started  atomic.Int64 // unix nanos of the first send; 0 before
	lastRcpt atomic.Int64 // unix nanos of the last receipts frame
	frames   atomic.Int64
	bytes    atomic.Int64
	reads    atomic.Int64
	readErrs atomic.Int64

	mu        sync.Mutex
	counts    map[uint64]uint32 // highest count seen per seq
	final     chan struct{}     // closed when every message's count is n-1
	finalAt   time.Time
	lastRead  time.Time
	seqs      []uint64 // of the messages sent
	other     map[string]int64
	closeOnce sync.Once
}

func (l *level) tap(m *member, line []byte) bool {
	switch {
	case bytes.HasPrefix(line, []byte(`{"type":"receipts"`)):
		if l.started.Load() == 0 {
			return true // from setup: none expected
		}
		now := time.Now()
		m.frames.Add(1)
		l.frames.Add(1)
		l.bytes.Add(int64(len(line)))
		l.lastRcpt.Store(now.UnixNano())
		var f struct {
			Reads []struct {
				Seq   uint64 `json:"seq"`
				Count uint32 `json:"count"`
			} `json:"reads"`
		}
		if json.Unmarshal(line, &f) == nil {
			l.mu.Lock()
			for _, r := range f.Reads {
				if r.Count > l.counts[r.Seq] {
					l.counts[r.Seq] = r.Count
				}
			}
			l.checkFinal(now)
			l.mu.Unlock()
		}
		return true
	case bytes.HasPrefix(line, []byte(`{"type":"msg"`)):
		if seq := fieldUint(line, `"seq":`); seq > 0 {
			m.reads <- seq // buffered for every message
		}
		return true
	default:
		if l.started.Load() != 0 {
			typ := string(line[:min(len(line), 24)])
			if i := bytes.IndexByte(line[9:], '"'); i > 0 && bytes.HasPrefix(line, []byte(`{"type":"`)) {
				typ = string(line[9 : 9+i])
			}
			if typ != "ack" {
				l.mu.Lock()
				l.other[typ]++
				l.mu.Unlock()
			}
		}
		return false
	}
}

// checkFinal closes final once every sent message has n-1 readers counted
// (the sender's own read does not count). mu is held.
func (l *level) checkFinal(now time.Time) {
	if len(l.seqs) < *messages {
		return
	}
	for _, seq := range l.seqs {
		if l.counts[seq] < uint32(l.n-1) {
			return
		}
	}
	l.closeOnce.Do(func() { l.finalAt = now; close(l.final) })
}

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

func runLevel(ctx context.Context, urls []string, sec []byte, prefix string, n int) (*report.ReceiptsLevel, error) {
	l := &level{n: n, group: fmt.Sprintf("bench-rc-%s-n%d", prefix, n), counts: map[uint64]uint32{}, final: make(chan struct{}), other: map[string]int64{}}
	lv := &report.ReceiptsLevel{Members: n, Group: l.group, Naive: float64(n) * float64(n-1)}
	t0 := time.Now()
	ms := make([]*member, n)
	for i := range ms {
		ms[i] = &member{reads: make(chan uint64, *messages+8)}
	}
	defer func() {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 128)
		for _, m := range ms {
			if m.c == nil {
				continue
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() { defer func() { <-sem; wg.Done() }(); _ = m.c.Close() }()
		}
		wg.Wait()
	}()
	// Dial and join everyone, then subscribe everyone.
	each := func(f func(i int, m *member) error) error {
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		sem := make(chan struct{}, *dialPar)
		var wg sync.WaitGroup
		for i, m := range ms {
			sem <- struct{}{}
			if ctx.Err() != nil {
				break
			}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				if err := f(i, m); err != nil {
					cancel(err)
				}
			}()
		}
		wg.Wait()
		return context.Cause(ctx)
	}
	err := each(func(i int, m *member) error {
		user := fmt.Sprintf("bench-rc-%s-n%d-m%d", prefix, n, i)
		tok, err := edge.Mint(sec, user, []string{"bench-*"}, 24*time.Hour, time.Now())
		if err != nil {
			return err
		}
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		c, err := client.Dial(dctx, urls[i%len(urls)], tok, &client.Options{EventBuffer: 64, Tap: func(line []byte) bool { return l.tap(m, line) }})
		if err != nil {
			return err
		}
		m.c = c
		go func() {
			for range c.Events() {
			}
		}()
		return c.Join(dctx, l.group)
	})
	if err != nil {
		return nil, fmt.Errorf("dial/join: %w", err)
	}
	if err := each(func(_ int, m *member) error {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := m.c.Subscribe(sctx, l.group, nil)
		return err
	}); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	lv.SetupSec = time.Since(t0).Seconds()

	// Readers: one read per received message, in order.
	rctx, stopReaders := context.WithCancel(ctx)
	defer stopReaders()
	var rwg sync.WaitGroup
	for _, m := range ms {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for k := 0; k < *messages; k++ {
				var seq uint64
				select {
				case seq = <-m.reads:
				case <-rctx.Done():
					return
				}
				cctx, cancel := context.WithTimeout(rctx, 30*time.Second)
				err := m.c.Read(cctx, l.group, seq)
				cancel()
				if err != nil {
					l.readErrs.Add(1)
					continue
				}
				l.reads.Add(1)
			}
		}()
	}

	// Sender: member 0, on a fixed schedule.
	start := time.Now()
	l.started.Store(start.UnixNano())
	interval := time.Duration(float64(time.Second) / *rate)
	body := `"` + strings.Repeat("r", *bodySize-2) + `"`
	for k := 0; k < *messages; k++ {
		if d := time.Until(start.Add(time.Duration(k) * interval)); d > 0 {
			time.Sleep(d)
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		seq, err := ms[0].c.Send(sctx, l.group, "rc"+strconv.Itoa(k), json.RawMessage(body))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("send %d: %w", k, err)
		}
		l.mu.Lock()
		l.seqs = append(l.seqs, seq)
		l.mu.Unlock()
	}
	lv.Messages = *messages
	readsDone := make(chan struct{})
	go func() { rwg.Wait(); close(readsDone) }()
	deadline := time.After(*timeout)
	select {
	case <-readsDone:
	case <-deadline:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	l.mu.Lock()
	l.lastRead = time.Now()
	l.checkFinal(time.Now())
	l.mu.Unlock()
	eff := *window
	if n > *countsOnlyAbove {
		eff *= time.Duration(*slowFactor)
	}
	select {
	case <-l.final:
		lv.Complete = true
	case <-deadline:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	t := *tail
	if t == 0 {
		t = 2 * eff
	}
	time.Sleep(t)
	stopReaders()

	lv.Reads, lv.ReadErrors = l.reads.Load(), l.readErrs.Load()
	lv.ReceiptFrames, lv.ReceiptBytes = l.frames.Load(), l.bytes.Load()
	lv.FramesPerMessage = float64(lv.ReceiptFrames) / float64(lv.Messages)
	if lv.FramesPerMessage > 0 {
		lv.NaiveRatio = lv.Naive / lv.FramesPerMessage
	}
	for _, m := range ms {
		if f := m.frames.Load(); f > 0 {
			lv.MembersWithFrames++
			lv.MaxFramesPerMember = max(lv.MaxFramesPerMember, f)
		}
	}
	l.mu.Lock()
	lv.FinalCounts = math.MaxUint32
	for _, seq := range l.seqs {
		lv.FinalCounts = min(lv.FinalCounts, l.counts[seq])
	}
	if !l.finalAt.IsZero() {
		lv.LastReadToFinalMs = math.Max(0, float64(l.finalAt.Sub(l.lastRead))/float64(time.Millisecond))
	}
	if len(l.other) > 0 {
		lv.OtherFrames = l.other
	}
	l.mu.Unlock()
	if last := l.lastRcpt.Load(); last > 0 {
		lv.ActiveSec = float64(last-l.started.Load()) / 1e9
	}
	lv.EffectiveWindow = eff.Seconds()
	lv.Windows = lv.ActiveSec / eff.Seconds()
	recipients := n
	if n > *senderOnlyAbove {
		recipients = 1
	}
	lv.LinearBound = float64(recipients) * math.Ceil(lv.Windows+1)
	return lv, nil
}
